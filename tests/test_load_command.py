"""`wsprof load` as a user runs it: real servers, the CLI, its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers import closed_port, gone

from wsprof.servers.launcher import ServerProcess

LOAD_KEYS = {
    "schema",
    "messages",
    "msgs_per_s",
    "client_cpu_us_per_msg",
    "latency_us",
    "errors",
    "client_bound",
    "env",
}


def _load(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("stack", "options", "client"),
    [
        ("starlette-raw", {"loop": "uvloop"}, "fast"),
        ("socketio-asgi", {"serializer": "json"}, "fast"),
        ("socketio-asgi", {"serializer": "json"}, "reference"),
    ],
)
def test_load_writes_the_documented_json(tmp_path: Path, stack, options, client):
    out = tmp_path / "load.json"
    with ServerProcess(stack, options) as server:
        proc = _load(
            server.url,
            "--mode",
            server.mode,
            "--connections",
            "4",
            "--in-flight",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--client",
            client,
            "--json",
            str(out),
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc) >= LOAD_KEYS
    assert doc["schema"] == "wsprof.load/1"
    assert doc["messages"] > 100
    assert doc["errors"] == {}
    lat = doc["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert doc["client_cpu_us_per_msg"] > 0
    assert "msgs/s" in proc.stdout


def test_open_loop_holds_the_offered_rate(tmp_path: Path):
    out = tmp_path / "load.json"
    with ServerProcess("starlette-raw") as server:
        proc = _load(
            server.url,
            "--connections",
            "5",
            "--rate",
            "2000",
            "--duration",
            "1.5",
            "--warmup",
            "0.2",
            "--json",
            str(out),
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert 1600 <= doc["msgs_per_s"] <= 2100
    assert "intended send time" in proc.stdout


def test_connection_refused_is_one_line():
    port = closed_port()
    proc = _load(f"ws://127.0.0.1:{port}/ws", "--duration", "1")
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"wsprof: error: cannot connect to 127.0.0.1:{port}: Connection refused"
    )


@pytest.mark.parametrize(
    ("stack", "options"),
    [
        ("starlette-raw", {"ws": "wsproto"}),
        ("websockets-raw", {}),
        ("socketio-asgi", {"serializer": "orjson"}),
        ("socketio-asgi", {"serializer": "msgpack"}),
        ("socketio-eventlet", {}),
        ("socketio-gevent", {}),
    ],
)
@pytest.mark.parametrize("payload", ["small", "binary"])
def test_every_stack_echoes_through_the_fast_client(stack, options, payload):
    """The fast client checks every echo against what it sent: a mismatch is an error."""
    from wsprof.client.base import LoadConfig
    from wsprof.client.driver import run_load
    from wsprof.scenario.runner import packet_format

    with ServerProcess(stack, options) as server:
        config = LoadConfig(
            url=server.url,
            mode=server.mode,
            connections=3,
            in_flight=2,
            duration=0.5,
            warmup=0.1,
            payload=payload,
            serializer=packet_format(server.serializer),
        )
        result = run_load(config, client="fast")
        server.check_alive()
        pids = server.pids()
    assert result.errors == {}
    assert result.messages > 20
    assert [pid for pid in pids if not gone(pid)] == []


def test_workers_split_the_load_and_merge_their_results(tmp_path: Path):
    out = tmp_path / "load.json"
    with ServerProcess("starlette-raw") as server:
        proc = _load(
            server.url,
            "--connections",
            "6",
            "--workers",
            "2",
            "--messages",
            "3000",
            "--duration",
            "10",
            "--warmup",
            "0.1",
            "--json",
            str(out),
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["workers"] == 2
    assert doc["messages"] == 3000  # each worker stopped at its half of the limit
    assert doc["errors"] == {}
