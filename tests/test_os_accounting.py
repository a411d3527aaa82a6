"""The kernel's user/system split of a real uvloop server, and kernel-io that agrees with it.

One starlette-raw server on uvloop under the fast client (20 connections):
its /proc split over the window is plausible and sums to the schedstat total;
``wsprof profile --pid`` over the same load apportions kernel-io from that
split (within 5 points by construction) and says so; every share carries an
interval that contains it. Figures are asserted as they hold on a contended
2-core machine: shares and bounds, never timings.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from servers import stack

from wsprof.cli import main
from wsprof.client.base import LoadConfig
from wsprof.client.driver import run_load
from wsprof.profiling.attribute import APPORTIONED, KERNEL_IO
from wsprof.servers.launcher import ServerProcess, tree_cpu_split

# Bounded without a plugin: load windows have durations, py-spy runs under wsprof's
# timeout (duration + 20 s), servers start within 30 s and are always stopped.
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc accounting is Linux"
)


def _load(server: ServerProcess, duration: float, on_window: Any = None) -> None:
    config = LoadConfig(
        url=server.url,
        mode="raw",
        connections=20,
        in_flight=1,
        duration=duration,
        warmup=0.3,
        on_window=on_window,
    )
    run_load(config, client="fast")


def test_cpu_split_of_a_uvloop_server_under_load_is_plausible() -> None:
    marks: dict[str, tuple[float, float, float]] = {}
    with stack("starlette-raw", loop="uvloop") as server:

        def mark(name: str) -> None:
            user, system = server.cpu_split()
            marks[name] = (user, system, server.cpu_seconds())

        _load(server, 2.0, mark)
        user, system, total = (b - a for a, b in zip(marks["start"], marks["end"], strict=True))
        # The same split from outside (profile --pid's path) sees the same tree.
        outside = tree_cpu_split(server.pid, {})
    assert user > 0 and system > 0
    share = system / (user + system)
    assert 0.02 < share < 0.9, f"system share {share:.3f}"
    # Ticks (10 ms) against nanoseconds: within 10% over a window of ~100+ ticks.
    assert user + system == pytest.approx(total, rel=0.10, abs=0.03)
    assert outside[0] >= marks["end"][0] - 0.02 and outside[1] >= marks["end"][1] - 0.02


def test_profile_pid_apportions_kernel_io_from_proc(tmp_path: Path) -> None:
    out = tmp_path / "prof"
    result = tmp_path / "prof.json"
    with stack("starlette-raw", loop="uvloop") as server:
        load = threading.Thread(target=_load, args=(server, 4.5), daemon=True)
        load.start()
        try:
            threading.Event().wait(0.8)  # past the warm-up: the server is busy
            code = main(
                [
                    "profile",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    "2",
                    "--out",
                    str(out),
                    "--json",
                    str(result),
                ]
            )
        finally:
            load.join(timeout=30)
    assert code == 0
    doc = json.loads(result.read_text())
    assert doc["kernel_io_method"] == APPORTIONED
    assert "syscalls" in doc["kernel_io_why"]
    proc = doc["proc_system_share"]
    assert 0.02 < proc < 0.9
    target = doc["target"]
    assert target["server_system_s"] / (
        target["server_user_s"] + target["server_system_s"]
    ) == pytest.approx(proc)
    layers = doc["layers"]
    assert abs(layers[KERNEL_IO]["share"] - proc) <= 0.05
    assert sum(v["share"] for v in layers.values()) == pytest.approx(1.0)
    for name, layer in layers.items():
        lo, hi = layer["share_ci95"]
        assert lo <= layer["share"] <= hi, name
    # The dominant layers of a raw uvloop echo server are its framing and its loop.
    top = max(layers, key=lambda n: layers[n]["share"])
    assert top in ("websocket-protocol", "event-loop", KERNEL_IO, "server-framework")
    sampling = doc["sampling"]
    assert sampling["expected_samples"] > 0
    assert sampling["recorded_samples"] == doc["total_samples"] + doc["idle"]["samples"]
