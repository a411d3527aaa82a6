"""Scenario analysis on small records built by hand: figures, deltas, budget, layers, failures.

Analysis is pure: a record and parsed stacks in, the wsprof.scenario/1 document
out. These records point at folded files that do not exist, which also shows
that analysis reads none.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from wsprof.client.histogram import PyHistogram
from wsprof.profiling.folded import Stack, parse_folded
from wsprof.profiling.layers import default_rules, rules_from_text
from wsprof.report.outputs import write_scenario_outputs
from wsprof.report.scenario import layer_names, render_scenario
from wsprof.scenario.analysis import (
    analyse,
    latency_budget,
    latency_curve,
    merged_latency,
    sampling_note,
)
from wsprof.scenario.files import LoadPlan, Variant
from wsprof.scenario.record import RecordFormatError, ScenarioRecord, VariantRun, Window

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/scenario.schema.json").read_text())

PLAN = LoadPlan(connections=4, payload="small", repeats=3)
ROOT = 'process 1:"python -m srv";main (srv/app.py:3)'


def _window(kind: str, messages: int, server_cpu_s: float, *latencies_us: int, **kw) -> Window:
    hist = PyHistogram()
    for us in latencies_us:
        hist.record(us * 1000)
    return Window(
        kind=kind,
        messages=messages,
        elapsed_s=1.0,
        server_cpu_s=server_cpu_s,
        client_cpu_us_per_msg=kw.get("client_us", 2.0),
        client_busy=kw.get("busy", 0.25),
        client_bound=kw.get("bound", False),
        errors=kw.get("errors", {}),
        histogram=hist.to_dict(),
    )


def _stacks(counts: dict[str, int]) -> list[Stack]:
    return parse_folded("".join(f"{ROOT};{leaf} {n}\n" for leaf, n in counts.items()))


DUMPS = "dumps (json/__init__.py:231)"
DECODE = "decode (socketio/packet.py:50)"
HANDLE = "handle (srv/app.py:9)"
DEFLATE = "compress (zlib_like/deflate.py:9)"
SELECT = "select (selectors.py:468)"

STACKS = {
    # raw: json 20, other 80 (the deflate frames too, unless a user rule names them); 5 idle.
    "raw": _stacks({HANDLE: 60, DUMPS: 20, DEFLATE: 20, SELECT: 5}),
    # sio: json 30, socketio-framing 50, other 20.
    "sio": _stacks({DUMPS: 30, DECODE: 50, HANDLE: 20}),
}
MICRO = (
    {"layer": "json", "case": "loads", "variant": "json", "payload": "small", "ns_per_op": 1000.0},
    {"layer": "json", "case": "dumps", "variant": "json", "payload": "small", "ns_per_op": 1200.0},
)


def _record(**changes) -> ScenarioRecord:
    raw = VariantRun(
        variant=Variant("raw", "starlette-raw", {"loop": "uvloop"}),
        server_options={"loop": "uvloop"},
        # 1000, 1200, 1100 msgs/s at 10, 15, 12 µs/msg; latencies merge across windows.
        capacity=(
            _window("capacity", 1000, 0.010, *[500] * 10),
            _window("capacity", 1200, 0.018, *[500] * 10, errors={"timeout": 1}),
            _window("capacity", 1100, 0.0132, *[900] * 30, errors={"timeout": 2}),
        ),
        latency=(
            _window("latency", 400, 0.006, *[40] * 10),
            _window("latency", 400, 0.0064, *[80] * 30),
        ),
        profiled=_window("profile", 900, 0.0117),
        folded="/nonexistent/raw.folded",
        rss_bytes=40 * 2**20,
    )
    sio = VariantRun(
        variant=Variant("sio", "socketio-asgi", {"loop": "uvloop", "serializer": "json"}),
        server_options={"loop": "uvloop", "serializer": "json", "async_handlers": "true"},
        capacity=(
            _window("capacity", 500, 0.010),
            _window("capacity", 600, 0.015),
            _window("capacity", 400, 0.0088, bound=True, busy=0.97),
        ),
        latency=(_window("latency", 400, 0.010, *[200] * 5),),
        profiled=_window("profile", 250, 0.006),
        folded="/nonexistent/sio.folded",
        rss_bytes=50 * 2**20,
    )
    broken = VariantRun(
        variant=Variant("broken", "socketio-asgi", {"serializer": "msgpack"}, port=1),
        server_options=None,
        error="server failed to start: could not bind 127.0.0.1:1",
    )
    fields = dict(
        scenario="hand-made",
        description="a record built in a test",
        question="what does sio cost?",
        source="tests/test_analysis.py",
        quick=False,
        plan=PLAN,
        client="fast",
        server_cpu=1,
        client_cpus=(0,),
        profile=True,
        profiler_note=None,
        rate_hz=500,
        native=False,
        rules=None,
        out_dir="/nonexistent",
        env={"python": "3.11", "cpu_count": 2, "packages": {}},
        runs=(raw, sio, broken),
        latency_rate=400.0,
        micro_results=MICRO,
        floor_us=6.0,
        wall_time_s=12.5,
        # The counted closure's instrumented window: one loads and one dumps per message.
        counted={
            "sio": {
                "messages": 100,
                "counts": {"json_loads": 100, "json_dumps": 100},
                "counters": ["socketio"],
                "loops": [],
                "callbacks_countable": False,
            }
        },
    )
    return ScenarioRecord(**{**fields, **changes})


@pytest.fixture
def doc() -> dict:
    return analyse(_record(), STACKS, default_rules())


def test_the_document_has_the_scenario_facts(doc):
    assert doc["schema"] == "wsprof.scenario/1"
    assert (doc["scenario"], doc["quick"], doc["client"]) == ("hand-made", False, "fast")
    assert doc["plan"]["connections"] == 4
    assert doc["latency_rate_msgs_per_s"] == 400.0
    assert doc["profiling"]["available"] is True
    assert doc["profiling"]["out_dir"] == "/nonexistent"
    assert doc["profiling"]["rules"] == "default"
    assert doc["profiling"]["client_kernel_floor_us"] == 6.0
    assert doc["wall_time_s"] == 12.5
    assert doc["complete"] is False


def test_figures_are_medians_of_the_clean_windows_with_their_mad(doc):
    raw = doc["variants"][0]
    assert raw["status"] == "ok"
    assert raw["throughput_msgs_per_s"] == 1100
    assert raw["throughput"] == {"median": 1100, "mad": 100, "n": 3, "values": [1000, 1200, 1100]}
    assert raw["server_cpu_us_per_msg"] == pytest.approx(12.0)
    assert raw["server_cpu"]["mad"] == pytest.approx(2.0)
    assert raw["server_cpu_us_per_msg_at_rate"] == pytest.approx(15.5)
    assert raw["client_cpu_us_per_msg"] == 2.0
    assert raw["server_rss_mb"] == 40
    assert raw["errors"] == {"timeout": 3}
    assert raw["client_bound"] is False
    sio = doc["variants"][1]
    assert sio["client_bound"] is True and sio["client_busy_max"] == 0.97
    assert sio["options"]["async_handlers"] == "true"  # the options as the server ran


def test_latency_merges_every_window_of_its_kind(doc):
    raw = doc["variants"][0]
    # Open loop: 10 round trips at 40 µs and 30 at 80 µs: the median is 80 µs.
    assert raw["latency_windows"] == 2
    assert raw["latency_us"]["p50"] == pytest.approx(80, rel=0.01)
    assert raw["latency_us"]["max"] == 80
    # Closed loop at capacity: 20 at 500 µs and 30 at 900 µs.
    assert raw["latency_at_capacity_us"]["p50"] == pytest.approx(900, rel=0.01)
    assert doc["variants"][1]["latency_us"]["p99"] == pytest.approx(200, rel=0.01)


def test_deltas_are_against_the_first_variant(doc):
    raw, sio, broken = doc["variants"]
    assert raw["delta_to_first"]["server_cpu_us_per_msg"] == 0
    delta = sio["delta_to_first"]
    assert delta["variant"] == "raw"
    assert delta["server_cpu_us_per_msg"] == pytest.approx(10.0)  # 22 against 12 µs/msg
    assert delta["server_cpu_pct"] == pytest.approx(100 * 10 / 12)
    assert delta["throughput_pct"] == pytest.approx(100 * (500 / 1100 - 1))
    assert sio["layer_deltas_us"]["socketio-framing"] == pytest.approx(11.0)
    assert sio["layer_deltas_us"]["json"] == pytest.approx(0.3 * 22 - 0.2 * 12)
    assert broken["delta_to_first"] is None


def test_layer_shares_of_the_profile_are_applied_to_the_clean_cpu(doc):
    raw, sio, _ = doc["variants"]
    assert raw["profile_samples"] == 100 and raw["idle_samples"] == 5
    json_layer = {k: v for k, v in raw["layers"]["json"].items() if k != "share_ci95"}
    assert json_layer == {"share": 0.2, "samples": 20, "us_per_msg": pytest.approx(2.4)}
    assert raw["layers"]["other"]["us_per_msg"] == pytest.approx(9.6)
    assert sio["layers"]["socketio-framing"]["us_per_msg"] == pytest.approx(11.0)
    for v in (raw, sio):
        assert sum(layer["share"] for layer in v["layers"].values()) == pytest.approx(1.0)
        assert sum(layer["us_per_msg"] for layer in v["layers"].values()) == pytest.approx(
            v["server_cpu_us_per_msg"]
        )
    overhead = raw["profiler_overhead"]
    assert overhead["clean_msgs_per_s"] == 1100  # the window run just before the profiled one
    assert overhead["throughput_ratio"] == pytest.approx(900 / 1100)
    assert overhead["server_cpu_us_per_msg_profiled"] == pytest.approx(13.0)
    assert raw["profiled_messages"] == 900
    assert raw["flamegraphs"] == {"folded": "/nonexistent/raw.folded"}


def test_latency_budget_splits_the_median_round_trip(doc):
    budget = doc["variants"][0]["latency_budget"]
    p50 = doc["variants"][0]["latency_us"]["p50"]
    assert budget["p50_us"] == p50
    assert budget["server_work_total_us"] == pytest.approx(15.5)
    assert budget["server_work_us"]["json"] == pytest.approx(0.2 * 15.5)
    assert budget["client_kernel_floor_us"] == 6.0
    assert budget["waiting_us"] == pytest.approx(p50 - 15.5 - 6.0)
    # Without a floor measurement, waiting is all that the server's work leaves.
    alone = latency_budget(100.0, {"json": 0.5, "other": 0.5}, 30.0, None)
    assert alone["server_work_us"] == {"json": 15.0, "other": 15.0}
    assert alone["waiting_us"] == 70.0


def test_closure_uses_the_recorded_micro_results(doc):
    raw, sio, _ = doc["variants"]
    assert raw["closure"] == []  # no uvloop handoff was measured
    (entry,) = sio["closure"]
    assert entry["layer"] == "json"
    assert entry["predicted_us"] == pytest.approx(2.2)
    assert entry["ratio"] == pytest.approx(0.3 * 22 / 2.2)


def test_a_failed_variant_is_marked_with_its_error_and_no_figures(doc):
    broken = doc["variants"][2]
    assert broken["status"] == "failed"
    assert broken["error"] == "server failed to start: could not bind 127.0.0.1:1"
    assert broken["options"] == {"serializer": "msgpack"}  # the declared ones: it never ran
    assert "throughput_msgs_per_s" not in broken and "layers" not in broken


def test_a_variant_that_died_after_its_windows_keeps_figures_but_no_attribution():
    record = _record()
    died = VariantRun(**{**record.runs[1].__dict__, "error": "server died (SIGKILL)"})
    doc = analyse(_record(runs=(record.runs[0], died)), {"raw": STACKS["raw"]}, default_rules())
    assert doc["variants"][1]["status"] == "failed"
    assert doc["variants"][1]["throughput_msgs_per_s"] == 500
    assert "layers" not in doc["variants"][1]
    assert doc["variants"][1]["delta_to_first"] is None


def test_without_profiling_there_are_no_layers_and_no_out_dir():
    record = _record(profiler_note="ptrace is not permitted", micro_results=())
    runs = tuple(VariantRun(**{**r.__dict__, "folded": None}) for r in record.runs)
    doc = analyse(_record(profiler_note="ptrace is not permitted", runs=runs), {}, default_rules())
    jsonschema.validate(doc, SCHEMA)
    assert doc["profiling"]["available"] is False
    assert doc["profiling"]["out_dir"] is None
    assert all("layers" not in v and "latency_budget" not in v for v in doc["variants"])


def test_a_layer_a_user_adds_is_in_the_result_and_in_the_table():
    rules = rules_from_text('[[rule]]\nlayer = "compression"\npath = "zlib_like/"\n')
    doc = analyse(_record(rules="mine.toml"), STACKS, rules)
    raw = doc["variants"][0]
    assert raw["layers"]["compression"]["share"] == 0.2
    assert raw["layers"]["other"]["share"] == 0.6
    assert doc["profiling"]["rules"] == "mine.toml"
    assert layer_names(doc["variants"]) == list(rules.layers)
    console = Console(record=True, width=200)
    render_scenario(doc, console)
    text = console.export_text()
    layer_table = text[text.index("by layer") :]
    assert "compression" in layer_table
    assert layer_table.index("application") < layer_table.index("compression")
    assert layer_table.index("compression") < layer_table.index("other")


def test_the_record_round_trips_through_json_and_analyses_the_same():
    record = _record()
    again = ScenarioRecord.from_json(json.loads(json.dumps(record.as_json())))
    assert again == record
    assert analyse(again, STACKS, default_rules()) == analyse(record, STACKS, default_rules())
    with pytest.raises(RecordFormatError, match=re.escape("wsprof.scenario-record/1")):
        ScenarioRecord.from_json({**record.as_json(), "format": "wsprof.scenario-record/0"})


def test_the_outputs_step_writes_every_file_and_names_it_in_the_result(tmp_path: Path):
    runs = tuple(
        VariantRun(**{**r.__dict__, "folded": str(tmp_path / f"{r.variant.name}.folded")})
        for r in _record().runs
    )
    doc = analyse(_record(runs=runs, out_dir=str(tmp_path)), STACKS, default_rules())
    out = tmp_path / "result.json"
    artifacts = write_scenario_outputs(doc, STACKS, rules=default_rules(), json_path=out)
    raw, sio, broken = doc["variants"]
    assert set(artifacts.profiles) == {"raw", "sio"}
    for v in (raw, sio):
        assert Path(v["flamegraphs"]["svg"]).read_text().startswith("<?xml")
        assert json.loads(Path(v["flamegraphs"]["speedscope"]).read_text())["profiles"]
    assert "diff_svg" not in raw["flamegraphs"]
    assert sio["flamegraphs"]["diff_svg"] == str(tmp_path / "sio.vs.raw.diff.svg")
    assert artifacts.diffs == {"sio": tmp_path / "sio.vs.raw.diff.svg"}
    assert "per message (A: 900 msgs, B: 250 msgs)" in artifacts.diffs["sio"].read_text()
    assert "flamegraphs" not in broken
    jsonschema.validate(doc, SCHEMA)  # complete once the outputs step named its files
    assert json.loads(out.read_text()) == doc
    assert artifacts.html == tmp_path / "report.html" and artifacts.html.is_file()


def test_latency_curve_runs_hdr_steps_from_p50_to_max() -> None:
    windows = [_window("latency", 4, 0.001, 100, 200, 300, 4000)]
    curve = latency_curve(windows)
    percentiles = [q for q, _ in curve]
    assert percentiles[0] == 50.0 and percentiles[1] == 75.0 and percentiles[-1] == 100.0
    assert len(percentiles) == 14 and percentiles == sorted(percentiles)
    values = [v for _, v in curve]
    assert values == sorted(values)
    assert values[-1] == pytest.approx(merged_latency(windows)["max"])
    assert latency_curve([]) == []


def test_too_few_samples_are_said_not_hidden() -> None:
    assert sampling_note(0) is not None and "no samples" in sampling_note(0)
    assert "rough" in (sampling_note(999) or "")
    assert sampling_note(1000) is None
