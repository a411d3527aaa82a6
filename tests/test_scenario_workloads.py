"""Workloads and sweeps end to end: a real echo sweep over connections, and the shipped files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from wsprof.scenario.files import load_scenario

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/scenario.schema.json").read_text())

ECHO_SWEEP = """
name = "echo-sweep"
description = "an echo sweep over connections, tiny windows: a test, not a benchmark"
[load]
connections = 2
payload = "small"
warmup_s = 0.2
capacity_window_s = 0.5
latency_window_s = 0.5
profile_window_s = 0.5
repeats = 1
[sweep]
connections = [2, 8]
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
"""


def test_an_echo_sweep_over_connections_gives_rows_growth_and_valid_json(tmp_path: Path):
    path = tmp_path / "echo-sweep.toml"
    path.write_text(ECHO_SWEEP)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsprof",
            "scenario",
            str(path),
            "--json",
            str(out),
            "--out",
            str(tmp_path / "fg"),
            "--no-profile",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    sweep = doc["sweep"]
    assert sweep["parameter"] == "connections" and sweep["points"] == [2, 8]
    assert sweep["incomplete"] is False and sweep["restart_per_point"] is False
    for name in ("starlette-raw", "socketio-asgi"):
        entry = sweep["variants"][name]
        assert [r["point"] for r in entry["rows"]] == [2, 8]
        for row in entry["rows"]:
            assert row["status"] == "ok"
            assert row["throughput_msgs_per_s"] > 0 and row["server_cpu_us_per_msg"] > 0
            assert row["latency_us"]["p50"] > 0
        assert entry["growth"]["unit"] == "connection"
        assert entry["growth"]["per_unit"] is not None and entry["growth"]["points"] == 2
    # the top-level variants are the last point's windows
    assert doc["variants"][0]["status"] == "ok"
    assert "sweep over connections" in proc.stdout
    assert "per added connection" in proc.stdout
    html = out.with_suffix(".html").read_text()
    assert 'id="sweep"' in html and "<polyline" in html


@pytest.mark.parametrize(
    "name", ["broadcast-fanout", "idle-connections", "connect-rate", "redis-broker"]
)
def test_the_workload_scenarios_ship_and_load(name: str):
    scenario = load_scenario(name)
    assert scenario.load.workload != "echo"
    quick = scenario.plan(quick=True)
    assert quick.capacity_window_s <= scenario.load.capacity_window_s


def _run_scenario(
    tmp_path: Path, text: str, *, profile: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict]:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsprof",
            "scenario",
            str(path),
            "--json",
            str(out),
            "--out",
            str(tmp_path / "fg"),
            *([] if profile else ["--no-profile"]),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    return proc, doc


BROADCAST_SWEEP = """
name = "broadcast-sweep"
description = "a broadcast sweep over recipients, tiny windows: a test, not a benchmark"
[load]
workload = "broadcast"
recipients = 2
warmup_s = 0.2
capacity_window_s = 0.5
latency_window_s = 0.5
repeats = 1
[sweep]
recipients = [2, 8]
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
"""


def test_a_broadcast_sweep_counts_every_delivery_at_each_point(tmp_path: Path):
    proc, doc = _run_scenario(tmp_path, BROADCAST_SWEEP)
    assert doc["workload"] == "broadcast"
    for name, entry in doc["sweep"]["variants"].items():
        assert [r["point"] for r in entry["rows"]] == [2, 8], name
        for row in entry["rows"]:
            assert row["status"] == "ok"
            assert row["recipients"] == row["point"]
            assert row["deliveries_per_s"] > 0 and row["server_cpu_us_per_delivery"] > 0
            assert row["missing"] == 0 and row["duplicates"] == 0
            assert 0 < row["latency_us"]["p50"] <= row["latency_us"]["p99"]
        assert entry["growth"]["unit"] == "recipient"
    assert doc["latency_rate_msgs_per_s"] > 0  # broadcasts/s offered in the open-loop windows
    assert "deliveries/s" in proc.stdout


IDLE_AND_CONNECT = """
name = "{workload}-tiny"
description = "tiny {workload} windows: a test, not a benchmark"
[load]
workload = "{workload}"
connections = 20
idle_window_s = 1.5
capacity_window_s = 0.5
warmup_s = 0.2
repeats = 1
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
options = {{ ping_interval = 1 }}
"""


def test_idle_connections_cost_memory_and_answer_heartbeats(tmp_path: Path):
    _, doc = _run_scenario(tmp_path, IDLE_AND_CONNECT.format(workload="idle"))
    raw, sio = doc["variants"]
    for v in (raw, sio):
        assert v["status"] == "ok" and v["connections"] == 20 and v["failed"] == 0
        assert v["rss_kb_per_connection"] is not None
        assert v["idle_cpu_us_per_s_per_1k"] >= 0
    assert raw["heartbeats"] == 0
    assert sio["heartbeats"] > 0  # ping_interval 1 s over a 1.5 s window, for 20 connections


def test_connect_rate_counts_connections_and_their_cost(tmp_path: Path):
    _, doc = _run_scenario(tmp_path, IDLE_AND_CONNECT.format(workload="connect"))
    for v in doc["variants"]:
        assert v["status"] == "ok"
        assert v["connects_per_s"] > 0 and v["server_cpu_us_per_connection"] > 0
        assert 0 < v["connect_latency_us"]["p50"] <= v["connect_latency_us"]["p99"]


REDIS_TWO_PROCESSES = """
name = "redis-two-processes"
description = "two server processes sharing wsprof's redis-server, tiny windows: a test"
[load]
workload = "broadcast"
recipients = 8
senders = 2
warmup_s = 0.5
capacity_window_s = 0.8
latency_window_s = 0.8
profile_window_s = 1.0
repeats = 1
[[variants]]
name = "redis-2"
stack = "socketio-asgi"
processes = 2
options = { manager = "redis" }
"""


def test_two_processes_sharing_redis_are_measured_and_both_profiled(tmp_path: Path):
    """Every delivery counted across processes, the broker's CPU its own figure, and py-spy
    on both server processes (one folded file, two process roots)."""
    from wsprof.profiling.folded import processes, read_folded
    from wsprof.servers.redis import RedisUnavailable, require_redis_server

    try:
        require_redis_server()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    _, doc = _run_scenario(tmp_path, REDIS_TWO_PROCESSES, profile=True)
    (v,) = doc["variants"]
    assert v["status"] == "ok", v.get("error")
    assert v["missing"] == 0 and v["duplicates"] == 0
    assert v["broker_us_per_delivery"] is not None and v["broker_us_per_delivery"] > 0
    assert v["cross_latency_us"]["p50"] > 0
    folded = sorted((tmp_path / "fg").rglob("redis-2.folded"))
    assert len(folded) == 1 and not list((tmp_path / "fg").rglob("*.p2.folded"))
    pids = processes(read_folded(folded[0]))
    assert len(pids) >= 2, pids


FD_RAMP = """
name = "fd-ramp"
description = "an idle ramp past the file-descriptor limit: a test"
[load]
workload = "idle"
idle_window_s = 0.5
warmup_s = 0.2
capacity_window_s = 0.5
repeats = 1
[sweep]
connections = [20, 400]
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
"""


def test_a_file_descriptor_limit_mid_ramp_keeps_the_partial_curve(tmp_path: Path):
    """256 descriptors: the 20-connection point is measured, the 400 one meets the limit."""
    import resource

    path = tmp_path / "fd-ramp.toml"
    path.write_text(FD_RAMP)
    out = tmp_path / "result.json"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.run(
        [
            *(sys.executable, "-m", "wsprof", "scenario", str(path), "--json", str(out)),
            *("--out", str(tmp_path / "fg"), "--no-profile"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=low_limit,
        env={**os.environ, "COLUMNS": "250"},
    )
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    entry = doc["sweep"]["variants"]["starlette-raw"]
    assert entry["incomplete"] is True and doc["sweep"]["incomplete"] is True
    assert entry["rows"][0]["status"] == "ok" and entry["rows"][0]["connections"] == 20
    assert "ulimit -n" in entry["error"] and "\n" not in entry["error"]
    assert "incomplete" in proc.stdout
    assert proc.returncode != 0 or doc["complete"] is False
