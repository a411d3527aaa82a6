"""The server-side counters: exact counts for known programs, and the SIGUSR2 dump protocol."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wsprof.servers import counting

# Each program runs in a fresh interpreter: the counters patch process-wide state.
PRELUDE = """
import asyncio, json, sys
from pathlib import Path
from wsprof.servers import counting
"""


def _run(program: str, tmp_path: Path) -> dict:
    out = tmp_path / "counts.json"
    code = PRELUDE + textwrap.dedent(program)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_asyncio_tasks_steps_and_callbacks_are_counted_exactly(tmp_path: Path) -> None:
    data = _run(
        """
        counting.install(Path(sys.argv[1]))

        async def child():
            await asyncio.sleep(0)   # two steps: start, resume

        async def main():
            before = dict(counting.counts)
            await asyncio.gather(*(asyncio.ensure_future(child()) for _ in range(5)))
            after = dict(counting.counts)
            return {k: after.get(k, 0) - before.get(k, 0) for k in ("tasks", "task_steps")}

        delta = asyncio.run(main())
        # 2 steps per child (start, resume after sleep) + main's resume after gather
        assert delta == {"tasks": 5, "task_steps": 11}, delta
        assert counting.counts["callbacks"] >= 10
        """,
        tmp_path,
    )
    assert "asyncio" in data["counters"]
    assert data["loops"] == ["asyncio"]
    assert data["callbacks_countable"] is True
    assert data["counts"]["tasks"] >= 6  # main + 5 children (+ asyncio.run's shutdown tasks)


def test_uvloop_tasks_are_counted_and_callbacks_are_not(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    _run(
        """
        import uvloop
        counting.install(Path(sys.argv[1]))

        async def child():
            await asyncio.sleep(0)

        async def main():
            await asyncio.gather(*(asyncio.ensure_future(child()) for _ in range(3)))
            snap = counting.snapshot()
            assert snap["loops"] == ["uvloop"] and not snap["callbacks_countable"], snap
            return dict(counting.counts)

        got = uvloop.run(main())
        # main: its first step (the snapshot is taken in its second); children: 2 each
        assert (got["tasks"], got["task_steps"]) == (4, 1 + 6 + 1), got
        assert "callbacks" not in got, got
        """,
        tmp_path,
    )


def test_greenlet_switches_are_counted_exactly(tmp_path: Path) -> None:
    data = _run(
        """
        import greenlet
        counting.install(Path(sys.argv[1]))
        main = greenlet.getcurrent()

        def partner():
            while True:
                main.switch()

        other = greenlet.greenlet(partner)
        other.switch()               # 1: into partner, 2: back to main
        for _ in range(100):
            other.switch()           # 2 per round trip
        assert counting.counts["greenlet_switches"] == 202, counting.counts
        """,
        tmp_path,
    )
    assert "greenlet" in data["counters"]


def test_socketio_packets_and_their_json_calls_are_counted(tmp_path: Path) -> None:
    _run(
        """
        import engineio.packet, socketio.packet
        counting.install(Path(sys.argv[1]))
        pkt = socketio.packet.Packet(socketio.packet.EVENT, data=["echo", {"a": 1}])
        encoded = pkt.encode()
        socketio.packet.Packet(encoded_packet=encoded)
        engineio.packet.Packet(engineio.packet.MESSAGE, data=encoded).encode()
        c = counting.counts
        assert (c["sio_encode"], c["sio_decode"], c["eio_encode"]) == (1, 1, 1), c
        assert (c["json_dumps"], c["json_loads"]) == (1, 1), c
        """,
        tmp_path,
    )


def test_sigusr2_dumps_and_the_runner_reads_the_difference(tmp_path: Path) -> None:
    out = tmp_path / "counts.json"
    code = PRELUDE + textwrap.dedent(
        """
        import greenlet, time
        counting.install(Path(sys.argv[1]))
        print("ready", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Path(sys.argv[1] + ".stop").exists():
            greenlet.greenlet(lambda: None).switch()   # 2 switches each
            time.sleep(0.001)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        first = counting.request_counts(proc.pid, out, after_seq=0)
        asyncio.run(asyncio.sleep(0.2))
        second = counting.request_counts(proc.pid, out, after_seq=first["seq"])
        delta = counting.difference(first, second)
        assert delta["greenlet_switches"] > 0
        assert second["pid"] == proc.pid
        (tmp_path / "counts.json.stop").touch()
        assert proc.wait(timeout=25) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(out.read_text())["seq"] == second["seq"] + 1  # the exit dump
    assert not list(tmp_path.glob("*.tmp"))


def test_difference_covers_keys_of_either_side() -> None:
    assert counting.difference({"counts": {"a": 1}}, {"counts": {"a": 4, "b": 2}}) == {
        "a": 3,
        "b": 2,
    }
