"""The idle and connect workloads: one test body over both clients (fast and reference).

Real stacks in their own processes on 127.0.0.1; each run is bounded by its window,
the open timeout and the close wait, and each test checks it did not take longer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from servers import closed_port, stack

from wsprof.client.base import CLIENTS, LoadError
from wsprof.client.connections import (
    ConnectConfig,
    ConnectionLimit,
    IdleConfig,
    limit_error,
    run_connect,
    run_idle,
)
from wsprof.errors import WsprofError


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def starlette_url() -> Iterator[str]:
    with stack("starlette-raw", loop="asyncio") as server:
        yield server.url


@pytest.fixture(scope="module")
def socketio_url() -> Iterator[str]:
    # engineio advertises whole seconds: a 1 s interval gives ~2 pings per 2 s window.
    with stack("socketio-asgi", ping_interval="1", ping_timeout="1") as server:
        yield server.url


def test_idle_raw_holds_every_connection(client, starlette_url):
    marks: list[str] = []
    start = time.monotonic()
    result = run_idle(
        IdleConfig(starlette_url, connections=200, duration=1.0, on_window=marks.append),
        client=client,
    )
    assert time.monotonic() - start < 15
    assert marks == ["start", "end"]
    assert (result.connections, result.failed, result.heartbeats) == (200, 0, 0)
    assert result.errors == {}
    assert result.elapsed_s >= 0.95
    assert result.open_s > 0
    assert 0 <= result.client_cpu_s < result.elapsed_s


def test_idle_socketio_answers_heartbeats(client, socketio_url):
    # Pinged every second with a one-second timeout: a ping left unanswered would
    # drop its connection within the window (failed > 0, closed_by_server).
    start = time.monotonic()
    result = run_idle(
        IdleConfig(socketio_url, mode="socketio", connections=50, duration=2.5), client=client
    )
    assert time.monotonic() - start < 20
    assert (result.connections, result.failed) == (50, 0), result.errors
    assert result.heartbeats >= 50
    assert result.heartbeats_late == 0
    assert result.errors == {}


@pytest.mark.parametrize("mode", ["raw", "socketio"])
def test_connect_times_every_connect(client, mode, starlette_url, socketio_url):
    url = starlette_url if mode == "raw" else socketio_url
    marks: list[str] = []
    start = time.monotonic()
    result = run_connect(
        ConnectConfig(
            url, mode=mode, concurrency=8, duration=1.0, warmup=0.2, on_window=marks.append
        ),
        client=client,
    )
    assert time.monotonic() - start < 15
    assert marks == ["start", "end"]
    assert result.connects > 10
    assert result.histogram["total"] == result.connects
    assert result.connects_per_s > 10
    lat = result.latency_us()
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # the server closes first after our Close: no resets, no close timeouts
    assert result.errors == {}, result.errors


def test_nothing_to_connect_to_is_one_line(client):
    port = closed_port()
    with pytest.raises(LoadError) as info:
        run_idle(IdleConfig(f"ws://127.0.0.1:{port}/", connections=5, duration=0.5), client=client)
    text = str(info.value)
    assert "none of 5 connections stayed open" in text and "\n" not in text
    assert "connect_failed" in text
    with pytest.raises(LoadError, match="no connect completed"):
        run_connect(ConnectConfig(f"ws://127.0.0.1:{port}/", duration=0.3, warmup=0), client=client)


LIMITED = textwrap.dedent(
    """
    import json, resource, sys
    from wsprof.client.connections import ConnectionLimit, IdleConfig, run_idle
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
    try:
        run_idle(IdleConfig(sys.argv[1], connections=300, duration=0.5), client=sys.argv[2])
    except ConnectionLimit as exc:
        print(json.dumps({"message": str(exc), "opened": exc.opened}))
    """
)


def test_running_out_of_file_descriptors_is_a_connection_limit(client, starlette_url):
    out = subprocess.run(
        [sys.executable, "-c", LIMITED, starlette_url, client],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert "ulimit -n is 100 (hard limit 100)" in found["message"], found
    assert "\n" not in found["message"]
    assert 0 < found["opened"] < 100


def test_port_exhaustion_names_the_port_range():
    limit = limit_error(OSError(99, "Cannot assign requested address"), 28_000)
    assert isinstance(limit, ConnectionLimit) and limit.opened == 28_000
    assert "net.ipv4.ip_local_port_range is " in str(limit)
    assert limit_error(OSError(111, "refused"), 0) is None


def test_configs_refuse_bad_values():
    with pytest.raises(WsprofError, match="not a loopback address"):
        IdleConfig("ws://10.0.0.1:80/")
    with pytest.raises(WsprofError, match="--connections"):
        IdleConfig("ws://127.0.0.1:80/", connections=0)
    with pytest.raises(WsprofError, match="--concurrency"):
        ConnectConfig("ws://127.0.0.1:80/", concurrency=0)
    with pytest.raises(WsprofError, match="--duration"):
        ConnectConfig("ws://127.0.0.1:80/", duration=float("nan"))


@pytest.mark.parametrize("workload", ["idle", "connect"])
def test_the_cli_writes_the_workload_json(tmp_path, workload, socketio_url):
    out = tmp_path / "load.json"
    args = ["--connections", "20", "--idle-window", "1.5", "--concurrency", "4"]
    args += ["--duration", "1", "--warmup", "0.2", "--json", str(out)]
    command = [sys.executable, "-m", "wsprof", "load", socketio_url, "--mode", "socketio"]
    proc = subprocess.run(
        [*command, "--workload", workload, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert (doc["schema"], doc["workload"], doc["complete"]) == ("wsprof.load/1", workload, True)
    if workload == "idle":
        assert (doc["connections"], doc["failed"], doc["heartbeats_late"]) == (20, 0, 0)
        assert doc["heartbeats"] >= 20
    else:
        assert doc["connects"] > 0 and doc["connects_per_s"] > 0
        assert doc["connect_latency_us"]["p50"] > 0


def test_the_cli_says_a_refused_port_in_one_line():
    url = f"ws://127.0.0.1:{closed_port()}/"
    proc = subprocess.run(
        [sys.executable, "-m", "wsprof", "load", url, "--workload", "connect", "--duration", "0.3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no connect completed" in proc.stderr


IDLE_60 = ["--connections", "20", "--idle-window", "60"]


def test_ctrl_c_ends_an_idle_window_at_once(client, starlette_url):
    """SIGINT mid-window (Ctrl-C in a shell): exit 130 within seconds, one line, no traceback."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wsprof",
            "load",
            starlette_url,
            "--workload",
            "idle",
            *IDLE_60,
            "--client",
            client,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(3.0)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 130, stderr
    assert took < 4.0, f"exit {took:.2f} s after SIGINT"
    assert stderr.splitlines() == ["wsprof: interrupted; nothing was written as complete"]


@pytest.mark.slow
def test_ten_thousand_idle_connections(starlette_url):
    """10k on one destination: the fd limit is raised, the ports suffice (about 60 s here)."""
    result = run_idle(IdleConfig(starlette_url, connections=10_000, duration=2.0))
    assert (result.connections, result.failed, result.errors) == (10_000, 0, {})
    assert result.client_cpu_s < 0.5 * result.elapsed_s
