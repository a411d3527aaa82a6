"""`wsprof client-bench --quick` end to end: the echo server, the floor, both clients, the JSON."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

import psutil

from wsprof.client.bench import echo_server, plan
from wsprof.commands import client_bench


def test_quick_client_bench_writes_the_schema_and_leaves_no_server(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert client_bench.run(argparse.Namespace(json=out, quick=True)) == 0
    assert psutil.Process().children(recursive=True) == []
    doc = json.loads(out.read_text())
    assert doc["schema"] == "wsprof.client-bench/1"
    floor = doc["floor_us_per_msg"]
    assert 0.1 < floor < 1000
    rows = doc["results"]
    assert [(r["client"], r["connections"], r["in_flight"]) for r in rows] == [
        (row.client, row.connections, row.in_flight) for row in plan()
    ]
    for row in rows:
        assert row["msgs_per_s"] > 0
        assert row["client_cpu_us_per_msg"] > 0
        assert abs(row["floor_multiple"] - row["client_cpu_us_per_msg"] / floor) < 1e-9
        lat = row["latency_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
        assert row["errors"] == {}
    coalesced = next(r for r in rows if r["in_flight"] == 8)
    single = next(
        r for r in rows if r["client"] == "fast" and r["connections"] == 100 and r["in_flight"] == 1
    )
    assert coalesced["client_cpu_us_per_msg"] < single["client_cpu_us_per_msg"]
    assert "env" in doc and "pinning" in doc["env"]
    printed = capsys.readouterr().out
    assert "client-bench" in printed and "less CPU per message" in printed


def test_ctrl_c_ends_a_long_fast_load_within_a_second():
    """SIGINT during a 15 s window: the loop checks for signals, so the process ends at once."""
    with echo_server(None, max_seconds=60) as port:
        code = (
            "from wsprof.client import fast; from wsprof.client.base import LoadConfig; "
            f"fast.run(LoadConfig('ws://127.0.0.1:{port}/', duration=15, connections=4))"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None, "the load ended before the signal"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=3)
        finally:
            proc.kill()
        assert time.monotonic() - sent < 3
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
