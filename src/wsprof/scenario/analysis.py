"""Turn a scenario record into the wsprof.scenario/1 result: pure, no I/O.

Figures: medians over the clean windows with their MAD; layer shares from the
separate profiled window applied to the clean server CPU µs/message; the
latency budget of the median p50; closure against `wsprof micro` predictions.
The stacks of each recording are handed in (the caller reads the folded
files); the outputs step adds the paths of the files it writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from wsprof import stats
from wsprof.client.histogram import PyHistogram, latency_summary_us
from wsprof.profiling.attribute import (
    attribute,
    expected_samples,
    kernel_io_json,
    layer_us_per_msg,
    sampling_check,
    sampling_note,
    with_proc_split,
)
from wsprof.profiling.folded import Stack, processes, total_samples
from wsprof.profiling.layers import RuleSet
from wsprof.scenario.closure import closure_entries, counted_events
from wsprof.scenario.contention import CONTENTION_CORES, contended
from wsprof.scenario.figures import sweep_document, workload_figures
from wsprof.scenario.record import ScenarioRecord, VariantRun, Window

SCHEMA = "wsprof.scenario/1"


def merged_latency(windows: Iterable[Window]) -> dict[str, float]:
    """Percentiles of all the windows' round trips together (histograms merge exactly)."""
    hist = PyHistogram()
    for w in windows:
        hist.merge(w.histogram)
    return latency_summary_us(hist)


#: HdrHistogram's percentile steps: each halves the distance to 100% (50, 75, 87.5, ...),
#: down to 99.99%, so a curve has equal room for every "nine".
CURVE_PERCENTILES = tuple(100.0 - 50.0 / 2**i for i in range(13))


def latency_curve(windows: Iterable[Window]) -> list[list[float]]:
    """[[percentile, µs], ...] of all the windows' round trips, ending at [100, max]."""
    hist = PyHistogram()
    for w in windows:
        hist.merge(w.histogram)
    if hist.total == 0:
        return []
    curve = [[q, hist.percentile_ns(q) / 1000.0] for q in CURVE_PERCENTILES]
    return [*curve, [100.0, hist.max_ns / 1000.0]]


def _sum_errors(windows: Iterable[Window]) -> dict[str, int]:
    total: dict[str, int] = {}
    for w in windows:
        for k, n in w.errors.items():
            total[k] = total.get(k, 0) + n
    return total


def _contention(windows: Sequence[Window]) -> dict[str, Any]:
    """Other processes busy on the machine during this variant's windows."""
    cores = [w.other_cpu_cores for w in windows]
    return {
        "contended": any(contended(c) for c in cores),
        "windows_contended": sum(1 for c in cores if contended(c)),
        "windows": len(cores),
        "other_cpu_cores_max": max(cores, default=0.0),
    }


def _os_split(windows: Sequence[Window]) -> dict[str, Any]:
    """The kernel's user/system split of the clean windows: medians per message, system share."""
    counted = [w for w in windows if w.messages and w.server_user_s + w.server_system_s > 0]
    if not counted:
        return {
            "server_user_us_per_msg": None,
            "server_system_us_per_msg": None,
            "system_share": None,
        }
    return {
        "server_user_us_per_msg": stats.median(
            [w.server_user_s * 1e6 / w.messages for w in counted]
        ),
        "server_system_us_per_msg": stats.median(
            [w.server_system_s * 1e6 / w.messages for w in counted]
        ),
        "system_share": stats.median([w.system_share or 0.0 for w in counted]),
    }


def _variant_figures(run: VariantRun) -> dict[str, Any]:
    cap = run.capacity
    lat = run.latency
    return {
        "throughput_msgs_per_s": stats.median([w.msgs_per_s for w in cap]),
        "throughput": stats.summary([w.msgs_per_s for w in cap]),
        "server_cpu_us_per_msg": stats.median([w.server_cpu_us_per_msg for w in cap]),
        "server_cpu": stats.summary([w.server_cpu_us_per_msg for w in cap]),
        "client_cpu_us_per_msg": stats.median([w.client_cpu_us_per_msg for w in cap]),
        "client_bound": any(w.client_bound for w in cap),
        "client_busy_max": max((w.client_busy for w in cap), default=0.0),
        "server_rss_mb": run.rss_bytes / 2**20,
        "latency_us": merged_latency(lat) if lat else None,
        # Closed-loop latency at capacity is queueing (Little's law: connections x
        # in-flight / throughput); it is what most published benchmarks quote.
        "latency_at_capacity_us": merged_latency(cap),
        "latency_curve_us": latency_curve(lat),
        "latency_at_capacity_curve_us": latency_curve(cap),
        "latency_windows": len(lat),
        "server_cpu_us_per_msg_at_rate": stats.median([w.server_cpu_us_per_msg for w in lat])
        if lat
        else None,
        "client_cpu_us_per_msg_at_rate": stats.median([w.client_cpu_us_per_msg for w in lat])
        if lat
        else None,
        **_os_split(cap),
        "errors": _sum_errors(cap + lat),
        "contention": _contention(cap + lat + ((run.profiled,) if run.profiled else ())),
    }


def _sampling(
    run: VariantRun, stacks: Sequence[Stack], rate_hz: int, window_s: float
) -> dict[str, Any]:
    """py-spy's misses and errors in the profiled window (expected: while the server ran)."""
    summary = run.pyspy or {}
    cpu_s = run.profiled.server_cpu_s if run.profiled is not None else window_s
    return sampling_check(
        expected_samples(rate_hz, window_s, cpu_s, len(processes(stacks))),
        total_samples(stacks),
        summary.get("samples"),
        summary.get("errors"),
    )


def _attribution(
    run: VariantRun,
    stacks: Sequence[Stack],
    rules: RuleSet,
    figures: dict[str, Any],
    native: bool = False,
    rate_hz: int = 0,
    window_s: float = 0.0,
) -> dict[str, Any]:
    """Layers and the profiler overhead of one variant's profiled window."""
    assert run.folded is not None and run.profiled is not None
    sampled = attribute(stacks, rules)
    profiled = run.profiled
    # kernel-io agrees with the kernel's split of the profiled window itself (see with_proc_split).
    attribution = with_proc_split(
        sampled, profiled.server_user_s, profiled.server_system_s, native=native
    )
    us = layer_us_per_msg(attribution, figures["server_cpu_us_per_msg"])
    adjacent = run.capacity[-1].msgs_per_s  # the clean window right before the profiled one
    return {
        "layers": {
            name: {
                "share": share.share,
                "share_ci95": list(share.ci95),
                "samples": share.samples,
                "us_per_msg": us[name],
            }
            for name, share in attribution.layers.items()
        },
        **kernel_io_json(attribution),
        "sampled_kernel_io_share": sampled.layers["kernel-io"].share
        if "kernel-io" in sampled.layers
        else None,
        "profile_samples": attribution.total_samples,
        "sampling": _sampling(run, stacks, rate_hz, window_s),
        "sampling_note": sampling_note(attribution.total_samples),
        "idle_samples": attribution.idle_samples,
        "profiled_messages": run.profiled.messages,
        "profiler_overhead": {
            "profiled_msgs_per_s": run.profiled.msgs_per_s,
            "clean_msgs_per_s": adjacent,
            "clean_median_msgs_per_s": figures["throughput_msgs_per_s"],
            "throughput_ratio": run.profiled.msgs_per_s / adjacent if adjacent else None,
            "server_cpu_us_per_msg_profiled": run.profiled.server_cpu_us_per_msg,
        },
        # The outputs step adds the files it writes beside the recording.
        "flamegraphs": {"folded": run.folded},
    }


def latency_budget(
    p50_us: float, shares: dict[str, float], server_cpu_us: float, floor_us: float | None
) -> dict[str, Any]:
    """Split the median round trip into server work per layer, the floor, and waiting.

    Server work: the latency window's server CPU µs/message split by the profiled
    layer shares. Floor: the client's and the kernel's unavoidable send+recv
    (client-bench's measurement). Waiting: whatever is left (queueing, wake-ups,
    scheduling); it is reported even when negative, since that is a finding.
    """
    layers = {name: share * server_cpu_us for name, share in shares.items()}
    floor = floor_us or 0.0
    return {
        "p50_us": p50_us,
        "server_work_us": layers,
        "server_work_total_us": server_cpu_us,
        "client_kernel_floor_us": floor_us,
        "waiting_us": p50_us - server_cpu_us - floor,
    }


def _deltas(variants: list[dict[str, Any]]) -> None:
    """Each finished variant against the first finished one: µs/message, %, per layer."""
    first = next((v for v in variants if v["status"] == "ok"), None)
    for v in variants:
        if first is None or v["status"] != "ok":
            v["delta_to_first"] = None
            continue
        base = first["server_cpu_us_per_msg"]
        d = v["server_cpu_us_per_msg"] - base
        v["delta_to_first"] = {
            "variant": first["name"],
            "server_cpu_us_per_msg": d,
            "server_cpu_pct": 100.0 * d / base if base else None,
            "throughput_pct": 100.0
            * (v["throughput_msgs_per_s"] / first["throughput_msgs_per_s"] - 1)
            if first["throughput_msgs_per_s"]
            else None,
        }
        if "layers" in v and "layers" in first:
            v["layer_deltas_us"] = {
                name: v["layers"][name]["us_per_msg"]
                - first["layers"].get(name, {}).get("us_per_msg", 0.0)
                for name in v["layers"]
            }


def _variant(
    record: ScenarioRecord,
    run: VariantRun,
    stacks: Sequence[Stack] | None,
    rules: RuleSet,
    *,
    attribute: bool = True,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": run.variant.name,
        "stack": run.variant.stack,
        "options": dict(run.options),
        "status": "ok" if run.ok and run.capacity else "failed",
        "error": run.error,
        "claim": run.variant.claim,
    }
    if run.capacity:
        entry.update(_variant_figures(run))
        entry.update(workload_figures(record.plan.workload, run, merged_latency))
    if attribute and run.ok and run.folded is not None:
        if stacks is None:
            raise ValueError(f"no stacks given for the recording of {run.variant.name}")
        entry.update(
            _attribution(
                run,
                stacks,
                rules,
                entry,
                native=record.native,
                rate_hz=record.rate_hz,
                window_s=(
                    record.plan.profile_window_s if run.profiled is None else run.profiled.elapsed_s
                ),
            )
        )
        if entry.get("latency_us") and entry["server_cpu_us_per_msg_at_rate"] is not None:
            shares = {k: v["share"] for k, v in entry["layers"].items()}
            entry["latency_budget"] = latency_budget(
                entry["latency_us"]["p50"],
                shares,
                entry["server_cpu_us_per_msg_at_rate"],
                record.floor_us,
            )
        counted = record.counted.get(run.variant.name)
        entry["closure"] = closure_entries(
            entry["options"],
            record.plan.payload,
            entry["layers"],
            list(record.micro_results),
            counted,
        )
        entry["counted_events"] = counted_events(counted)
    return entry


def profiled_runs(record: ScenarioRecord) -> list[VariantRun]:
    """The variants whose recording is attributed (and so whose stacks analysis needs)."""
    return [run for run in record.runs if run.ok and run.folded is not None]


def analyse(
    record: ScenarioRecord, stacks: Mapping[str, Sequence[Stack]], rules: RuleSet
) -> dict[str, Any]:
    """The wsprof.scenario/1 document of ``record``.

    ``stacks`` holds the parsed recording of every variant in
    :func:`profiled_runs`, by variant name; ``rules`` charges them to layers.
    """
    variants = [_variant(record, run, stacks.get(run.variant.name), rules) for run in record.runs]
    _deltas(variants)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": record.scenario,
        "description": record.description,
        "question": record.question,
        "source": record.source,
        "quick": record.quick,
        "complete": all(v["status"] == "ok" for v in variants),
        "plan": asdict(record.plan),
        "latency_rate_msgs_per_s": record.latency_rate,
        "client": record.client,
        "profiling": {
            "enabled": record.profile,
            "available": record.profiling_ok,
            "note": record.profiler_note,
            "rate_hz": record.rate_hz,
            "native": record.native,
            "nonblocking": True,
            "rules": record.rules or "default",
            "out_dir": record.out_dir if record.profiling_ok else None,
            "client_kernel_floor_us": record.floor_us,
            "closure_note": record.closure_note,
        },
        "env": copy.deepcopy(record.env),
        "contention": {
            "detected": any(v.get("contention", {}).get("contended") for v in variants),
            "variants": [v["name"] for v in variants if v.get("contention", {}).get("contended")],
            "threshold_cores": CONTENTION_CORES,
            "note": "other processes kept at least threshold_cores busy during a window: "
            "another load shared the machine and the figures of those windows are low",
        },
        "variants": variants,
        "workload": record.plan.workload,
    }
    sweep = sweep_document(record, lambda run: _variant(record, run, None, rules, attribute=False))
    if sweep is not None:
        document["sweep"] = sweep
    if record.wall_time_s is not None:
        document["wall_time_s"] = record.wall_time_s
    return document
