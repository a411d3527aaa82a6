"""``--native``: py-spy's blocking mode, its default rate and window, and the native layer rules.

The rules are checked on frame strings copied from real ``py-spy record --native --format raw``
recordings of socketio-asgi (uvloop) and socketio-eventlet made here; the end-to-end test
profiles a real uvloop server under load with ``wsprof profile --native``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from servers import stack

from wsprof.cli import build_parser, main
from wsprof.client import fast
from wsprof.client.base import LoadConfig
from wsprof.commands.profile import _rate_and_window
from wsprof.errors import WsprofError
from wsprof.profiling.attribute import attribute
from wsprof.profiling.folded import parse_frame, read_folded
from wsprof.profiling.layers import default_rules
from wsprof.profiling.pyspy import (
    NATIVE_MIN_SAMPLES,
    NATIVE_RATE_HZ,
    Recorder,
    _on_cpus_of,
    native_window_s,
)
from wsprof.scenario.files import LoadPlan
from wsprof.scenario.runner import _profile_settings

# (frame as py-spy --native prints it, layer it is charged to; "inherit" = to its caller)
NATIVE_FRAMES = [
    ("write (libc.so.6)", "kernel-io"),
    ("read (libc.so.6)", "kernel-io"),
    ("send (libc.so.6)", "kernel-io"),
    ("recv (libc.so.6)", "kernel-io"),
    ("sendmsg (libc.so.6)", "kernel-io"),
    ("writev (libc.so.6)", "kernel-io"),
    ("epoll_ctl (libc.so.6)", "kernel-io"),
    ("sock_call_ex (socketmodule.c:921)", "kernel-io"),
    ("epoll_pwait (libc.so.6)", "idle"),
    ("epoll_wait (libc.so.6)", "idle"),
    ("poll (libc.so.6)", "idle"),
    ("select (libc.so.6)", "idle"),
    ("uv__io_poll (linux.c:1546)", "event-loop"),
    ("uv__read (stream.c:1154)", "event-loop"),
    ("uv_run (core.c:464)", "event-loop"),
    ("Loop__run (loop.c:20313)", "event-loop"),
    ("Handle__run (loop.c:70792)", "event-loop"),
    ("UVStream__buffer_write (loop.c:107258)", "event-loop"),
    ("__pyx_f_6uvloop_4loop_UVStream__exec_write (uvloop/handles/stream.pyx:400)", "event-loop"),
    ("run_forever (uvloop/loop.pyx:1300)", "event-loop"),
    ("task_step (_asynciomodule.c:2800)", "event-loop"),
    ("task_step_impl (_asynciomodule.c:2700)", "event-loop"),
    ("TaskStepMethWrapper_call (_asynciomodule.c:1900)", "event-loop"),
    ("TaskObj_dealloc (_asynciomodule.c:2566)", "event-loop"),
    ("encoder_listencode_dict (_json.c:1561)", "json"),
    ("scanstring_unicode (_json.c:436)", "json"),
    ("encoder_call (_json.cpython-311-x86_64-linux-gnu.so)", "json"),
    ("orjson::serialize::serializer::serialize (orjson.cpython-311-x86_64-linux-gnu.so)", "json"),
    ("greenlet::UserGreenlet::g_switch (greenlet/TUserGreenlet.cpp:185)", "greenlet-switching"),
    ("slp_switch (greenlet/platform/switch_amd64_unix.h:60)", "greenlet-switching"),
    ("g_switch (_greenlet.cpython-311-x86_64-linux-gnu.so)", "greenlet-switching"),
    # not claimed: charged to the caller (malloc under orjson is orjson's cost)
    ("Py_DECREF (object.h:537)", "inherit"),
    ("getpid (libc.so.6)", "inherit"),
    ("0x7f848ce4524a (libc.so.6)", "inherit"),
]


@pytest.mark.parametrize(("frame", "layer"), NATIVE_FRAMES)
def test_native_frames_go_to_their_layer(frame: str, layer: str) -> None:
    assert parse_frame(frame).kind == "native"
    assert default_rules().decide(frame) == layer


def test_native_recording_is_never_nonblocking() -> None:
    with pytest.raises(WsprofError, match="blocking mode"):
        Recorder(1, "/tmp/never.folded", 1, native=True, nonblocking=True)
    cmd = Recorder(1, "/tmp/never.folded", 1, native=True).cmd
    assert "--native" in cmd and "--nonblocking" not in cmd


def test_native_defaults_reach_2000_samples() -> None:
    window = native_window_s(NATIVE_RATE_HZ)
    assert NATIVE_RATE_HZ * (window - 2.0) >= NATIVE_MIN_SAMPLES
    # py-spy keeps only the samples where the server runs: a half-busy server needs twice the
    # window, and the window has a ceiling.
    assert native_window_s(NATIVE_RATE_HZ, busy=0.5) >= 2 * (window - 2.0)
    assert native_window_s(NATIVE_RATE_HZ, busy=0.0) <= 600.0
    args = build_parser().parse_args(["profile", "--pid", "1", "--native"])
    assert _rate_and_window(args) == (NATIVE_RATE_HZ, window)
    args = build_parser().parse_args(["profile", "--pid", "1", "--native", "--rate-hz", "50"])
    assert _rate_and_window(args) == (50, native_window_s(50))
    args = build_parser().parse_args(["profile", "--pid", "1"])
    assert _rate_and_window(args)[0] > NATIVE_RATE_HZ  # nonblocking keeps its own rate
    plan = LoadPlan()
    assert _profile_settings(plan, None, True) == (NATIVE_RATE_HZ, window)
    assert _profile_settings(plan, None, False) == (plan.profile_rate_hz, plan.profile_window_s)
    assert _profile_settings(plan, 40, True) == (40, native_window_s(40))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="py-spy tests run on Linux")
def test_profile_native_records_a_uvloop_server_under_load(tmp_path: Path) -> None:
    """A real uvloop server: the recording has C frames and they are attributed."""
    with stack("starlette-raw", loop="uvloop") as server:
        load: dict[str, object] = {}

        def drive() -> None:
            config = LoadConfig(url=server.url, mode=server.mode, connections=8, duration=5.0)
            load["result"] = fast.run(config)

        t = threading.Thread(target=drive, daemon=True)
        t.start()
        try:
            code = main(
                [
                    "profile",
                    "--pid",
                    str(server.pid),
                    "--native",
                    "--duration",
                    "2",
                    "--rate-hz",
                    "100",
                    "--out",
                    str(tmp_path),
                    "--json",
                    str(tmp_path / "a.json"),
                ]
            )
        finally:
            t.join(timeout=30)
        assert not t.is_alive()
    assert code == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["target"]["native"] is True and doc["target"]["rate_hz"] == 100
    stacks = read_folded(tmp_path / f"pid{server.pid}.folded")
    text = "\n".join(";".join(s.frames) for s in stacks)
    assert "(libc.so" in text and "loop.c" in text  # native frames were recorded
    a = attribute(stacks)
    assert a.total_samples > 20
    # on uvloop, the kernel calls and the C loop are where a raw echo server's time goes
    native_share = a.layers["kernel-io"].share + a.layers["event-loop"].share
    assert native_share >= 0.25, {k: v.share for k, v in a.layers.items()}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_native_py_spy_runs_on_the_targets_cpus() -> None:
    """Blocking mode: py-spy unwinds while the target is stopped, so it runs on its core."""
    cpu = max(os.sched_getaffinity(0))
    target = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            preexec_fn=_on_cpus_of(target.pid, lambda: None),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        target.kill()
        target.wait(timeout=10)
    assert probe.stdout.strip() == f"[{cpu}]"


def test_a_native_scenario_window_grows_for_a_half_busy_server() -> None:
    """py-spy keeps only samples of a running server: half busy, twice the native window."""
    from wsprof.client.histogram import PyHistogram
    from wsprof.scenario.record import Window
    from wsprof.scenario.recording import window_s

    def clean(cpu_s: float) -> Window:
        return Window("capacity", 1000, 2.0, cpu_s, 1.0, 0.1, False, {}, PyHistogram().to_dict())

    assert window_s(4.0, False, 500, [clean(1.0)]) == 4.0  # not native: the plan's window
    busy = window_s(4.0, True, NATIVE_RATE_HZ, [clean(2.0)])
    half = window_s(4.0, True, NATIVE_RATE_HZ, [clean(1.0)])
    assert busy == native_window_s(NATIVE_RATE_HZ)
    assert half >= 2 * (busy - 2.0)
