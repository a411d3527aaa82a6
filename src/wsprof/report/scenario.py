"""Terminal presentation of a wsprof.scenario/1 document."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wsprof.report.attribution import share_text
from wsprof.scenario.files import printable
from wsprof.scenario.sweep import growth_text


def layer_names(variants: list[dict[str, Any]]) -> list[str]:
    """Every layer of the variants, in the order of the rules that charged them.

    Attribution lists a rule set's layers in its order (user-added layers
    included), so the union in first-seen order is that order.
    """
    names: dict[str, None] = {}
    for v in variants:
        names.update(dict.fromkeys(v.get("layers") or {}))
    return list(names)


def _pm(summary: dict[str, Any] | None, fmt: str) -> str:
    if not summary:
        return "-"
    text = format(summary["median"], fmt)
    if summary["n"] > 1:
        text += f" ± {format(summary['mad'], fmt)}"
    return text


def _signed(value: float | None, fmt: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:+{fmt}}{suffix}"


def _main_table(doc: dict[str, Any]) -> Table:
    plan = doc["plan"]
    table = Table(
        title=f"wsprof scenario {doc['scenario']}: {plan['connections']} connections, payload "
        f"{plan['payload']}, medians ± MAD of {plan['repeats']} window(s)",
        caption=f"capacity: closed loop, {plan['in_flight']} in flight per connection; latency: open loop at "
        f"{(doc['latency_rate_msgs_per_s'] or 0):,.0f} msgs/s for every variant, timed from intended send times",
    )
    if doc.get("workload", "echo") != "echo":
        table.title = (
            f"wsprof scenario {doc['scenario']}: medians ± MAD of {plan['repeats']} window(s)"
        )
        table.caption = WORKLOAD_CAPTIONS[doc["workload"]].format(
            rate=doc["latency_rate_msgs_per_s"] or 0
        )
    for col in (
        "variant",
        "msgs/s (capacity)",
        "server CPU µs/msg",
        "Δ µs/msg",
        "Δ %",
        "client CPU µs/msg",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "RSS MB",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in doc["variants"]:
        if v["status"] != "ok":
            table.add_row(v["name"], "[red]failed[/]", *["-"] * 9)
            continue
        delta = v.get("delta_to_first") or {}
        lat = v.get("latency_us") or {}
        name = v["name"] + (" [yellow](client-bound)[/]" if v["client_bound"] else "")
        table.add_row(
            name,
            _pm(v["throughput"], ",.0f"),
            _pm(v["server_cpu"], ".1f"),
            _signed(delta.get("server_cpu_us_per_msg"), ".1f"),
            _signed(delta.get("server_cpu_pct"), ".0f", "%"),
            f"{v['client_cpu_us_per_msg']:.1f}",
            *(f"{lat[k]:,.0f}" if k in lat else "-" for k in ("p50", "p90", "p99", "p999")),
            f"{v['server_rss_mb']:.0f}",
        )
    return table


def _layer_table(doc: dict[str, Any]) -> Table | None:
    profiled = [v for v in doc["variants"] if v.get("layers")]
    if not profiled:
        return None
    caption = (
        "shares from a separate profiled window; overhead = its throughput over the clean "
        "window run just before it"
    )
    if not doc["profiling"].get("native"):
        caption += (
            "; without --native, C work (uvloop's I/O and syscalls, orjson, greenlet "
            "switches) is charged to the Python frame that called it, so kernel-io is "
            "apportioned from the /proc system share of the profiled window and the other "
            "layers scaled to fit (assumes system time is spread over them by their samples)"
        )
    table = Table(
        title="server CPU µs/message by layer (py-spy shares x clean CPU µs/msg)",
        caption=caption,
    )
    table.add_column("layer")
    for v in profiled:
        table.add_column(v["name"], justify="right")
    if len(profiled) > 1:
        for v in profiled[1:]:
            table.add_column(f"Δ {v['name']}", justify="right")
    for layer in layer_names(profiled):
        row = [layer]
        for v in profiled:
            entry = v["layers"].get(layer, {"us_per_msg": 0.0, "share": 0.0})
            row.append(_layer_cell(entry))
        for v in profiled[1:]:
            row.append(_signed(v.get("layer_deltas_us", {}).get(layer), ".1f"))
        table.add_row(*row)
    table.add_row(
        "[bold]total[/]",
        *[f"[bold]{v['server_cpu_us_per_msg']:.1f}[/]" for v in profiled],
        *[
            _signed((v.get("delta_to_first") or {}).get("server_cpu_us_per_msg"), ".1f")
            for v in profiled[1:]
        ],
    )
    table.add_row(
        "profiler overhead",
        *[
            f"{v['profiler_overhead']['throughput_ratio']:.2f}x thr."
            if v["profiler_overhead"]["throughput_ratio"]
            else "-"
            for v in profiled
        ],
        *[""] * (len(profiled) - 1),
    )
    table.add_row(
        "samples", *[f"{v['profile_samples']:,}" for v in profiled], *[""] * (len(profiled) - 1)
    )
    _os_rows(table, profiled)
    return table


def _pyspy_line(check: dict[str, Any] | None) -> str | None:
    """py-spy's own errors and missed samples, when it had any."""
    if not check or not (check.get("pyspy_errors") or (check.get("missed_share") or 0) > 0.05):
        return None
    taken = check["pyspy_samples"] if check["pyspy_samples"] is not None else "?"
    missed = check["missed_share"] or 0.0
    return (
        f"py-spy took {taken} of ~{check['expected_samples']:,} samples expected while the server ran "
        f"(missed {missed:.1%}), {check['pyspy_errors'] or 0} errors"
    )


def _layer_cell(entry: dict[str, Any]) -> str:
    """``12.3 (41.2% ±1.3)``: µs/message and the share with its 95% interval."""
    return f"{entry['us_per_msg']:.1f} ({share_text(entry['share'], entry.get('share_ci95'))})"


def _os_rows(table: Table, profiled: list[dict[str, Any]]) -> None:
    """The kernel's own split beside the layers, and how kernel-io was found."""
    pad = [""] * (len(profiled) - 1)

    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    table.add_row(
        "/proc user µs/msg", *[cell(v.get("server_user_us_per_msg"), ".1f") for v in profiled], *pad
    )
    table.add_row(
        "/proc system µs/msg",
        *[cell(v.get("server_system_us_per_msg"), ".1f") for v in profiled],
        *pad,
    )
    table.add_row(
        "/proc system share (profiled)",
        *[cell(v.get("proc_system_share"), ".1%") for v in profiled],
        *pad,
    )
    table.add_row(
        "kernel-io method", *[str(v.get("kernel_io_method", "-")) for v in profiled], *pad
    )


def _budget_table(doc: dict[str, Any]) -> Table | None:
    rows = [v for v in doc["variants"] if v.get("latency_budget")]
    if not rows:
        return None
    table = Table(title="latency budget of the median round trip (µs, at the offered rate)")
    for col in (
        "variant",
        "p50",
        "server work",
        "of which top layers",
        "client+kernel floor",
        "waiting",
    ):
        table.add_column(
            col, justify="left" if col in ("variant", "of which top layers") else "right"
        )
    for v in rows:
        b = v["latency_budget"]
        top = sorted(b["server_work_us"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            v["name"],
            f"{b['p50_us']:,.0f}",
            f"{b['server_work_total_us']:.1f}",
            ", ".join(f"{k} {u:.1f}" for k, u in top),
            "-" if b["client_kernel_floor_us"] is None else f"{b['client_kernel_floor_us']:.1f}",
            f"{b['waiting_us']:,.0f}",
        )
    return table


def _closure_table(doc: dict[str, Any]) -> Table | None:
    rows = [(v["name"], c) for v in doc["variants"] for c in v.get("closure") or []]
    uncounted = [
        (v["name"], v["counted_events"]["error"])
        for v in doc["variants"]
        if "error" in (v.get("counted_events") or {})
    ]
    if not rows and not uncounted:
        return None
    table = Table(
        title="closure: attributed µs/msg vs counted events x `wsprof micro` costs",
        caption="events counted per message in a separate instrumented window; "
        "outside 0.67-1.5 the last column names what the model misses",
    )
    for col in ("variant", "layer", "attributed", "predicted", "ratio", "counted per message"):
        table.add_column(
            col, justify="right" if col in ("attributed", "predicted", "ratio") else "left"
        )
    table.add_column("model misses", overflow="fold")
    for name, c in rows:
        ratio = c.get("ratio")
        table.add_row(
            _text(name),
            c["layer"],
            f"{c['attributed_us']:.2f}",
            f"{c['predicted_us']:.2f}",
            "-" if ratio is None else f"{ratio:.2f}",
            _text(c["basis"]),
            _text(c.get("misses") or ""),
        )
    for name, error in uncounted:
        table.add_row(_text(name), "-", "-", "-", "-", "no prediction", _text(error))
    return table


def _claims_table(doc: dict[str, Any]) -> Table | None:
    rows = [v for v in doc["variants"] if v.get("claim") and v["status"] == "ok"]
    if not rows:
        return None
    table = Table(
        title="published claims beside what wsprof measured here",
        caption="closed-loop latency at capacity is queueing (connections / throughput), which is what "
        "the claims' p50s look like; open-loop latency at the offered rate is the server's own",
    )
    for col in (
        "variant",
        "claim",
        "claimed msgs/s",
        "measured msgs/s",
        "claimed p50/p99 ms",
        "at capacity p50/p99 ms",
        "at offered rate p50/p99 ms",
        "claimed RSS MB",
        "measured RSS MB",
    ):
        table.add_column(col, justify="left" if col in ("variant", "claim") else "right")
    for v in rows:
        c = v["claim"]

        def ms(lat: dict[str, float] | None) -> str:
            return f"{lat['p50'] / 1000:.2f}/{lat['p99'] / 1000:.2f}" if lat else "-"

        table.add_row(
            v["name"],
            c.get("source", ""),
            f"{c.get('msgs_per_s', 0):,}",
            f"{v['throughput_msgs_per_s']:,.0f}",
            f"{c.get('p50_ms', '-')}/{c.get('p99_ms', '-')}",
            ms(v.get("latency_at_capacity_us")),
            ms(v.get("latency_us")),
            f"{c.get('rss_mb', '-')}",
            f"{v['server_rss_mb']:.0f}",
        )
    return table


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


#: Per workload: (column, how a variant entry or sweep row shows in it).
WORKLOAD_COLUMNS: dict[str, list[tuple[str, Any]]] = {
    "broadcast": [
        ("recipients", lambda v: _f(v.get("recipients"), ",")),
        ("deliveries/s", lambda v: _f(v.get("deliveries_per_s"), ",.0f")),
        ("server µs/delivery", lambda v: _f(v.get("server_cpu_us_per_msg"), ".2f")),
        ("server µs/broadcast", lambda v: _f(v.get("server_cpu_us_per_broadcast"), ".1f")),
        ("redis µs/delivery", lambda v: _f(v.get("broker_us_per_delivery"), ".2f")),
        ("p50 µs", lambda v: _f((v.get("latency_us") or {}).get("p50"), ",.0f")),
        ("p99 µs", lambda v: _f((v.get("latency_us") or {}).get("p99"), ",.0f")),
        ("cross p50/p99 µs", lambda v: _cross(v.get("cross_latency_us"))),
        ("missing", lambda v: _f(v.get("missing"), ",")),
        ("dup.", lambda v: _f(v.get("duplicates"), ",")),
    ],
    "idle": [
        ("connections", lambda v: _f(v.get("connections"), ",")),
        ("failed", lambda v: _f(v.get("failed"), ",")),
        ("KB/connection", lambda v: _f(v.get("rss_kb_per_connection"), ".1f")),
        ("RSS MB", lambda v: _f(v.get("server_rss_mb"), ".0f")),
        ("idle CPU µs/s per 1k", lambda v: _f(v.get("idle_cpu_us_per_s_per_1k"), ",.0f")),
        (
            "heartbeats (late)",
            lambda v: f"{v.get('heartbeats', 0):,} ({v.get('heartbeats_late', 0):,})",
        ),
    ],
    "connect": [
        ("connects/s", lambda v: _f(v.get("connects_per_s"), ",.0f")),
        ("server µs/connection", lambda v: _f(v.get("server_cpu_us_per_msg"), ".0f")),
        ("p50 µs", lambda v: _f((v.get("connect_latency_us") or {}).get("p50"), ",.0f")),
        ("p99 µs", lambda v: _f((v.get("connect_latency_us") or {}).get("p99"), ",.0f")),
    ],
    "echo": [
        ("msgs/s", lambda v: _f(v.get("throughput_msgs_per_s"), ",.0f")),
        ("server µs/msg", lambda v: _f(v.get("server_cpu_us_per_msg"), ".1f")),
        ("p50 µs", lambda v: _f((v.get("latency_us") or {}).get("p50"), ",.0f")),
        ("p99 µs", lambda v: _f((v.get("latency_us") or {}).get("p99"), ",.0f")),
        ("RSS MB", lambda v: _f(v.get("server_rss_mb"), ".0f")),
    ],
}


#: What the main table's columns mean for each workload beyond echo.
WORKLOAD_CAPTIONS = {
    "broadcast": "msgs/s = deliveries/s at capacity (closed loop), server CPU µs per delivery; "
    "latency: send -> delivery, open loop at {rate:,.1f} broadcasts/s",
    "idle": "connections held idle: see the idle table (no messages, no latency)",
    "connect": "msgs/s = connections opened/s (closed loop), server CPU µs per connection",
}


def _cross(lat: dict[str, float] | None) -> str:
    return "-" if not lat else f"{lat['p50']:,.0f}/{lat['p99']:,.0f}"


def sweep_columns(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The workload's columns less the swept parameter's own (the point column shows it)."""
    swept = doc["sweep"]["parameter"]
    return [c for c in WORKLOAD_COLUMNS[doc.get("workload", "echo")] if c[0] != swept]


def _workload_table(doc: dict[str, Any]) -> Table | None:
    """The workload's own figures per variant (echo's are the main table's)."""
    workload = doc.get("workload", "echo")
    if workload == "echo":
        return None
    table = Table(title=f"{workload} workload, per variant")
    columns = WORKLOAD_COLUMNS[workload]
    table.add_column("variant")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for v in doc["variants"]:
        if v["status"] != "ok":
            table.add_row(_text(v["name"]), "[red]failed[/]", *["-"] * (len(columns) - 1))
            continue
        table.add_row(_text(v["name"]), *(show(v) for _, show in columns))
    return table


def _sweep_table(doc: dict[str, Any]) -> Table | None:
    """One row per point per variant, and each variant's fitted growth in the caption."""
    sweep = doc.get("sweep")
    if not sweep:
        return None
    columns = sweep_columns(doc)
    caption = [sweep["note"]]
    for name, entry in sweep["variants"].items():
        line = f"{_text(name)}: {growth_text(entry['growth'])}"
        if entry["incomplete"]:
            line += f" [red]incomplete[/]: {_text(entry['error'] or 'not every point ran')}"
        caption.append(line)
    table = Table(title=f"sweep over {sweep['parameter']}", caption="\n".join(caption))
    table.add_column("variant")
    table.add_column(sweep["parameter"], justify="right")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for name, entry in sweep["variants"].items():
        for row in entry["rows"]:
            if row["status"] != "ok":
                cells = ["[red]failed[/]", *["-"] * (len(columns) - 1)]
            else:
                cells = [show(row) for _, show in columns]
            table.add_row(_text(name), f"{row['point']:,}", *cells)
    return table


def _text(value: Any) -> str:
    """Text from a file or a server's stderr, shown as text: no markup, no control characters."""
    return escape("\n".join(printable(line) for line in str(value).split("\n")))


def render_scenario(doc: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{_text(doc['scenario'])}[/]: {_text(doc['description'])}")
    if doc.get("question"):
        console.print(f"question: {_text(doc['question'])}")
    console.print(_main_table(doc))
    for make in (
        _workload_table,
        _sweep_table,
        _layer_table,
        _budget_table,
        _closure_table,
        _claims_table,
    ):
        table = make(doc)
        if table is not None:
            console.print(table)
    prof = doc["profiling"]
    if prof["enabled"] and not prof["available"]:
        console.print(f"[bold yellow]attribution unavailable:[/] {_text(prof['note'])}")
    elif prof["enabled"]:
        console.print(f"flamegraphs: {_text(prof['out_dir'])}/")
    for v in doc["variants"]:
        if v.get("sampling_note"):
            console.print(f"[bold yellow]{_text(v['name'])}:[/] {_text(v['sampling_note'])}")
        if (line := _pyspy_line(v.get("sampling"))) is not None:
            console.print(f"{_text(v['name'])}: {_text(line)}")
    if doc.get("report_html"):
        console.print(f"report: {_text(doc['report_html'])} (open it in a browser)")
    bound = [v["name"] for v in doc["variants"] if v.get("client_bound")]
    if bound:
        console.print(
            f"[bold yellow]client-bound:[/] {', '.join(bound)}: the client used most of a core; "
            "those capacity figures are the client's, not the server's"
        )
    if doc["client"] != "fast":
        console.print(
            "[yellow]note:[/] the Cython fast client is not built; the reference client drove this run "
            "and may be the bottleneck"
        )
    for v in doc["variants"]:
        if v["status"] != "ok":
            console.print(f"[red]variant {_text(v['name'])} failed:[/] {_text(v['error'])}")
        elif v.get("errors"):
            console.print(f"[yellow]variant {_text(v['name'])} had errors:[/] {v['errors']}")
    contention = doc.get("contention") or {}
    if contention.get("detected"):
        busiest = max(
            (v.get("contention", {}).get("other_cpu_cores_max", 0.0) for v in doc["variants"]),
            default=0.0,
        )
        console.print(
            f"[bold yellow]contention:[/] other processes kept up to {busiest:.2f} cores busy "
            f"during windows of {', '.join(_text(n) for n in contention['variants'])}: another "
            "load shared the machine, so those figures are low; run again on a quiet machine"
        )
    if not doc["complete"]:
        console.print(
            "[bold red]result incomplete[/]: finished variants are reported; failed ones are marked"
        )
    if "wall_time_s" in doc:
        console.print(f"wall time {doc['wall_time_s']:.0f} s")
