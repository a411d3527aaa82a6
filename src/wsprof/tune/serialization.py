"""``wsprof tune serialization``: fidelity, then pyperf timings, then one ``wsprof.tune/1`` dict.

Fidelity runs here, in-process (it times nothing); the timings run in the
micro harness's pyperf workers on the samples that each serializer
round-trips without raising, so a serializer that rejects one sample is still
timed on the rest (and marked incompatible).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsprof.micro.catalog import Row
from wsprof.micro.harness import Settings, run_rows
from wsprof.micro.samples import Sample, samples_text
from wsprof.micro.serializer_bench import SAMPLES_PAYLOAD, round_trippable
from wsprof.micro.serializers import CODECS, wire_bytes
from wsprof.progress import OnProgress
from wsprof.tune import advice, fidelity

SCHEMA_ID = "wsprof.tune/1"
CASES = ("dumps", "loads")


def _fidelity(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """Per serializer: problems, how many samples it round-trips (the timed ones), mean bytes."""
    values = [s.value for s in samples]
    out = {}
    for name, codec in CODECS.items():
        _, wires = round_trippable(name, values)
        out[name] = {
            "problems": fidelity.check(codec, samples),
            "timed": len(wires),
            "bytes": statistics.fmean(wire_bytes(codec, w) for w in wires) if wires else None,
        }
    return out


def measure(
    samples: Sequence[Sample], settings: Settings, on_progress: OnProgress | None = None
) -> list[dict[str, Any]]:
    """One result per serializer: ``{serializer, dumps_ns, loads_ns, bytes, compatible, problems}``."""
    checked = _fidelity(samples)
    timed = [name for name in CODECS if checked[name]["timed"]]
    rows = [Row("serializer", case, name, SAMPLES_PAYLOAD) for name in timed for case in CASES]
    done: list[Row] = []

    def row_done(row: Row) -> None:
        done.append(row)
        if on_progress is not None:
            on_progress(f"{row.variant} {row.case}", len(done), len(rows) * settings.rounds)

    with tempfile.TemporaryDirectory(prefix="wsprof-tune-") as tmp:
        path = Path(tmp) / "samples.json"
        path.write_text(samples_text(list(samples)))
        measured = run_rows(rows, settings, row_done, ["--samples", str(path)]) if rows else []
    ns = {(r["variant"], r["case"]): r for r in measured}
    results = []
    for name, codec in CODECS.items():
        dumps, loads = ns.get((name, "dumps")), ns.get((name, "loads"))
        results.append(
            {
                "serializer": name,
                "description": codec.description,
                "wire": codec.wire,
                "dumps_ns": dumps["ns_per_op"] if dumps else None,
                "dumps_spread_ns": dumps["spread_ns"] if dumps else None,
                "loads_ns": loads["ns_per_op"] if loads else None,
                "loads_spread_ns": loads["spread_ns"] if loads else None,
                # p10 tracks the uncontended cost on a shared host (see wsprof micro's note).
                "dumps_p10_ns": dumps["p10_ns"] if dumps else None,
                "loads_p10_ns": loads["p10_ns"] if loads else None,
                "bytes": checked[name]["bytes"],
                "compatible": not checked[name]["problems"],
                "problems": checked[name]["problems"],
                "samples_timed": checked[name]["timed"],
            }
        )
    return results


def _sizes(samples: Sequence[Sample]) -> dict[str, int]:
    """Smallest and largest sample (compact JSON bytes): a mean per message over a wide
    range is mostly the largest messages' cost, which the reader should know."""
    sizes = [len(json.dumps(s.value, separators=(",", ":"), default=repr)) for s in samples]
    return {"min_bytes": min(sizes), "max_bytes": max(sizes)}


def document(
    results: list[dict[str, Any]],
    source: str,
    samples: Sequence[Sample],
    harness: dict[str, Any],
    scenario: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``wsprof.tune/1`` document: results, the recommendation, and the optional projection."""
    from wsprof.env import environment

    return {
        "schema": SCHEMA_ID,
        "command": "tune serialization",
        "samples": {"source": source, "count": len(samples), **_sizes(samples)},
        "units": {
            "dumps_ns": "ns per message, pyperf median (mean over the samples)",
            "bytes": "mean bytes per Socket.IO packet, WebSocket frame header excluded",
        },
        "results": results,
        "client_notes": fidelity.client_notes(samples),
        "recommendation": advice.recommendation(results),
        "projection": advice.projection(scenario, results) if scenario is not None else None,
        "harness": harness,
        "env": environment(),
    }
