"""Latency histograms in HdrHistogram's percentile-distribution text format (``.hgrm``).

HdrHistogram's own plotter (and the tools around it) read this format, so users
plot wsprof's latencies beside wrk2's or their own. The text is what
``AbstractHistogram.outputPercentileDistribution`` prints: the header, one line
per percentile step (5 ticks per half distance to 100 %, as the Java default),
the last line at 100 % without the 1/(1-Percentile) column, and the ``#[Mean``,
``#[Max`` and ``#[Buckets`` footer. Values are in milliseconds (the unit the
plotter labels), each the highest value of its client histogram bucket.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wsprof.client.histogram import NBUCKETS, PyHistogram, bucket_bounds
from wsprof.errors import WsprofError
from wsprof.report.jsonout import check_json_target
from wsprof.scenario.files import file_component
from wsprof.scenario.record import ScenarioRecord, Window

NS_PER_MS = 1_000_000
TICKS_PER_HALF = 5
SUB_BUCKETS = 256  # exact values below 256 ns, then 128 linear steps per power of two
BUCKETS = NBUCKETS // 128 - 1


def _buckets(histogram: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(bucket index, count) in value order, empty buckets left out."""
    counts = {int(k): int(n) for k, n in histogram["counts"].items() if int(n) > 0}
    return sorted(counts.items())


def _highest(idx: int, max_ns: int) -> int:
    lower, width = bucket_bounds(idx)
    return min(lower + width - 1, max_ns) if max_ns else lower + width - 1


def _middle(idx: int, min_ns: int, max_ns: int) -> int:
    lower, width = bucket_bounds(idx)
    return max(min_ns, min(lower + width // 2, max_ns))


def _steps(buckets: list[tuple[int, int]], total: int) -> Iterator[tuple[int, float, int]]:
    """(bucket index, percentile level, count up to it), as HdrHistogram's PercentileIterator."""
    level = 0.0
    seen = 0
    for n, (idx, count) in enumerate(buckets):
        seen += count
        last = n == len(buckets) - 1
        while 100.0 * seen / total >= level:
            yield idx, level, seen
            halvings = int(math.log(100.0 / (100.0 - level)) / math.log(2))
            level += 100.0 / (TICKS_PER_HALF * 2 ** (halvings + 1))
            if last:  # one step there, then the closing line at 100 %
                yield idx, 100.0, seen
                return


def hgrm_text(histogram: Mapping[str, Any]) -> str:
    """The .hgrm text of a client histogram in its dict form (``PyHistogram.to_dict``)."""
    buckets = _buckets(histogram)
    total = sum(n for _, n in buckets)
    max_ns = int(histogram.get("max_ns", 0)) if total else 0
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for idx, level, seen in _steps(buckets, total) if total else ():
        value = _highest(idx, max_ns) / NS_PER_MS
        if level < 100.0:
            inverse = 1.0 / (1.0 - level / 100.0)
            lines.append(f"{value:12.3f} {level / 100.0:2.12f} {seen:10d} {inverse:14.2f}")
        else:
            lines.append(f"{value:12.3f} {1.0:2.12f} {seen:10d}")
    # Each bucket counts at its middle value, kept within the recorded min and max.
    low = int(histogram.get("min_ns", 0))
    mids = [(_middle(i, low, max_ns), n) for i, n in buckets]
    mean = sum(v * n for v, n in mids) / total if total else 0.0
    var = sum(n * (v - mean) ** 2 for v, n in mids) / total if total else 0.0
    lines += [
        f"#[Mean    = {mean / NS_PER_MS:12.3f}, StdDeviation   = {math.sqrt(var) / NS_PER_MS:12.3f}]",
        f"#[Max     = {max_ns / NS_PER_MS:12.3f}, Total count    = {total:12d}]",
        f"#[Buckets = {BUCKETS:12d}, SubBuckets     = {SUB_BUCKETS:12d}]",
    ]
    return "\n".join(lines) + "\n"


def write_hgrm(path: Path, histogram: Mapping[str, Any]) -> None:
    """Write the .hgrm of ``histogram`` to ``path`` whole or not at all (one line on failure)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(hgrm_text(histogram))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc


def check_hgrm_dir(directory: Path) -> None:
    """Fail before a scenario runs if its .hgrm files could not be written into ``directory``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WsprofError(
            f"--hgrm {directory}: not a directory (a scenario writes one file per variant)"
        )
    check_json_target(directory / "probe.hgrm")


def _merged(windows: tuple[Window, ...]) -> dict[str, Any]:
    hist = PyHistogram()
    for w in windows:
        hist.merge(w.histogram)
    return hist.to_dict()


def write_scenario_hgrm(directory: Path, record: ScenarioRecord) -> list[Path]:
    """Per variant: VARIANT.hgrm (open loop, at the common rate) and VARIANT-capacity.hgrm."""
    written = []
    for run in record.runs:
        name = file_component(run.variant.name)
        for suffix, windows in (("", run.latency), ("-capacity", run.capacity)):
            if windows:
                path = Path(directory) / f"{name}{suffix}.hgrm"
                write_hgrm(path, _merged(tuple(windows)))
                written.append(path)
    return written
