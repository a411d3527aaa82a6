"""Greenlet-aware attribution: the hub's own work (greenlet-hub) apart from the switches.

Frame strings below are copied from real py-spy recordings of socketio-eventlet made here;
the end-to-end test records a real eventlet server under load and checks how the frames of
that recording were classified.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from servers import stack

from wsprof.client import fast
from wsprof.client.base import LoadConfig
from wsprof.profiling.attribute import attribute
from wsprof.profiling.folded import Frame, Stack, parse_frame, read_folded
from wsprof.profiling.layers import INHERIT, RuleSet, default_rules
from wsprof.profiling.pyspy import record

HUB_FRAMES = [
    "BaseHub.run (eventlet/hubs/hub.py:341)",
    "BaseHub.fire_timers (eventlet/hubs/hub.py:471)",
    "BaseHub.prepare_timers (eventlet/hubs/hub.py:424)",
    "BaseHub.schedule_call_global (eventlet/hubs/hub.py:448)",
    "BaseHub.ensure_greenlet (eventlet/hubs/hub.py:285)",
    "Timer.__call__ (eventlet/hubs/timer.py:57)",
    "Hub.register (eventlet/hubs/poll.py:40)",
    "Hub.wait (eventlet/hubs/poll.py:98)",
    "Hub.add (eventlet/hubs/epolls.py:19)",
    "trampoline (eventlet/hubs/__init__.py:137)",
    "get_hub (eventlet/hubs/__init__.py:104)",
    "Hub.run (gevent/hub.py:647)",
    "loop.run (gevent/libev/corecext.pyx:700)",
    "ev_run (gevent/libev/ev.c:3900)",
    "ev_invoke_pending (ev.c:3500)",
    # timeouts are timers on the hub
    "Timeout.start (gevent/timeout.py:245)",
    "Timeout.start (eventlet/timeout.py:69)",
]

SWITCH_FRAMES = [
    "BaseHub.switch (eventlet/hubs/hub.py:310)",
    "switch (eventlet/hubs/hub.py:304)",
    "GreenThread.main (eventlet/greenthread.py:272)",
    "spawn (eventlet/greenthread.py:61)",
    "Waiter.switch (eventlet/queue.py:117)",
    "Event.reset (eventlet/event.py:56)",
    # the hub lines that call greenlet.switch (C, no frame of its own: charged to the line)
    "Timer.__call__ (eventlet/hubs/timer.py:59)",
    "Hub.wait (eventlet/hubs/poll.py:111)",
    "Hub.switch (gevent/hub.py:600)",
    "Greenlet.start (gevent/greenlet.py:700)",
    "greenlet::UserGreenlet::g_switch (greenlet/TUserGreenlet.cpp:185)",
    "slp_switch (greenlet/platform/switch_amd64_unix.h:60)",
    "greenlet::PythonState::did_finish (greenlet/TPythonState.cpp:597)",
    # gevent's Cython-compiled greenlet/queue modules as py-spy --native prints them
    "run (gevent/_gevent_cgreenlet.cpython-311-x86_64-linux-gnu.so)",
    "Queue__put (gevent/_gevent_cqueue.cpython-311-x86_64-linux-gnu.so)",
]


@pytest.mark.parametrize("frame", HUB_FRAMES)
def test_hub_frames_are_greenlet_hub(frame: str) -> None:
    assert default_rules().decide(frame) == "greenlet-hub"


@pytest.mark.parametrize("frame", SWITCH_FRAMES)
def test_switch_frames_are_greenlet_switching(frame: str) -> None:
    assert default_rules().decide(frame) == "greenlet-switching"


def test_poll_waits_stay_idle() -> None:
    assert default_rules().decide("Hub.do_poll (eventlet/hubs/epolls.py:31)") == "idle"


def _deciding_frames(stacks: list[Stack], rules: RuleSet) -> Counter[tuple[str, str]]:
    """(layer, frame) of the frame that decided each sample, weighted by its samples."""
    decided: Counter[tuple[str, str]] = Counter()
    for s in stacks:
        for text in reversed(s.frames):
            layer = rules.decide(text)
            if layer != INHERIT:
                decided[(layer, text)] += s.count
                break
    return decided


def _is_hub_work(frame: Frame) -> bool:
    """An eventlet hub frame that is not a switch, nor a line that calls greenlet.switch."""
    pinned = {("eventlet/hubs/timer.py", 59), ("eventlet/hubs/poll.py", 111)}
    file = frame.file or ""
    if "eventlet/hubs/" not in file or frame.name.endswith("switch"):
        return False
    return not any(file.endswith(f) and frame.line == line for f, line in pinned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="py-spy tests run on Linux")
def test_eventlet_hub_and_switches_are_separated_in_a_real_recording(tmp_path: Path) -> None:
    with stack("socketio-eventlet") as server:
        load: dict[str, object] = {}

        def drive() -> None:
            config = LoadConfig(url=server.url, mode=server.mode, connections=8, duration=4.0)
            load["result"] = fast.run(config)

        t = threading.Thread(target=drive, daemon=True)
        t.start()
        try:
            rec = record(server.pid, tmp_path / "eventlet.folded", 2.0, rate=500, nonblocking=True)
        finally:
            t.join(timeout=30)
        assert not t.is_alive()
    stacks = read_folded(rec.path)
    rules = default_rules()
    decided = _deciding_frames(stacks, rules)
    hub_in_switching = [
        text
        for (layer, text) in decided
        if layer == "greenlet-switching" and _is_hub_work(parse_frame(text))
    ]
    assert hub_in_switching == []
    a = attribute(stacks, rules)
    hub, switching = a.layers["greenlet-hub"], a.layers["greenlet-switching"]
    assert hub.samples > 0 and switching.samples > 0, {k: v.share for k, v in a.layers.items()}
    # The greenlet machinery is a dominant share of the server's Python-side work, now split
    # in two. (The kernel's share swings with the machine: loopback send() does the receiving
    # side's TCP work too, 15-73% of the samples in recordings here.)
    python_side = 1.0 - a.layers["kernel-io"].share
    shares = {k: round(v.share, 3) for k, v in a.layers.items()}
    assert hub.share + switching.share >= 0.10 * python_side, shares
