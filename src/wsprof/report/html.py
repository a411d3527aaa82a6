"""The self-contained HTML report (report.html) of a scenario result or a profile.

One file that opens from disk with no network: CSS and JS are inlined from
report/assets/, charts are static SVG (html_charts), flamegraphs are call
trees drawn by report.js (html_flame). Rendering is pure: a result dict and
parsed stacks in, a string out; the outputs step and `wsprof report` write it.
Everything that came from a file (names, command lines, errors) is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

from wsprof.profiling.folded import Stack
from wsprof.profiling.layers import RuleSet, layer_colour
from wsprof.report.html_charts import latency_chart, layer_bars, wilson
from wsprof.report.html_flame import diff_data, flame_data
from wsprof.report.html_sweep import sweep_section, workload_section

US = "µs/msg"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("wsprof.report").joinpath("assets", name).read_text(encoding="utf-8")


def _json_script(element_id: str, data: Any) -> str:
    """Data for report.js; ``<``, ``>`` and ``&`` escaped so no text can close the script."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{_e(element_id)}">{text}</script>'


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    return "–" if value is None else f"{format(value, fmt)}{suffix}"


def _table(
    head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "", text: Sequence[int] = (0,)
) -> str:
    """A table of already escaped cells; the ``text`` columns align left, numbers right."""

    def cell(tag: str, i: int, c: str) -> str:
        return f'<{tag} class="l">{c}</{tag}>' if i in text else f"<{tag}>{c}</{tag}>"

    h = "".join(cell("th", i, c) for i, c in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _page(title: str, body: Sequence[str], colours: Mapping[str, str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network, ever: the page is opened from disk and must not phone anywhere.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_asset('report.css')}</style></head><body>\n"
        + "\n".join(body)
        + "\n"
        + _json_script("layer-colours", dict(colours))
        + f"\n<script>{_asset('report.js')}</script>\n</body></html>\n"
    )


def _ok(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in doc["variants"] if v["status"] == "ok"]


def answer(doc: Mapping[str, Any]) -> str:
    """The scenario's question answered in one sentence, with its numbers (plain text)."""
    ok = _ok(doc)
    if not ok:
        return "No variant finished, so this run answers nothing: see the failures below."
    base = ok[0]
    head = (
        f"{base['name']} used {base['server_cpu_us_per_msg']:.1f} µs of server CPU per message "
        f"at {base['throughput_msgs_per_s']:,.0f} msgs/s"
    )
    if len(ok) == 1:
        p50 = (base.get("latency_us") or {}).get("p50")
        return head + ("" if p50 is None else f", p50 {p50:,.0f} µs at the offered rate") + "."
    parts = []
    for v in ok[1:]:
        d = v["delta_to_first"]
        text = (
            f"{v['name']} {d['server_cpu_us_per_msg']:+.1f} µs/msg "
            f"({_num(d['server_cpu_pct'], '+.0f', '%')}, {v['throughput_msgs_per_s']:,.0f} msgs/s)"
        )
        deltas = v.get("layer_deltas_us") or {}
        if deltas:
            layer, dl = max(deltas.items(), key=lambda kv: abs(kv[1]))
            text += f", mostly {layer} ({dl:+.1f} µs)"
        parts.append(text)
    return f"Against {head}: " + "; ".join(parts) + "."


def _notices(doc: Mapping[str, Any]) -> list[str]:
    out = []
    for v in doc["variants"]:
        if v["status"] != "ok":
            out.append(f'<p class="fail">variant {_e(v["name"])} failed: {_e(v["error"])}</p>')
        elif v.get("client_bound"):
            out.append(
                f'<p class="warn">{_e(v["name"])} is client-bound: its capacity is the '
                "client's, not the server's.</p>"
            )
    contention = doc.get("contention") or {}
    if contention.get("detected"):
        names = ", ".join(_e(n) for n in contention.get("variants", []))
        out.append(
            f'<p class="warn">contention during windows of {names}: another load shared the '
            "machine, so those figures are low.</p>"
        )
    prof = doc["profiling"]
    if prof["enabled"] and not prof["available"]:
        out.append(f'<p class="warn">attribution unavailable: {_e(prof["note"])}</p>')
    if not doc.get("complete", True):
        out.append('<p class="fail">result incomplete: failed variants are marked.</p>')
    return out


def _results(doc: Mapping[str, Any]) -> str:
    rows = []
    for v in doc["variants"]:
        if v["status"] != "ok":
            rows.append([_e(v["name"]), "failed", *["–"] * 9])
            continue
        d = v.get("delta_to_first") or {}
        lat = v.get("latency_us") or {}
        tp, cpu = v["throughput"], v["server_cpu"]
        rows.append(
            [
                _e(v["name"]),
                f"{tp['median']:,.0f}" + (f" ± {tp['mad']:,.0f}" if tp["n"] > 1 else ""),
                f"{cpu['median']:.1f}" + (f" ± {cpu['mad']:.1f}" if cpu["n"] > 1 else ""),
                _num(d.get("server_cpu_us_per_msg"), "+.1f"),
                _num(d.get("server_cpu_pct"), "+.0f", "%"),
                f"{v['client_cpu_us_per_msg']:.1f}",
                *(_num(lat.get(k), ",.0f") for k in ("p50", "p90", "p99", "p999")),
                f"{v['server_rss_mb']:.0f}",
            ]
        )
    plan = doc["plan"]
    head = [
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
    ]
    note = (
        f"{plan['connections']} connections, payload {_e(plan['payload'])}, medians ± MAD of "
        f"{plan['repeats']} window(s); capacity: closed loop, {plan['in_flight']} in flight per "
        f"connection; latency: open loop at {(doc.get('latency_rate_msgs_per_s') or 0):,.0f} "
        "msgs/s for every variant, timed from intended send times."
    )
    return (
        '<h2 id="results">Results</h2>'
        + _table(head, rows, "results")
        + f'<p class="note">{note}</p>'
    )


def _latency(doc: Mapping[str, Any]) -> str:
    indexed = [(v["name"], i, v) for i, v in enumerate(doc["variants"]) if v["status"] == "ok"]
    open_loop = [(n, i, v.get("latency_us") or {}) for n, i, v in indexed]
    capacity = [(n, i, v.get("latency_at_capacity_us") or {}) for n, i, v in indexed]
    rate = doc.get("latency_rate_msgs_per_s") or 0
    return (
        '<h2 id="latency">Latency percentiles</h2><div class="charts">'
        + latency_chart(
            f"open loop at {rate:,.0f} msgs/s (the server's own)",
            open_loop,
            {n: v.get("latency_curve_us") or [] for n, _, v in indexed},
        )
        + latency_chart(
            "closed loop at capacity (queueing)",
            capacity,
            {n: v.get("latency_at_capacity_curve_us") or [] for n, _, v in indexed},
        )
        + '</div><p class="note">Curves run through HdrHistogram\'s percentile steps (50%, '
        "75%, 87.5%, ... 99.99%) of every window's merged histogram; points mark p50, p90, "
        "p99, p99.9 and max.</p>"
    )


def _layers(doc: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    prof = [v for v in _ok(doc) if v.get("layers")]
    if not prof:
        return ""
    names = list(dict.fromkeys(n for v in prof for n in v["layers"]))
    bars = [
        (
            v["name"],
            v["server_cpu_us_per_msg"],
            v["profile_samples"],
            {n: v["layers"][n]["share"] for n in names if n in v["layers"]},
        )
        for v in prof
    ]
    rows = []
    for n in names:
        row = [f'<span class="swatch" style="background:{colours.get(n, "#ccc")}"></span>{_e(n)}']
        for v in prof:
            entry = v["layers"].get(n)
            if entry is None:
                row.append("–")
                continue
            lo, hi = wilson(entry["share"], v["profile_samples"])
            cpu = v["server_cpu_us_per_msg"]
            row.append(f"{entry['us_per_msg']:.1f} <small>[{lo * cpu:.1f}–{hi * cpu:.1f}]</small>")
        for v in prof[1:]:
            row.append(_num((v.get("layer_deltas_us") or {}).get(n), "+.1f"))
        rows.append(row)
    head = ["layer", *(_e(v["name"]) for v in prof), *(f"Δ {_e(v['name'])}" for v in prof[1:])]
    return (
        '<h2 id="layers">Server CPU µs/message by layer</h2>'
        + layer_bars(bars, colours, US)
        + _table(head, rows, "layers")
        + '<p class="note">py-spy shares of a separate profiled window × the clean window\'s '
        "server CPU µs/msg; brackets: 95% sampling interval (Wilson) from the sample count.</p>"
    )


def _flames(
    doc: Mapping[str, Any],
    stacks: Mapping[str, Sequence[Stack]],
    rules: RuleSet,
    missing: Mapping[str, str],
) -> str:
    prof = [v for v in _ok(doc) if v.get("layers")]
    if not prof:
        return ""
    out = [
        '<h2 id="flamegraphs">Flamegraphs</h2><p class="note">Width = server CPU µs per '
        "message; colour = layer; click a frame to zoom, type to search, hover for values."
        "</p>"
    ]
    per_sample = {
        v["name"]: v["server_cpu_us_per_msg"] / v["profile_samples"]
        if v["profile_samples"]
        else 0.0
        for v in prof
    }
    graphs: list[tuple[str, dict[str, Any]]] = []
    for v in prof:
        if v["name"] in stacks:
            data = flame_data(stacks[v["name"]], rules, per_sample[v["name"]], US)
            graphs.append((v["name"], data))
    base = doc["variants"][0]
    if base["name"] in stacks:
        for v in prof:
            if v["name"] != base["name"] and v["name"] in stacks:
                data = diff_data(
                    stacks[base["name"]],
                    stacks[v["name"]],
                    rules,
                    (per_sample[base["name"]], per_sample[v["name"]]),
                    US,
                )
                graphs.append((f"{v['name']} vs {base['name']} (B vs A, per message)", data))
    for name, why in missing.items():
        out.append(f'<p class="warn">no flamegraph for {_e(name)}: {_e(why)}</p>')
    out.extend(flame_box(f"fg-{i}", title, data) for i, (title, data) in enumerate(graphs))
    return "".join(out)


def flame_box(element_id: str, title: str, data: Mapping[str, Any]) -> str:
    """One interactive flamegraph: its toolbar, its drawing area and its data."""
    legend = ""
    if data["kind"] == "diff":
        legend = '<span class="note">red: B spends more per message; blue: less</span>'
    return (
        f'<div class="fg" data-src="{_e(element_id)}"><div class="fg-bar">'
        f'<span class="fg-title">{_e(title)}</span>{legend}<span class="fg-matched"></span>'
        '<input class="fg-search" type="search" placeholder="search frames">'
        '<button class="fg-reset" type="button">reset zoom</button></div>'
        '<div class="fg-graph"></div><div class="fg-details">\u00a0</div></div>'
        + _json_script(element_id, data)
    )


def _budget(doc: Mapping[str, Any]) -> str:
    rows = []
    for v in _ok(doc):
        b = v.get("latency_budget")
        if not b:
            continue
        top = sorted(b["server_work_us"].items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            [
                _e(v["name"]),
                f"{b['p50_us']:,.0f}",
                f"{b['server_work_total_us']:.1f}",
                _e(", ".join(f"{k} {u:.1f}" for k, u in top)),
                _num(b["client_kernel_floor_us"], ".1f"),
                f"{b['waiting_us']:,.0f}",
            ]
        )
    if not rows:
        return ""
    head = [
        "variant",
        "p50",
        "server work",
        "of which top layers",
        "client+kernel floor",
        "waiting",
    ]
    return (
        '<h2 id="budget">Latency budget of the median round trip (µs, at the offered rate)</h2>'
        + _table(head, rows, "budget", text=(0, 3))
    )


def _closure(doc: Mapping[str, Any]) -> str:
    rows = [
        [
            _e(v["name"]),
            _e(c["layer"]),
            f"{c['attributed_us']:.2f}",
            f"{c['predicted_us']:.2f}",
            _num(c.get("ratio"), ".2f"),
            _e(c["basis"]),
        ]
        for v in _ok(doc)
        for c in v.get("closure") or []
    ]
    if not rows:
        return ""
    head = ["variant", "layer", "attributed µs", "predicted µs", "ratio", "prediction from"]
    note = doc["profiling"].get("closure_note")
    return (
        '<h2 id="closure">Closure: attributed vs the <code>wsprof micro</code> prediction</h2>'
        + _table(head, rows, "closure", text=(0, 1, 5))
        + (f'<p class="note">{_e(note)}</p>' if note else "")
    )


def _overhead(doc: Mapping[str, Any]) -> str:
    rows = []
    for v in _ok(doc):
        o = v.get("profiler_overhead")
        if not o:
            continue
        rows.append(
            [
                _e(v["name"]),
                f"{v['profile_samples']:,}",
                f"{v['idle_samples']:,}",
                f"{o['clean_msgs_per_s']:,.0f}",
                f"{o['profiled_msgs_per_s']:,.0f}",
                _num(o["throughput_ratio"], ".2f", "×"),
                f"{v['server_cpu_us_per_msg']:.1f}",
                _num(o["server_cpu_us_per_msg_profiled"], ".1f"),
            ]
        )
    if not rows:
        return ""
    prof = doc["profiling"]
    head = [
        "variant",
        "samples",
        "idle samples",
        "clean msgs/s",
        "profiled msgs/s",
        "throughput ratio",
        "clean CPU µs/msg",
        "profiled CPU µs/msg",
    ]
    return (
        '<h2 id="overhead">Profiler overhead</h2>'
        + _table(head, rows, "overhead")
        + f'<p class="note">py-spy at {_e(prof.get("rate_hz"))} Hz, '
        f"{'native' if prof.get('native') else 'Python frames only'}, non-blocking.</p>"
    )


def environment_block(env: Mapping[str, Any]) -> str:
    """The environment a result was measured in, as a definition list."""
    items = []
    for key, value in env.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            text = ", ".join(str(x) for x in value)
        else:
            text = str(value)
        items.append(f"<dt>{_e(key)}</dt><dd>{_e(text)}</dd>")
    return f'<h2 id="env">Environment</h2><dl class="env">{"".join(items)}</dl>'


def layer_colours(rules: RuleSet, doc_layers: Sequence[str] = ()) -> dict[str, str]:
    """Every layer's colour: the rules' layers and any other a result names."""
    names = [*rules.layers, "idle", *doc_layers]
    return {n: layer_colour(n) for n in dict.fromkeys(names)}


def scenario_html(
    doc: Mapping[str, Any],
    stacks: Mapping[str, Sequence[Stack]],
    rules: RuleSet,
    missing: Mapping[str, str] | None = None,
) -> str:
    """The report of a wsprof.scenario/1 result; ``missing`` says why a variant has no stacks."""
    colours = layer_colours(rules, [n for v in _ok(doc) for n in v.get("layers") or {}])
    body = [f"<h1>wsprof scenario {_e(doc['scenario'])}</h1>"]
    if doc.get("description"):
        body.append(f'<p class="note">{_e(doc["description"])}</p>')
    if doc.get("question"):
        body.append(f'<p class="question">{_e(doc["question"])}</p>')
    body.append(f'<p class="answer" id="answer">{_e(answer(doc))}</p>')
    body.extend(_notices(doc))
    body.append(_results(doc))
    body.append(workload_section(doc))
    body.append(sweep_section(doc))
    if doc.get("workload", "echo") != "idle":  # idle connections make no round trips
        body.append(_latency(doc))
    body.append(_layers(doc, colours))
    body.append(_flames(doc, stacks, rules, missing or {}))
    body.extend((_budget(doc), _closure(doc), _overhead(doc), environment_block(doc["env"])))
    return _page(f"wsprof: {doc['scenario']}", body, colours)


def profile_html(
    doc: Mapping[str, Any], stacks: Sequence[Stack], rules: RuleSet, title: str
) -> str:
    """The report of ``wsprof profile``: shares of samples (no message count is known)."""
    colours = layer_colours(rules, list(doc["layers"]))
    n = doc["total_samples"]
    shares = {k: v["share"] for k, v in doc["layers"].items()}
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:3]
    sentence = f"{n:,} samples; " + ", ".join(f"{k} {s:.0%}" for k, s in top) + "."
    rows = []
    for k, v in doc["layers"].items():
        lo, hi = wilson(v["share"], n)
        rows.append(
            [
                f'<span class="swatch" style="background:{colours.get(k, "#ccc")}"></span>{_e(k)}',
                f"{v['samples']:,}",
                f"{v['share']:.1%} <small>[{lo:.1%}–{hi:.1%}]</small>",
            ]
        )
    per_sample = 100.0 / n if n else 0.0
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="answer" id="answer">{_e(sentence)}</p>',
        '<h2 id="layers">Samples by layer</h2>',
        layer_bars([("all processes", 100.0, n, shares)], colours, "% of samples"),
        _table(["layer", "samples", "share [95% interval]"], rows, "layers"),
        '<h2 id="flamegraphs">Flamegraph</h2>',
        flame_box("fg-0", title, flame_data(stacks, rules, per_sample, "% of samples")),
    ]
    if doc.get("env"):
        body.append(environment_block(doc["env"]))
    return _page(title, body, colours)
