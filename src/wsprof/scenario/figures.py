"""Workload figures and sweep rows of a record (pure, no I/O).

Echo's figures are analysis' own; each other workload adds the keys the
issue names (deliveries_per_s, missing, rss_kb_per_connection, ...) from the
``figures`` its windows carry. A sweep's rows are those figures per point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wsprof import stats
from wsprof.scenario.record import ScenarioRecord, VariantRun, Window
from wsprof.scenario.sweep import SWEEP_PARAMETERS, Sweep, growth


def _total(windows: Sequence[Window], key: str) -> int:
    return int(sum(w.figures.get(key, 0.0) for w in windows))


def _median(windows: Sequence[Window], value: Callable[[Window], float | None]) -> float | None:
    values = [v for w in windows if (v := value(w)) is not None]
    return stats.median(values) if values else None


def _per(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def broadcast_figures(run: VariantRun) -> dict[str, Any]:
    """Deliveries/s at capacity, exactly-once accounting, CPU per broadcast and per delivery."""
    cap, lat = run.capacity, run.latency
    every = cap + lat
    broker = any(w.figures.get("broker_cpu_s", 0.0) > 0 for w in every)
    cross = [w for w in lat if "cross_p50_us" in w.figures]
    return {
        "recipients": int(cap[0].figures.get("recipients", 0)) if cap else 0,
        "deliveries_per_s": stats.median([w.msgs_per_s for w in cap]),
        "broadcasts_per_s": _median(
            cap, lambda w: _per(w.figures.get("broadcasts", 0), w.elapsed_s)
        ),
        "missing": _total(every, "missing"),
        "duplicates": _total(every, "duplicates"),
        "server_cpu_us_per_delivery": stats.median([w.server_cpu_us_per_msg for w in cap]),
        "server_cpu_us_per_broadcast": _median(
            cap, lambda w: _per(w.server_cpu_s * 1e6, w.figures.get("broadcasts", 0))
        ),
        "broker_us_per_delivery": _median(
            cap, lambda w: _per(w.figures.get("broker_cpu_s", 0.0) * 1e6, w.messages)
        )
        if broker
        else None,
        "cross_latency_us": {
            "p50": stats.median([w.figures["cross_p50_us"] for w in cross]),
            "p99": stats.median([w.figures["cross_p99_us"] for w in cross]),
        }
        if cross
        else None,
    }


def idle_figures(run: VariantRun) -> dict[str, Any]:
    """Server RSS per held connection, idle CPU per 1,000 connections, heartbeats in time."""
    cap = run.capacity
    return {
        "connections": int(_median(cap, lambda w: w.figures.get("connections")) or 0),
        "failed": _total(cap, "failed"),
        "rss_kb_per_connection": _median(cap, lambda w: w.figures.get("rss_kb_per_connection")),
        "server_rss_kb": _median(cap, lambda w: w.figures.get("rss_kb")),
        "idle_cpu_us_per_s_per_1k": _median(
            cap, lambda w: w.figures.get("idle_cpu_us_per_s_per_1k")
        ),
        "heartbeats": _total(cap, "heartbeats"),
        "heartbeats_late": _total(cap, "heartbeats_late"),
        "open_s": _median(cap, lambda w: w.figures.get("open_s")),
    }


def connect_figures(run: VariantRun, latency: Callable[[Sequence[Window]], Any]) -> dict[str, Any]:
    """Connections opened per second, their latency, server CPU per connection."""
    cap = run.capacity
    return {
        "connects_per_s": stats.median([w.msgs_per_s for w in cap]),
        "connect_latency_us": latency(cap),
        "server_cpu_us_per_connection": stats.median([w.server_cpu_us_per_msg for w in cap]),
    }


def workload_figures(
    workload: str, run: VariantRun, latency: Callable[[Sequence[Window]], Any]
) -> dict[str, Any]:
    """The workload's own keys of a variant entry (none for echo); ``latency`` merges windows."""
    if not run.capacity:
        return {}
    if workload == "broadcast":
        return broadcast_figures(run)
    if workload == "idle":
        return idle_figures(run)
    if workload == "connect":
        return connect_figures(run, latency)
    return {}


#: The keys of a variant entry a sweep row repeats (when the entry has them).
ROW_KEYS = (
    "throughput_msgs_per_s",
    "server_cpu_us_per_msg",
    "client_bound",
    "latency_us",
    "latency_at_capacity_us",
    "server_rss_mb",
    "errors",
    "recipients",
    "deliveries_per_s",
    "missing",
    "duplicates",
    "server_cpu_us_per_delivery",
    "server_cpu_us_per_broadcast",
    "broker_us_per_delivery",
    "cross_latency_us",
    "connections",
    "failed",
    "rss_kb_per_connection",
    "server_rss_kb",
    "idle_cpu_us_per_s_per_1k",
    "heartbeats",
    "heartbeats_late",
    "connects_per_s",
    "connect_latency_us",
)

RESTART_NOTE = (
    "servers kept running from point to point: connections, recipients and payload sizes "
    "are the client's, not server options, so no point needs a restart"
)


def sweep_document(
    record: ScenarioRecord, entry: Callable[[VariantRun], dict[str, Any]]
) -> dict[str, Any] | None:
    """``sweep``: parameter, points, rows and fitted growth per variant; None without a sweep.

    ``entry`` is analysis' figures of one run (without attribution). A variant
    that failed at a point (a connection limit mid-ramp) keeps its earlier rows
    and is marked ``incomplete`` with its one-line error.
    """
    if record.sweep_parameter is None:
        return None
    sweep = Sweep(record.sweep_parameter, tuple(p.value for p in record.sweep_points))
    names = [run.variant.name for run in record.runs]
    per_variant: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = []
        for point in record.sweep_points:
            run = next((r for r in point.runs if r.variant.name == name), None)
            if run is None:
                continue
            figures = entry(run)
            ok = run.ok and bool(run.capacity)
            row: dict[str, Any] = {"point": point.value, "status": "ok" if ok else "failed"}
            row.update({k: figures[k] for k in ROW_KEYS if k in figures})
            if not ok:
                row["error"] = run.error
            rows.append(row)
        failed = [r for r in rows if r["status"] != "ok"]
        per_variant[name] = {
            "rows": rows,
            "growth": growth(sweep, record.plan.workload, rows),
            "incomplete": bool(failed) or len(rows) < len(sweep.points),
            "error": failed[0].get("error") if failed else None,
        }
    return {
        "parameter": sweep.parameter,
        "unit": SWEEP_PARAMETERS[sweep.parameter],
        "points": list(sweep.points),
        "restart_per_point": False,
        "note": RESTART_NOTE,
        "profiled_point": sweep.points[-1] if sweep.points else None,
        "incomplete": any(v["incomplete"] for v in per_variant.values()),
        "variants": per_variant,
    }
