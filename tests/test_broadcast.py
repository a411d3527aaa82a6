"""The broadcast workload: both clients, one test body, against every bundled stack.

Each stack runs with ``handler=broadcast``; the clients must see every broadcast at
every recipient exactly once. A server that drops and duplicates deliveries on
purpose (tests/servers.py) is counted exactly.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers import faulty_broadcast, raw_server, stack

from wsprof.client import broadcast
from wsprof.client.base import CLIENTS, LoadError
from wsprof.client.bench import CEILING_RECIPIENTS, broadcast_ceiling, echo_server
from wsprof.client.broadcast import BroadcastConfig, BroadcastResult
from wsprof.errors import WsprofError
from wsprof.protocol import broadcast as body
from wsprof.servers.stacks import STACKS

RAW_PATH = "/ws"
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
#: Stacks whose extra dependencies the test machine may lack are skipped, not failed.
STACK_NAMES = [name for name in STACKS if "handler" in STACKS[name].options]
# The fast suite covers one stack per kind (raw asyncio, raw websockets, Socket.IO on ASGI and on
# eventlet); the framework and gevent stacks run the same body under `-m slow`.
FAST_SUITE_STACKS = ("starlette-raw", "websockets-raw", "socketio-asgi", "socketio-eventlet")
STACK_PARAMS = [
    name if name in FAST_SUITE_STACKS else pytest.param(name, marks=pytest.mark.slow)
    for name in STACK_NAMES
]


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


def run(client: str, url: str, **fields: object) -> BroadcastResult:
    settings: dict[str, object] = {"duration": 1.0, "warmup": 0.2, "drain_s": 2.0}
    settings.update(fields)
    return broadcast.run(BroadcastConfig(url=url, **settings), client=client)  # type: ignore[arg-type]


# -- protocol/broadcast.py ----------------------------------------------------------------


@given(st.integers(0, body.MAX_ID), st.integers(body.MIN_PAYLOAD_BYTES, 4096))
def test_body_round_trips(bid: int, size: int) -> None:
    text = body.encode_body(bid, size)
    assert len(text) == size
    assert body.parse_body(text) == bid
    assert body.parse_body(text.encode()) == bid
    assert body.parse_socketio(body.socketio_message(bid, size)) == bid


@given(st.binary(max_size=64))
def test_body_parser_accepts_only_bodies(data: bytes) -> None:
    head = data[: body.ID_DIGITS]
    valid = (
        len(data) >= body.ID_DIGITS
        and all(c in b"0123456789abcdef" for c in head)
        and data[body.ID_DIGITS :].isascii()
    )
    if valid:
        assert body.parse_body(data) == int(head, 16)
    else:
        with pytest.raises(body.BroadcastBodyError):
            body.parse_body(data)


@given(st.integers(0, body.MAX_ID), st.integers(body.MIN_PAYLOAD_BYTES, 200))
def test_template_places_the_id(bid: int, size: int) -> None:
    for mode in ("raw", "socketio"):
        template, offset = body.template(mode, size)
        written = template[:offset] + f"{bid:016x}".encode() + template[offset + 16 :]
        parse = body.parse_body if mode == "raw" else body.parse_socketio
        assert parse(written) == bid


def test_config_refuses_bad_values() -> None:
    with pytest.raises(WsprofError, match="payload_bytes"):
        BroadcastConfig(url="ws://127.0.0.1:1/ws", payload_bytes=8)
    with pytest.raises(WsprofError, match="senders"):
        BroadcastConfig(url="ws://127.0.0.1:1/ws", recipients=2, senders=3)
    with pytest.raises(WsprofError, match="loopback"):
        BroadcastConfig(url="ws://10.0.0.1:1/ws")


# -- every bundled stack, both clients -------------------------------------------------------


@pytest.mark.parametrize("name", STACK_PARAMS)
def test_every_stack_delivers_every_broadcast_once(client: str, name: str) -> None:
    spec = STACKS[name]
    with stack(name, handler="broadcast") as server:
        path = RAW_PATH if spec.mode == "raw" else SIO_PATH
        url = f"ws://127.0.0.1:{server.port}{path}"
        result = run(client, url, mode=spec.mode, recipients=20, senders=2, in_flight=2)
    assert result.broadcasts > 0
    assert result.missing == 0
    assert result.duplicates == 0
    assert result.deliveries == result.broadcasts * 20
    assert result.errors == {}
    assert result.histogram["total"] == result.deliveries
    assert result.cross_histogram["total"] == 0


def test_open_loop_paces_broadcasts(client: str) -> None:
    with stack("websockets-raw", handler="broadcast") as server:
        url = f"ws://127.0.0.1:{server.port}{RAW_PATH}"
        result = run(client, url, recipients=10, senders=2, rate=200.0, duration=1.5)
    assert 150 <= result.broadcasts <= 330
    assert result.missing == 0 and result.duplicates == 0


def test_two_server_processes_fill_the_cross_histogram(client: str) -> None:
    # Two separate rooms: deliveries cross no process, so half the recipients never get a
    # broadcast from the other process's senders: counted as missing, nothing crosses.
    with (
        stack("websockets-raw", handler="broadcast") as a,
        stack("websockets-raw", handler="broadcast") as b,
    ):
        url_a = f"ws://127.0.0.1:{a.port}{RAW_PATH}"
        url_b = f"ws://127.0.0.1:{b.port}{RAW_PATH}"
        result = run(
            client, url_a, extra_urls=(url_b,), recipients=10, senders=2, rate=100.0, drain_s=0.5
        )
    assert result.deliveries == result.broadcasts * 5
    assert result.missing == result.broadcasts * 5
    assert result.cross_histogram["total"] == 0


# -- wrong servers --------------------------------------------------------------------------


def test_drops_and_duplicates_are_counted_exactly(client: str) -> None:
    with raw_server(faulty_broadcast(drop_every=5, duplicate_every=7)) as port:
        result = run(
            client,
            f"ws://127.0.0.1:{port}/ws",
            recipients=4,
            senders=1,
            rate=300.0,
            warmup=0.0,
            duration=1.0,
            drain_s=1.0,
        )
    ids = range(result.broadcasts)
    assert result.broadcasts > 100
    assert result.missing == sum(1 for i in ids if i % 5 == 0)
    assert result.duplicates == sum(1 for i in ids if i % 5 and i % 7 == 3)
    assert result.deliveries == result.broadcasts * 4 - result.missing


def test_an_echo_server_counts_missing(client: str) -> None:
    # handler=echo: each broadcast reaches only its sender; the others never get one.
    with stack("websockets-raw") as server:
        url = f"ws://127.0.0.1:{server.port}{RAW_PATH}"
        result = run(client, url, recipients=3, rate=100.0, duration=0.5, drain_s=0.3)
    assert result.deliveries == result.broadcasts
    assert result.missing == 2 * result.broadcasts


def test_nothing_valid_is_one_line(client: str) -> None:
    async def garbage(reader, writer, key):
        from servers import accept

        from wsprof.protocol import websocket as ws

        accept(writer, key)
        while await reader.read(65536):
            writer.write(ws.encode_frame(ws.OP_TEXT, b"not a broadcast body"))

    with (
        raw_server(garbage) as port,
        pytest.raises(LoadError, match="no broadcast was delivered") as info,
    ):
        run(client, f"ws://127.0.0.1:{port}/ws", recipients=2, duration=0.4, drain_s=0.2)
    assert "\n" not in str(info.value)
    assert "malformed_body" in str(info.value)


# -- wsprof load --workload broadcast ---------------------------------------------------------


def _wsprof_load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", "load", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_the_broadcast_fields(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    with stack("socketio-asgi", handler="broadcast") as server:
        done = _wsprof_load(
            f"ws://127.0.0.1:{server.port}{SIO_PATH}",
            "--workload=broadcast",
            "--mode=socketio",
            "--recipients=10",
            "--senders=2",
            "--payload-bytes=100",
            "--duration=1",
            "--warmup=0.2",
            "--json",
            str(out),
        )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    fields = {f.name for f in dataclasses.fields(BroadcastResult)}
    assert fields | {"deliveries_per_s", "latency_us", "recipients", "complete"} <= set(doc)
    assert doc["deliveries"] == doc["broadcasts"] * 10 > 0
    assert doc["complete"] is True
    assert "deliveries/s" in done.stdout


def test_cli_fails_in_one_line_on_an_echo_server() -> None:
    with stack("starlette-raw") as server:
        done = _wsprof_load(
            f"ws://127.0.0.1:{server.port}{RAW_PATH}",
            "--workload=broadcast",
            "--recipients=3",
            "--rate=50",
            "--duration=0.5",
            "--warmup=0",
            "--drain=0.2",
        )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "missing" in done.stderr


def test_ctrl_c_ends_a_long_fast_broadcast_run() -> None:
    """SIGINT during a 15 s window against the C fan-out server: the loop ends at once."""
    with echo_server(None, max_seconds=60, broadcast=True) as port:
        code = (
            "from wsprof.client import broadcast; "
            f"broadcast.run(broadcast.BroadcastConfig('ws://127.0.0.1:{port}/', recipients=50, "
            "duration=15))"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None, "the run ended before the signal"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=5)
        finally:
            proc.kill()
        assert time.monotonic() - sent < 5
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err


def test_client_bench_ceiling_row_counts_every_delivery() -> None:
    row = broadcast_ceiling(None, None, repeats=1, duration=0.5)
    assert row["recipients"] == CEILING_RECIPIENTS
    assert row["missing"] == 0 and row["duplicates"] == 0 and row["errors"] == {}
    assert row["deliveries_per_s"] > 0
    assert row["capacity_deliveries_per_s"] >= row["deliveries_per_s"]


def test_msgpack_runs_on_the_reference_client_only() -> None:
    with stack("socketio-asgi", handler="broadcast", serializer="msgpack") as server:
        url = f"ws://127.0.0.1:{server.port}{SIO_PATH}"
        result = run("reference", url, mode="socketio", serializer="msgpack", recipients=10)
        with pytest.raises(WsprofError, match="--client reference"):
            run("fast", url, mode="socketio", serializer="msgpack", recipients=10)
    assert result.deliveries == result.broadcasts * 10 > 0
    assert result.missing == 0 and result.duplicates == 0
