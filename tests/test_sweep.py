"""Sweeps and workload figures, pure: the growth fit, the file checks, records, the JSON shape."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from wsprof.client.histogram import PyHistogram
from wsprof.profiling.layers import default_rules
from wsprof.report.html import scenario_html
from wsprof.report.scenario import render_scenario
from wsprof.scenario.analysis import analyse
from wsprof.scenario.files import LoadPlan, ScenarioFileError, Variant, parse_scenario
from wsprof.scenario.record import ScenarioRecord, SweepPoint, VariantRun, Window
from wsprof.scenario.sweep import Sweep, fit_line, growth, growth_text

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/scenario.schema.json").read_text())


def test_fit_line_recovers_a_line_and_its_r2():
    fit = fit_line([10, 100, 1000], [3 + 0.5 * x for x in (10, 100, 1000)])
    assert fit["slope"] == pytest.approx(0.5)
    assert fit["intercept"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = fit_line([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])
    assert 0 < noisy["r2"] < 1
    assert fit_line([5], [2.0])["slope"] is None
    assert fit_line([5, 5], [2.0, 3.0])["slope"] is None


def test_growth_skips_failed_points_and_states_payload_growth_per_kb():
    rows = [
        {"point": 1024, "status": "ok", "server_cpu_us_per_msg": 10.0},
        {"point": 4096, "status": "ok", "server_cpu_us_per_msg": 16.0},
        {"point": 8192, "status": "failed"},
    ]
    g = growth(Sweep("payload_bytes", (1024, 4096, 8192)), "echo", rows)
    assert g["unit"] == "KB"
    assert g["per_unit"] == pytest.approx(2.0)  # 6 µs over 3 KB
    assert g["points"] == 2
    assert "per added KB" in growth_text(g)
    lone = growth(Sweep("connections", (2, 8)), "echo", rows[:1])
    assert lone["per_unit"] is None
    assert growth_text(lone) == "no growth: 1 finished point(s)"


BASE = """
name = "s"
description = "d"
{extra}
[load]
{load}
[[variants]]
stack = "socketio-asgi"
{variant}
"""


def _parse(load: str = "", variant: str = "", extra: str = ""):
    return parse_scenario(BASE.format(load=load, variant=variant, extra=extra), "s.toml")


@pytest.mark.parametrize(
    ("load", "variant", "extra", "message"),
    [
        ('workload = "fanout"', "", "", "key 'load.workload': must be one of echo, broadcast"),
        (
            "",
            "",
            "[sweep]\nconnections = [1, 2]\nrecipients = [1]",
            "key 'sweep': must be a table with exactly one key",
        ),
        ("", "", "[sweep]\nin_flight = [1, 2]", "key 'sweep.in_flight': cannot be swept"),
        (
            "",
            "",
            "[sweep]\nconnections = [1, 0]",
            "key 'sweep.connections[1]': must be a positive integer",
        ),
        ("", "", "[sweep]\nconnections = [1, 20000]", "must be at most 10000, not 20000"),
        ("", "", "[sweep]\nconnections = []", "must be a list of 1 to 20 values"),
        ("", "", "[sweep]\nconnections = [4, 4]", "points must be distinct"),
        ("", "", "sweep = 3", "key 'sweep': must be a table"),
        (
            "",
            "",
            "[sweep]\nrecipients = [10]",
            "key 'sweep.recipients': does not apply to workload 'echo'",
        ),
        (
            'workload = "broadcast"\nrecipients = 2\nsenders = 3',
            "",
            "",
            "key 'load.senders': must be at most recipients (2)",
        ),
        ('workload = "broadcast"\npayload_bytes = 8', "", "", "key 'load.payload_bytes'"),
        (
            'workload = "broadcast"\nbroadcast_rate = -1',
            "",
            "",
            'must be "auto" or a number of broadcasts/s',
        ),
        ('workload = "idle"\nidle_window_s = 0', "", "", "key 'load.idle_window_s'"),
        (
            "",
            "processes = 2",
            "",
            "key 'variants[0].processes': above 1 needs workload = \"broadcast\"",
        ),
        ('workload = "broadcast"', "processes = 2", "", 'needs options.manager = "redis"'),
        ("", "processes = 0", "", "must be from 1 to 16"),
        (
            "",
            "",
            "[sweep]\nconnections = [1, 2]\n[quick]\nsweep = { payload_bytes = [64] }",
            "key 'quick.sweep': must sweep the same parameter",
        ),
    ],
)
def test_bad_workload_and_sweep_keys_are_one_line_naming_the_key(load, variant, extra, message):
    with pytest.raises(ScenarioFileError) as exc:
        _parse(load, variant, extra)
    assert message in str(exc.value)
    assert str(exc.value).startswith("s.toml: key '")
    assert "\n" not in str(exc.value)


def test_a_sweep_and_its_quick_points_parse():
    scenario = _parse(
        'workload = "broadcast"\nrecipients = 10',
        "",
        "[sweep]\nrecipients = [10, 100, 1000]\n[quick]\nsweep = { recipients = [10, 1000] }",
    )
    assert scenario.load.workload == "broadcast"
    assert scenario.sweep_for(quick=False) == Sweep("recipients", (10, 100, 1000))
    assert scenario.sweep_for(quick=True) == Sweep("recipients", (10, 1000))


def _hist(*values_us: float) -> dict[str, Any]:
    hist = PyHistogram()
    for v in values_us:
        hist.record(int(v * 1000))
    return hist.to_dict()


def _window(kind: str, messages: int, cpu_s: float, **figures: float) -> Window:
    return Window(
        kind=kind,
        messages=messages,
        elapsed_s=1.0,
        server_cpu_s=cpu_s,
        client_cpu_us_per_msg=1.0,
        client_busy=0.3,
        client_bound=False,
        errors={},
        histogram=_hist(100, 200, 900),
        figures=dict(figures),
    )


def _record(workload: str, runs_at: dict[int, tuple[VariantRun, ...]] | None = None, **plan: Any):
    variant = Variant("socketio-asgi", "socketio-asgi", {"loop": "uvloop"})
    runs = (VariantRun(variant, {"loop": "uvloop"}, capacity=(_window("capacity", 1, 0.1),)),)
    points = tuple(SweepPoint(value, r) for value, r in (runs_at or {}).items())
    return ScenarioRecord(
        scenario="s",
        description="d",
        question="",
        source="s.toml",
        quick=True,
        plan=LoadPlan(workload=workload, **plan),
        client="fast",
        server_cpu=1,
        client_cpus=(0,),
        profile=False,
        profiler_note=None,
        rate_hz=100,
        native=False,
        rules=None,
        out_dir="/nonexistent",
        env={"python": "3", "cpu_count": 2, "packages": {}},
        runs=points[-1].runs if points else runs,
        sweep_parameter="recipients" if points else None,
        sweep_points=points,
    )


def _broadcast_run(recipients: int, cpu_s: float, error: str | None = None) -> VariantRun:
    variant = Variant("socketio-asgi", "socketio-asgi", {"loop": "uvloop"})
    if error:
        return VariantRun(variant, {}, error=error)
    deliveries = 100 * recipients
    figures = {
        "broadcasts": 100.0,
        "deliveries": float(deliveries),
        "missing": 1.0,
        "duplicates": 0.0,
        "recipients": float(recipients),
        "broker_cpu_s": 0.05,
        "cross_p50_us": 300.0,
        "cross_p99_us": 800.0,
    }
    return VariantRun(
        variant,
        {"loop": "uvloop", "handler": "broadcast"},
        capacity=(_window("capacity", deliveries, cpu_s, **figures),),
        latency=(_window("latency", deliveries // 2, cpu_s / 2, **figures),),
    )


def test_a_broadcast_sweep_with_a_failure_mid_ramp_keeps_its_rows_and_validates():
    record = _record(
        "broadcast",
        {
            10: (_broadcast_run(10, 0.01),),
            100: (_broadcast_run(100, 0.12),),
            1000: (_broadcast_run(1000, 0, "too many open files: raise ulimit -n"),),
        },
    )
    again = ScenarioRecord.from_json(json.loads(json.dumps(record.as_json())))
    assert again == record
    doc = analyse(again, {}, default_rules())
    jsonschema.validate(doc, SCHEMA)
    assert doc["workload"] == "broadcast"
    sweep = doc["sweep"]
    assert sweep["parameter"] == "recipients" and sweep["points"] == [10, 100, 1000]
    entry = sweep["variants"]["socketio-asgi"]
    assert [r["status"] for r in entry["rows"]] == ["ok", "ok", "failed"]
    assert entry["incomplete"] and sweep["incomplete"]
    assert entry["error"] == "too many open files: raise ulimit -n"
    first = entry["rows"][0]
    assert first["recipients"] == 10 and first["deliveries_per_s"] == 1000
    assert first["missing"] == 2 and first["duplicates"] == 0
    assert first["broker_us_per_delivery"] == pytest.approx(50.0)
    assert first["cross_latency_us"] == {"p50": 300.0, "p99": 800.0}
    # 100 broadcasts: 100 µs each at 10 recipients, 1200 at 100: 1100 µs over 90 recipients
    assert entry["growth"]["per_unit"] == pytest.approx(1100 / 90)
    assert entry["growth"]["unit"] == "recipient"
    console = Console(record=True, width=250)
    render_scenario(doc, console)
    text = console.export_text()
    assert "sweep over recipients" in text and "incomplete" in text
    assert "per added recipient" in text
    html = scenario_html(doc, {}, default_rules())
    assert 'id="sweep"' in html and "<polyline" in html


def test_idle_and_connect_figures_come_from_their_windows():
    variant = Variant("starlette-raw", "starlette-raw", {})
    idle = _record("idle")
    idle = replace(
        idle,
        runs=(
            VariantRun(
                variant,
                {},
                capacity=(
                    _window(
                        "capacity",
                        0,
                        0.02,
                        connections=1000.0,
                        failed=0.0,
                        heartbeats=2000.0,
                        heartbeats_late=1.0,
                        rss_kb_per_connection=25.0,
                        rss_kb=60_000.0,
                        idle_cpu_us_per_s_per_1k=20_000.0,
                        open_s=0.4,
                    ),
                ),
            ),
        ),
    )
    doc = analyse(idle, {}, default_rules())
    jsonschema.validate(doc, SCHEMA)
    (v,) = doc["variants"]
    assert v["rss_kb_per_connection"] == 25.0 and v["idle_cpu_us_per_s_per_1k"] == 20_000.0
    assert (v["heartbeats"], v["heartbeats_late"], v["connections"]) == (2000, 1, 1000)
    connect = replace(
        _record("connect"),
        runs=(VariantRun(variant, {}, capacity=(_window("capacity", 500, 0.25, connects=500.0),)),),
    )
    doc = analyse(connect, {}, default_rules())
    jsonschema.validate(doc, SCHEMA)
    (v,) = doc["variants"]
    assert v["connects_per_s"] == 500 and v["server_cpu_us_per_connection"] == 500
    assert v["connect_latency_us"]["p50"] > 0
    console = Console(record=True, width=200)
    render_scenario(doc, console)
    assert "connects/s" in console.export_text()


def test_a_record_without_workload_fields_still_loads():
    data = _record("echo").as_json()
    for run in data["runs"]:
        for window in run["capacity"]:
            del window["figures"]
    del data["sweep_parameter"], data["sweep_points"]
    for key in ("workload", "recipients", "senders", "payload_bytes"):
        del data["plan"][key]
    old = ScenarioRecord.from_json(data)
    assert old.plan.workload == "echo" and old.sweep_points == ()
    assert old.runs[0].capacity[0].figures == {}
