"""Turn a scenario's windows and recordings into the wsprof.scenario/1 document.

Figures: medians over the clean windows with their MAD; layer shares from the
separate profiled window applied to the clean server CPU µs/message; the
latency budget of the median p50; closure against `wsprof micro` predictions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from wsprof import stats
from wsprof.env import environment

if TYPE_CHECKING:
    from wsprof.runner import ScenarioRunner, VariantRun

SCHEMA = "wsprof.scenario/1"


def _variant_figures(run: VariantRun) -> dict[str, Any]:
    from wsprof.runner import merged_latency

    cap = run.capacity
    lat = run.latency
    figures: dict[str, Any] = {
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
        "latency_windows": len(lat),
        "server_cpu_us_per_msg_at_rate": stats.median([w.server_cpu_us_per_msg for w in lat])
        if lat
        else None,
        "client_cpu_us_per_msg_at_rate": stats.median([w.client_cpu_us_per_msg for w in lat])
        if lat
        else None,
        "errors": _sum_errors(cap + lat),
    }
    return figures


def _sum_errors(windows: list[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for w in windows:
        for k, n in w.errors.items():
            total[k] = total.get(k, 0) + n
    return total


def _attribution(
    runner: ScenarioRunner, run: VariantRun, figures: dict[str, Any]
) -> dict[str, Any]:
    """Layers, flamegraphs and the profiler overhead of one variant's profiled window."""
    from wsprof.profiling.attribute import attribute, layer_us_per_msg
    from wsprof.profiling.flamegraph import write_flamegraph
    from wsprof.profiling.folded import read_folded
    from wsprof.profiling.layers import load_rules
    from wsprof.profiling.speedscope import write_speedscope

    assert run.folded is not None and run.profiled is not None
    stacks = read_folded(run.folded)
    rules = load_rules(runner.rules)
    attribution = attribute(stacks, rules)
    us = layer_us_per_msg(attribution, figures["server_cpu_us_per_msg"])
    svg = run.folded.with_suffix(".svg")
    write_flamegraph(stacks, svg, title=f"{runner.scenario.name}: {run.variant.name}", rules=rules)
    speedscope = run.folded.with_suffix(".speedscope.json")
    write_speedscope(stacks, speedscope, name=f"{runner.scenario.name}: {run.variant.name}")
    adjacent = run.capacity[-1].msgs_per_s  # the clean window right before the profiled one
    return {
        "layers": {
            name: {"share": share.share, "samples": share.samples, "us_per_msg": us[name]}
            for name, share in attribution.layers.items()
        },
        "profile_samples": attribution.total_samples,
        "idle_samples": attribution.idle_samples,
        "profiled_messages": run.profiled.messages,
        "profiler_overhead": {
            "profiled_msgs_per_s": run.profiled.msgs_per_s,
            "clean_msgs_per_s": adjacent,
            "clean_median_msgs_per_s": figures["throughput_msgs_per_s"],
            "throughput_ratio": run.profiled.msgs_per_s / adjacent if adjacent else None,
            "server_cpu_us_per_msg_profiled": run.profiled.server_cpu_us_per_msg,
        },
        "flamegraphs": {"folded": str(run.folded), "svg": str(svg), "speedscope": str(speedscope)},
    }


def _diff(runner: ScenarioRunner, base: VariantRun, run: VariantRun) -> str:
    from wsprof.profiling.flamegraph import write_diff_flamegraph
    from wsprof.profiling.folded import read_folded

    assert base.folded and run.folded and base.profiled and run.profiled
    out = runner.out_dir / f"{run.variant.name}.vs.{base.variant.name}.diff.svg"
    write_diff_flamegraph(
        read_folded(base.folded),
        read_folded(run.folded),
        out,
        messages_a=base.profiled.messages,
        messages_b=run.profiled.messages,
        title=f"{runner.scenario.name}: {run.variant.name} vs {base.variant.name} (per message)",
    )
    return str(out)


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


def build_document(runner: ScenarioRunner) -> dict[str, Any]:
    from wsprof.closure import closure_entries

    profiling_ok = runner.profile and runner.profiler_note is None
    floor_us = runner.floor_us
    variants: list[dict[str, Any]] = []
    for run in runner.runs:
        entry: dict[str, Any] = {
            "name": run.variant.name,
            "stack": run.variant.stack,
            "options": run.server.options if run.server else run.variant.options,
            "status": "ok" if run.ok and run.capacity else "failed",
            "error": run.error,
            "claim": run.variant.claim,
        }
        if run.capacity:
            entry.update(_variant_figures(run))
        if run.ok and run.folded is not None:
            entry.update(_attribution(runner, run, entry))
            if entry.get("latency_us") and entry["server_cpu_us_per_msg_at_rate"] is not None:
                shares = {k: v["share"] for k, v in entry["layers"].items()}
                entry["latency_budget"] = latency_budget(
                    entry["latency_us"]["p50"],
                    shares,
                    entry["server_cpu_us_per_msg_at_rate"],
                    floor_us,
                )
            entry["closure"] = closure_entries(
                run.variant.stack,
                entry["options"],
                runner.plan.payload,
                entry["layers"],
                runner.micro_results,
            )
        variants.append(entry)
    base = runner.runs[0]
    for run, entry in zip(runner.runs, variants, strict=True):
        if run is not base and run.ok and base.ok and run.folded and base.folded:
            entry["flamegraphs"]["diff_svg"] = _diff(runner, base, run)
    _deltas(variants)
    complete = all(v["status"] == "ok" for v in variants)
    return {
        "schema": SCHEMA,
        "scenario": runner.scenario.name,
        "description": runner.scenario.description,
        "question": runner.scenario.question,
        "source": runner.scenario.source,
        "quick": runner.quick,
        "complete": complete,
        "plan": asdict(runner.plan),
        "latency_rate_msgs_per_s": runner.latency_rate,
        "client": runner.client,
        "profiling": {
            "enabled": runner.profile,
            "available": profiling_ok,
            "note": runner.profiler_note,
            "rate_hz": runner.rate_hz,
            "native": runner.native,
            "nonblocking": True,
            "rules": str(runner.rules) if runner.rules else "default",
            "out_dir": str(runner.out_dir) if profiling_ok else None,
            "client_kernel_floor_us": floor_us,
            "closure_note": runner.closure_note,
        },
        "env": environment(
            server_cpu=runner.server_cpu,
            client_cpus=runner.client_cpus,
            client=runner.client,
        ),
        "variants": variants,
    }
