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
from wsprof.servers.stacks import get_stack

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
    if name == "redis-broker" and "manager" not in get_stack("socketio-asgi").options:
        pytest.skip("socketio stacks have no manager option yet (issue 9, servers side)")
    scenario = load_scenario(name)
    assert scenario.load.workload != "echo"
    quick = scenario.plan(quick=True)
    assert quick.capacity_window_s <= scenario.load.capacity_window_s
