"""Sampling error and kernel-io apportioning, on literal stacks and a hand-built record.

Pure: no server, no py-spy. Checks that every layer (zero-sample ones too)
carries a 95% interval that contains its share, that kernel-io apportioned
from /proc equals the measured system share while the other layers keep
their proportions, that native samples are left alone, and that a scenario
variant reports the /proc split per message and the method it used.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from wsprof.client.histogram import PyHistogram
from wsprof.profiling.attribute import (
    APPORTIONED,
    KERNEL_IO,
    NATIVE_SAMPLES,
    UNMEASURED,
    attribute,
    sampling_check,
    with_proc_split,
)
from wsprof.profiling.folded import parse_folded
from wsprof.profiling.layers import IDLE, LAYERS, default_rules
from wsprof.report.attribution import attribution_table, kernel_io_note, sampling_line, share_text
from wsprof.report.scenario import render_scenario
from wsprof.scenario.analysis import analyse
from wsprof.scenario.files import LoadPlan, Variant
from wsprof.scenario.record import ScenarioRecord, VariantRun, Window

ROOT = 'process 7:"python srv.py";main (srv/app.py:3)'
# websocket-protocol 600, event-loop 300, application 100; json and the rest: no samples.
FOLDED = (
    f"{ROOT};read_frame (websockets/frames.py:10) 600\n"
    f"{ROOT};_run_once (asyncio/base_events.py:1900) 300\n"
    f"{ROOT};handle (srv/app.py:9) 100\n"
    f"{ROOT};select (selectors.py:468) 50\n"
)


def _attribution(idle: bool = False):  # type: ignore[no-untyped-def]
    rules = default_rules().with_application_files(["srv/"])
    return attribute(parse_folded(FOLDED), rules, idle=idle)


def test_every_layer_has_an_interval_that_contains_its_share() -> None:
    a = _attribution()
    assert a.total_samples == 1000
    assert set(a.layers) == set(LAYERS)
    for name, ls in a.layers.items():
        lo, hi = ls.ci95
        assert 0.0 <= lo <= ls.share <= hi <= 1.0, name
    zero = a.layers["json"]
    assert zero.samples == 0 and zero.ci95[0] == 0.0 and 0.0 < zero.ci95[1] < 0.01
    ws = a.layers["websocket-protocol"]
    assert ws.share == pytest.approx(0.6) and ws.ci95[1] - ws.ci95[0] == pytest.approx(
        0.06, abs=0.01
    )
    doc = a.to_json()
    assert doc["layers"]["json"]["share_ci95"] == [0.0, pytest.approx(zero.ci95[1])]
    assert doc["kernel_io_method"] == UNMEASURED


def test_kernel_io_is_the_proc_system_share_and_the_rest_keep_their_proportions() -> None:
    sampled = _attribution()
    a = with_proc_split(sampled, user_s=3.0, system_s=1.0, native=False)
    assert a.kernel_io_method == APPORTIONED and a.proc_system_share == pytest.approx(0.25)
    assert a.layers[KERNEL_IO].share == pytest.approx(0.25)
    assert sum(ls.share for ls in a.layers.values()) == pytest.approx(1.0)
    ratio = a.layers["event-loop"].share / a.layers["websocket-protocol"].share
    assert ratio == pytest.approx(0.5)
    assert a.layers["websocket-protocol"].share == pytest.approx(0.6 * 0.75)
    for name, ls in a.layers.items():
        assert ls.samples == sampled.layers[name].samples  # counts stay what py-spy recorded
        assert ls.ci95[0] <= ls.share <= ls.ci95[1], name
    # 400 ticks: the system share itself is known to a few points.
    lo, hi = a.layers[KERNEL_IO].ci95
    assert 0.2 < lo < 0.25 < hi < 0.3


def test_with_idle_included_idle_keeps_its_share() -> None:
    sampled = _attribution(idle=True)
    a = with_proc_split(sampled, user_s=1.0, system_s=1.0, native=False)
    assert a.layers[IDLE].share == pytest.approx(sampled.layers[IDLE].share)
    cpu = 1 - sampled.layers[IDLE].share
    assert a.layers[KERNEL_IO].share == pytest.approx(0.5 * cpu)
    assert sum(ls.share for ls in a.layers.values()) == pytest.approx(1.0)


def test_native_samples_stay_and_the_proc_share_is_shown_beside_them() -> None:
    sampled = attribute(
        parse_folded(
            f"{ROOT};handle (srv/app.py:9);__libc_send (libc.so.6) 10\n{ROOT};x (a.py:1) 30\n"
        )
    )
    a = with_proc_split(sampled, user_s=2.0, system_s=1.0, native=True)
    assert a.kernel_io_method == NATIVE_SAMPLES
    assert a.layers == sampled.layers
    assert a.proc_system_share == pytest.approx(1 / 3)
    assert "native" in kernel_io_note(a) and "33.3%" in kernel_io_note(a)


def test_no_ticks_leaves_the_samples_and_says_so() -> None:
    sampled = _attribution()
    a = with_proc_split(sampled, 0.0, 0.0, native=False)
    assert a is sampled and a.kernel_io_method == UNMEASURED
    assert "no /proc split" in kernel_io_note(a)


def test_tables_show_the_interval_and_the_sampling_check() -> None:
    a = with_proc_split(_attribution(), 3.0, 1.0, native=False)
    console = Console(record=True, width=140)
    console.print(attribution_table(a))
    text = console.export_text()
    assert "share ±95%" in text and "45.0% ±" in text
    assert share_text(0.412, (0.4, 0.426)) == "41.2% ±1.3"
    check = sampling_check(1000.0, 700, 800, 12)
    assert check["missed_samples"] == 200 and check["missed_share"] == pytest.approx(0.2)
    line = sampling_line(check, 3.0, 1.0, 700)
    assert "errors 12" in line and "25.0% system" in line and "warning: only 700 samples" in line
    assert "warning" not in sampling_line(sampling_check(1000.0, 1000, None, None), 0, 0, 1000)


def _window(
    kind: str, messages: int, cpu: float, user: float, system: float, elapsed: float = 1.0
) -> Window:
    return Window(
        kind=kind,
        messages=messages,
        elapsed_s=elapsed,
        server_cpu_s=cpu,
        client_cpu_us_per_msg=2.0,
        client_busy=0.2,
        client_bound=False,
        errors={},
        histogram=PyHistogram().to_dict(),
        server_user_s=user,
        server_system_s=system,
    )


def _record(native: bool = False) -> ScenarioRecord:
    run = VariantRun(
        variant=Variant("raw", "starlette-raw", {"loop": "uvloop"}),
        server_options={"loop": "uvloop"},
        capacity=(
            _window("capacity", 1000, 0.020, 0.015, 0.005),
            _window("capacity", 1000, 0.022, 0.016, 0.006),
            _window("capacity", 1000, 0.024, 0.018, 0.006),
        ),
        # 4 s at 0.8 of a core, 40% of it system time
        profiled=_window("profile", 4000, 3.2, 1.92, 1.28, elapsed=4.0),
        folded="/nonexistent/raw.folded",
        pyspy={"samples": 1050, "errors": 3, "seconds": 4.1},
    )
    return ScenarioRecord(
        scenario="intervals",
        description="",
        question="",
        source="tests/test_attribution_intervals.py",
        quick=True,
        plan=LoadPlan(connections=4, payload="small", repeats=3),
        client="fast",
        server_cpu=None,
        client_cpus=None,
        profile=True,
        profiler_note=None,
        rate_hz=500,
        native=native,
        rules=None,
        out_dir="/nonexistent",
        env={},
        runs=(run,),
    )


def test_a_scenario_variant_reports_the_proc_split_and_the_method() -> None:
    rules = default_rules().with_application_files(["srv/"])
    doc = analyse(_record(), {"raw": parse_folded(FOLDED)}, rules)
    v = doc["variants"][0]
    assert v["server_user_us_per_msg"] == pytest.approx(16.0)
    assert v["server_system_us_per_msg"] == pytest.approx(6.0)
    assert v["system_share"] == pytest.approx(0.25)
    assert v["kernel_io_method"] == APPORTIONED and v["proc_system_share"] == pytest.approx(0.4)
    assert v["layers"][KERNEL_IO]["share"] == pytest.approx(0.4)
    assert v["sampled_kernel_io_share"] == 0.0
    for layer in v["layers"].values():
        lo, hi = layer["share_ci95"]
        assert lo <= layer["share"] <= hi
    console = Console(record=True, width=200)
    render_scenario(doc, console)
    text = console.export_text()
    assert "/proc system share" in text and "apportioned-from-proc" in text and "±" in text
    # py-spy's own figures: 500 Hz x 4 s x 0.8 of a core busy expected (py-spy keeps no
    # sample of an idle server), 1,050 taken, 3 errors.
    assert v["sampling"]["expected_samples"] == 1600
    assert v["sampling"]["recorded_samples"] == 1050
    assert v["sampling"]["pyspy_errors"] == 3
    assert v["sampling"]["missed_share"] == pytest.approx(1 - 1050 / 1600)
    assert "3 errors" in text
    record = _record()
    assert ScenarioRecord.from_json(record.as_json()) == record
    native = analyse(_record(native=True), {"raw": parse_folded(FOLDED)}, rules)
    assert native["variants"][0]["kernel_io_method"] == NATIVE_SAMPLES


def test_old_windows_without_the_split_still_load() -> None:
    data = _window("capacity", 10, 0.001, 0.0, 0.0).as_json()
    del data["server_user_s"], data["server_system_s"]
    w = Window.from_json(data)
    assert (w.server_user_s, w.server_system_s, w.system_share) == (0.0, 0.0, None)


def test_the_parse_fast_path_agrees_with_the_frames() -> None:
    """Process roots recognised once must not change where a line's frames start."""
    a = 'process 1:"srv a"'
    b = 'process 2:"srv; b"'
    text = (
        f"{a};main (srv/app.py:3);read_frame (websockets/frames.py:10) 3\n"
        f"{b};main (srv/app.py:3);dumps (json/__init__.py:231) 2\n"
        f"{a};{b};dumps (json/__init__.py:231) 4\n"  # a child under its parent's root
        f"{a};main (srv/app.py:3);read_frame (websockets/frames.py:10)   5  \n"
        f"   {b};handle (srv/app.py:9) 1\n"
        f"{a} 7\n"  # process frames only
    )
    stacks = parse_folded(text)
    assert [s.count for s in stacks] == [3, 2, 4, 5, 1, 7]
    assert stacks[2].frames == (a, b, "dumps (json/__init__.py:231)")
    assert stacks[3].text == f"{a};main (srv/app.py:3);read_frame (websockets/frames.py:10)"
    assert stacks[4].frames[0] == b and stacks[5].rest_start == -1
    layers = attribute(stacks, default_rules().with_application_files(["srv/"])).layers
    assert layers["websocket-protocol"].samples == 8
    assert layers["json"].samples == 6
    assert layers["application"].samples == 1
    assert layers["other"].samples == 7


def test_expected_samples_count_only_the_time_the_server_ran() -> None:
    """py-spy keeps no sample of an idle server: an idle window is not a profiler's miss."""
    from wsprof.profiling.attribute import expected_samples

    assert expected_samples(500, 4.0, 4.0, 1) == pytest.approx(2000)  # one busy core
    assert expected_samples(500, 4.0, 0.4, 1) == pytest.approx(200)  # 10% busy
    assert expected_samples(500, 4.0, 6.0, 2) == pytest.approx(3000)  # two processes, 1.5 cores
    assert expected_samples(500, 4.0, 12.0, 2) == pytest.approx(4000)  # at most one per process
    assert expected_samples(500, 0.0, 1.0, 1) == 0.0
    assert sampling_check(expected_samples(500, 4.0, 0.0, 1), 0, 0, 0)["missed_share"] is None
