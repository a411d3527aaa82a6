"""Scenarios end to end: real servers, the real load client, real py-spy; and the failure paths."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import jsonschema
import psutil
import pytest

from wsprof.profiling.layers import default_rules
from wsprof.scenario.analysis import analyse
from wsprof.scenario.files import load_scenario
from wsprof.scenario.record import ScenarioRecord
from wsprof.scenario.runner import ScenarioRunner

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/scenario.schema.json").read_text())

TINY = """
name = "tiny"
description = "two stacks, tiny windows: a test, not a benchmark"
[load]
connections = 4
in_flight = 1
payload = "small"
warmup_s = 0.2
capacity_window_s = 0.6
latency_window_s = 0.6
profile_window_s = 1.0
profile_rate_hz = 200
repeats = 1
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
options = { loop = "uvloop" }
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
options = { loop = "uvloop", serializer = "json" }
[[variants]]
name = "socketio-asgi-orjson"
stack = "socketio-asgi"
options = { loop = "uvloop", serializer = "orjson" }
"""


def _server_processes() -> set[int]:
    """Bundled servers started by this interpreter (not by another checkout's tests)."""
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if (cmd := p.info["cmdline"] or [])[:1] == [sys.executable]
        and "wsprof.servers.serve" in cmd
    }


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_quick_scenario_writes_valid_json_with_attribution(tiny: Path, tmp_path: Path):
    before = _server_processes()
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsprof",
            "scenario",
            str(tiny),
            "--json",
            str(out),
            "--out",
            str(tmp_path / "fg"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["complete"] is True
    raw, sio, sio_orjson = doc["variants"]
    for v in (raw, sio, sio_orjson):
        assert v["status"] == "ok"
        assert v["throughput_msgs_per_s"] > 0
        assert v["server_cpu_us_per_msg"] > 0
        assert 0 < v["latency_us"]["p50"] <= v["latency_us"]["p99"] <= v["latency_us"]["max"]
        assert abs(sum(layer["share"] for layer in v["layers"].values()) - 1.0) < 1e-6
        assert Path(v["flamegraphs"]["svg"]).is_file()
        assert Path(v["flamegraphs"]["speedscope"]).is_file()
    # Socket.IO does more work per message than a raw echo on the same server, and the
    # extra work shows up in the Socket.IO layers, which the raw echo never touches.
    assert sio["server_cpu_us_per_msg"] > raw["server_cpu_us_per_msg"]
    assert raw["layers"]["socketio-framing"]["samples"] == 0
    assert raw["layers"]["socketio-dispatch"]["samples"] == 0
    assert (
        sio["layers"]["socketio-framing"]["samples"] + sio["layers"]["socketio-dispatch"]["samples"]
        > 0
    )
    assert Path(sio["flamegraphs"]["diff_svg"]).is_file()
    assert {c["layer"] for c in sio["closure"]} >= {"json", "socketio-framing"}
    assert "starlette-raw" in proc.stdout and "socketio-asgi" in proc.stdout
    assert _server_processes() <= before, "a server process was left behind"


def test_a_port_that_cannot_be_bound_fails_that_variant_only(tiny: Path, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = TINY.replace(
            'options = { loop = "uvloop", serializer = "json" }',
            f'options = {{ loop = "uvloop", serializer = "json" }}\nport = {port}',
        )
        tiny.write_text(text)
        out = tmp_path / "result.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "wsprof",
                "scenario",
                str(tiny),
                "--no-profile",
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 1
    assert f"could not bind 127.0.0.1:{port}" in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["complete"] is False
    assert [v["status"] for v in doc["variants"]] == ["ok", "failed", "ok"]


def test_a_server_dying_mid_run_is_reported_and_the_rest_finishes(tiny: Path):
    class KillSecondServer(ScenarioRunner):
        def _latency(self):
            os.kill(self.runs[1].server.pid, signal.SIGKILL)
            super()._latency()

    steps: list[tuple[str, int, int]] = []
    runner = KillSecondServer(
        load_scenario(str(tiny)), profile=False, on_progress=lambda *step: steps.append(step)
    )
    record = runner.run()
    assert ScenarioRecord.from_json(json.loads(json.dumps(record.as_json()))) == record
    doc = analyse(record, {}, default_rules())
    assert doc["complete"] is False
    first, second, third = doc["variants"]
    assert first["status"] == "ok" and first["latency_us"]["p50"] > 0
    assert third["status"] == "ok" and third["latency_us"]["p50"] > 0
    assert second["status"] == "failed"
    assert "SIGKILL" in second["error"] or "died" in second["error"]
    assert all(
        not psutil.pid_exists(run.server.pid) or psutil.Process(run.server.pid).status() == "zombie"
        for run in runner.runs
    )
    # Progress went through the callback, step by step, and ended at the total.
    assert [done for _, done, _ in steps] == sorted(done for _, done, _ in steps)
    assert steps[-1][1] == steps[-1][2] == steps[0][2]
    assert any("latency socketio-asgi-orjson" in what for what, _, _ in steps)


def test_unknown_scenario_is_a_one_line_error():
    proc = subprocess.run(
        [sys.executable, "-m", "wsprof", "scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "unknown scenario 'nope'" in proc.stderr and "socketio-framing" in proc.stderr


def test_malformed_scenario_file_is_a_one_line_error(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("connections = 4", "connections = 0"))
    proc = subprocess.run(
        [sys.executable, "-m", "wsprof", "scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"wsprof: error: {bad}: key 'load.connections': must be a positive integer"
    )


def test_scenarios_lists_every_shipped_one():
    proc = subprocess.run(
        [sys.executable, "-m", "wsprof", "scenarios"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0
    for name in (
        "socketio-framing",
        "json-encoding",
        "event-loop",
        "greenlet-switching",
        "stack-matrix",
    ):
        assert name in proc.stdout


def test_ctrl_c_tears_everything_down_and_writes_nothing(tiny: Path, tmp_path: Path):
    before = _server_processes()
    out = tmp_path / "result.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsprof", "scenario", str(tiny), "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Background jobs of a non-interactive shell (CI) ignore SIGINT: restore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not (_server_processes() - before) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _server_processes() - before, "the scenario never started a server"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in stderr
    assert not out.exists()
    deadline = time.monotonic() + 10
    while _server_processes() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (_server_processes() - before), "a server outlived Ctrl-C"
