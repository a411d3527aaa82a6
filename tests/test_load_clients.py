"""Both load clients, one test body: every behaviour they share runs on ``fast`` and ``reference``.

The ``client`` fixture is parametrised over the two implementations (as picows
runs each test on two transports), and every shared test drives its server
through ``run_load``, so the two obey one contract (see ``LoadResult``).
Behaviours only one client has are at the end of the file, named after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers import (
    accept,
    closed_port,
    echo_then,
    pong_recorder,
    raw_server,
    server_thread,
    socketio_rejecting,
    stack,
)

from wsprof.client import base, reference
from wsprof.client.base import (
    CLIENTS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_DURATION_S,
    DEFAULT_WARMUP_S,
    FD_HEADROOM,
    LoadConfig,
    LoadError,
    LoadResult,
    ensure_fd_limit,
)
from wsprof.client.bench import echo_server
from wsprof.client.driver import run_load
from wsprof.errors import WsprofError
from wsprof.protocol import websocket as ws

Load = Callable[..., LoadResult]


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def load(client: str) -> Load:
    """``load(port_or_url, **LoadConfig fields)`` with this client; short runs, no warm-up."""
    return make_load(client)


def make_load(client: str) -> Load:
    """The ``load`` fixture's function (test modules of other behaviours reuse it)."""

    def run(where: int | str, **kwargs: Any) -> LoadResult:
        url = f"ws://127.0.0.1:{where}/" if isinstance(where, int) else where
        kwargs.setdefault("duration", 0.8)
        kwargs.setdefault("warmup", 0.0)
        kwargs.setdefault("connect_timeout", 3.0)
        result = run_load(LoadConfig(url, **kwargs), client=client)
        assert result.client == client
        return result

    return run


def assert_clean(result: LoadResult, min_messages: int = 20) -> None:
    """Every reply matched, every message timed, latencies positive and ordered."""
    assert result.errors == {}, result.errors
    assert result.messages >= min_messages
    assert result.histogram["total"] == result.messages
    assert result.elapsed_s > 0
    assert result.client_cpu_s > 0
    assert 0 < result.worker_busy_max <= 1.5
    lat = result.latency_us()
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def load_error(load: Load, where: int, *phrases: str, within: float = 8.0, **kwargs: Any) -> str:
    """The run fails with one line holding every phrase, without hanging."""
    kwargs.setdefault("duration", 2.0)
    kwargs.setdefault("connect_timeout", 2.0)
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        load(where, **kwargs)
    assert time.monotonic() - start < within, "the error path hung"
    text = str(info.value)
    assert "\n" not in text
    for phrase in phrases:
        assert phrase in text, text
    return text


def lost_after(text: str) -> int:
    """The message count in "every connection ... was lost after N messages"."""
    found = re.search(r"every connection to \S+ was lost after (\d+) messages", text)
    assert found, text
    return int(found.group(1))


@pytest.fixture(scope="module")
def websockets_url() -> Iterator[str]:
    with stack("websockets-raw", loop="asyncio") as server:
        yield server.url


@pytest.fixture(scope="module")
def starlette_url() -> Iterator[str]:
    with stack("starlette-raw", loop="asyncio") as server:
        yield server.url


@pytest.fixture(scope="module")
def socketio_urls() -> Iterator[dict[str, str]]:
    """socketio-asgi per packet format, pinging every second with a one-second timeout."""
    pings = {"ping_interval": "1", "ping_timeout": "1"}
    with (
        stack("socketio-asgi", serializer="json", **pings) as json_server,
        stack("socketio-asgi", serializer="msgpack", **pings) as msgpack_server,
    ):
        yield {"json": json_server.url, "msgpack": msgpack_server.url}


# --- real servers ----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["small", "binary", "large"])
def test_closed_loop(load, websockets_url, payload):
    assert_clean(load(websockets_url, payload=payload, connections=3, in_flight=2))


def test_max_messages_after_warmup_stops_exactly(load, websockets_url):
    result = load(websockets_url, max_messages=300, warmup=0.2, duration=10)
    assert_clean(result)
    assert result.messages == 300
    assert result.elapsed_s < 5


# asyncio's timers wake up to ~1 ms late and the reference client counts that
# lateness, so on a loaded machine its last sends of the window are still in flight.
OPEN_LOOP_FLOOR = {"fast": 0.75, "reference": 0.5}


def test_open_loop_keeps_the_rate(load, client, websockets_url):
    result = load(websockets_url, connections=4, rate=400, duration=1.0)
    assert_clean(result)
    # A constant schedule: never more than rate x window round trips.
    assert OPEN_LOOP_FLOOR[client] * 400 <= result.messages <= 1.05 * 400
    assert OPEN_LOOP_FLOOR[client] * 400 <= result.msgs_per_s <= 500


def test_starlette_text_and_binary_closed_and_open_loop(load, starlette_url):
    assert_clean(load(starlette_url, connections=3, in_flight=2))
    assert_clean(load(starlette_url, payload="binary", connections=3))
    assert_clean(load(starlette_url, payload="binary", rate=200), min_messages=100)


@pytest.mark.parametrize(
    ("payload", "serializer"),
    [
        ("small", "json"),
        ("binary", "json"),
        ("small", "msgpack"),
        ("medium", "msgpack"),
        ("binary", "msgpack"),
    ],
)
def test_socketio_echo_closed_and_open_loop(load, socketio_urls, payload, serializer):
    url = socketio_urls[serializer]
    options = {"mode": "socketio", "payload": payload, "serializer": serializer}
    assert_clean(load(url, connections=4, **options))
    assert_clean(load(url, rate=150, **options), min_messages=100)


def test_socketio_heartbeat_answered_during_the_run(load, socketio_urls):
    # Pinged every second with a one-second timeout, a client that left one ping
    # unanswered would be dropped (closed_by_server) at about t = 2 s.
    result = load(socketio_urls["json"], mode="socketio", connections=2, rate=100, duration=2.5)
    assert_clean(result, min_messages=200)
    assert result.elapsed_s >= 2.4


def test_socketio_eventlet_echo(load):
    with stack("socketio-eventlet") as server:
        assert_clean(load(server.url, mode="socketio", connections=3, duration=1.0))


def test_the_bench_echo_server(load):
    with echo_server(None, max_seconds=30) as port:
        assert_clean(load(port, connections=3, in_flight=4, duration=0.5), min_messages=100)


def test_websocket_pings_are_answered_mid_run(load):
    pongs: list[bytes] = []
    with raw_server(pong_recorder(pongs)) as port:
        result = load(port, max_messages=100, duration=5)
    assert_clean(result, min_messages=100)
    assert pongs[:4] == [b"20", b"40", b"60", b"80"]


# --- the contract ----------------------------------------------------------------------------


def test_a_mismatched_echo_is_an_error_not_a_message(load):
    with raw_server(echo_then(10**9, b"", alter_every=4)) as port:
        result = load(port, duration=0.5)
    mismatched = result.errors["echo_mismatch"]
    assert set(result.errors) == {"echo_mismatch"}
    assert mismatched > 0
    assert result.histogram["total"] == result.messages  # only good replies were timed
    assert result.messages > mismatched  # 3 of 4 echoes were right


def test_mismatched_echoes_do_not_count_toward_max_messages(load):
    # One message in flight, every other echo reversed (the first one included):
    # each good reply comes after a bad one.
    with raw_server(echo_then(10**9, b"", alter_every=2)) as port:
        result = load(port, max_messages=50, duration=5)
    assert result.messages == result.histogram["total"] == 50
    assert set(result.errors) == {"echo_mismatch"}
    assert result.errors["echo_mismatch"] >= 50


def test_only_mismatched_echoes_is_no_round_trip(load):
    with raw_server(echo_then(10**9, b"", alter_every=1)) as port:
        load_error(
            load,
            port,
            "no round trip completed against",
            "replies that differ from the message sent and no echo; try --reply any",
        )


def test_client_cpu_is_the_load_thread_over_the_window(load, websockets_url):
    """Another busy thread of the same process is not the client's CPU."""
    stop = threading.Event()
    burned: list[float] = []

    def burn() -> None:
        start, block = time.thread_time(), bytes(1 << 20)
        while not stop.is_set():
            hashlib.sha256(block).digest()  # hashes large blocks without the GIL
        burned.append(time.thread_time() - start)

    burner = threading.Thread(target=burn)
    burner.start()
    try:
        result = load(websockets_url, rate=100, duration=1.0)
    finally:
        stop.set()
        burner.join()
    assert_clean(result, min_messages=50)
    assert burned[0] > 0.05, "the busy thread never ran"
    assert result.client_cpu_s < burned[0] / 2
    assert result.client_cpu_s <= result.elapsed_s
    assert math.isclose(result.worker_busy_max, result.client_cpu_s / result.elapsed_s)


def test_window_marks_bracket_the_measurement(client, websockets_url):
    marks: list[tuple[str, float]] = []
    config = LoadConfig(
        websockets_url,
        duration=0.5,
        warmup=0.3,
        on_window=lambda mark: marks.append((mark, time.monotonic())),
    )
    start = time.monotonic()
    result = run_load(config, client=client)
    assert [mark for mark, _ in marks] == ["start", "end"]
    assert marks[0][1] - start >= 0.3  # after the warm-up
    assert marks[1][1] - marks[0][1] == pytest.approx(result.elapsed_s, abs=0.1)


def test_soft_fd_limit_is_raised_to_fit_the_connections(load, websockets_url):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        assert_clean(load(websockets_url, connections=300, duration=0.5))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 300 + FD_HEADROOM
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_fd_limit_beyond_the_hard_limit_is_a_clear_error(monkeypatch):
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(base.resource, "getrlimit", lambda _: (100, 1000))
    monkeypatch.setattr(base.resource, "setrlimit", lambda _, limits: raised.append(limits))
    ensure_fd_limit(1000 - FD_HEADROOM)  # fits under the hard limit: the soft one is raised
    assert raised == [(1000, 1000)]
    with pytest.raises(WsprofError, match=r"need 1065 file descriptors but the hard limit is 1000"):
        ensure_fd_limit(1001)


def test_load_defaults_are_the_config_defaults():
    config = LoadConfig("ws://127.0.0.1:9/")
    assert config.duration == DEFAULT_DURATION_S
    assert config.warmup == DEFAULT_WARMUP_S == 1.0
    assert config.connect_timeout == DEFAULT_CONNECT_TIMEOUT_S


@pytest.mark.parametrize(
    ("field", "value", "option"),
    [
        ("duration", math.nan, "--duration"),
        ("duration", math.inf, "--duration"),
        ("duration", 0.0, "--duration"),
        ("duration", 3601.0, "--duration"),
        ("warmup", math.nan, "--warmup"),
        ("warmup", math.inf, "--warmup"),
        ("warmup", -0.1, "--warmup"),
        ("warmup", 3601.0, "--warmup"),
        ("rate", math.nan, "--rate"),
        ("rate", math.inf, "--rate"),
        ("rate", 0.0, "--rate"),
        ("rate", 10_000_001.0, "--rate"),
        ("connect_timeout", math.nan, "--connect-timeout"),
        ("connect_timeout", -math.inf, "--connect-timeout"),
        ("connect_timeout", 0.0, "--connect-timeout"),
        ("connect_timeout", 601.0, "--connect-timeout"),
    ],
)
def test_load_config_refuses_non_finite_and_out_of_range_floats(field, value, option):
    with pytest.raises(WsprofError) as info:
        LoadConfig("ws://127.0.0.1:9/", **{field: value})
    text = str(info.value)
    assert text.startswith(f"{option} must be ") and "\n" not in text


def test_load_config_takes_the_edges_of_each_range():
    config = LoadConfig(
        "ws://127.0.0.1:9/", duration=3600, warmup=0, rate=10_000_000, connect_timeout=600
    )
    assert (config.duration, config.warmup, config.rate) == (3600, 0, 10_000_000)


# --- failures --------------------------------------------------------------------------------


def test_connection_refused(load):
    port = closed_port()
    text = load_error(load, port)
    assert text == f"cannot connect to 127.0.0.1:{port}: Connection refused"


def test_handshake_rejected_with_403(load):
    async def forbid(reader, writer, key):
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    with raw_server(forbid) as port:
        load_error(load, port, "403 Forbidden")


def test_handshake_with_a_wrong_accept_key(load):
    async def wrong(reader, writer, key):
        accept(writer, b"dGhlIHNhbXBsZSBub25jZQ==")
        await writer.drain()
        await asyncio.sleep(1)

    with raw_server(wrong) as port:
        load_error(load, port, "wrong Sec-WebSocket-Accept")


def test_handshake_never_answered_times_out(load):
    async def mute(reader, writer, key):
        await asyncio.sleep(3)

    with raw_server(mute) as port:
        load_error(load, port, "not ready after 0.5 s", within=3, connect_timeout=0.5)


def test_socketio_connect_refused_by_the_server(load):
    with server_thread(socketio_rejecting) as port:
        load_error(load, port, "refused", "no entry", mode="socketio")


def test_server_closing_every_connection_mid_run(load):
    going_away = ws.encode_frame(ws.OP_CLOSE, ws.close_payload(1001, "going away"))
    with raw_server(echo_then(25, going_away)) as port:
        text = load_error(load, port, "closed_by_server", within=5, connections=2, duration=10)
    assert 1 <= lost_after(text) <= 50


def test_server_closing_before_any_echo(load):
    with raw_server(echo_then(0, ws.encode_frame(ws.OP_CLOSE, b""))) as port:
        load_error(load, port, "closed_by_server", "before", duration=5)


def test_reserved_bits_before_any_echo(load):
    with raw_server(echo_then(0, b"\xc1\x02hi")) as port:
        load_error(load, port, "reserved bits", "before", connections=2, duration=5)


def test_malformed_frame_after_some_echoes(load):
    with raw_server(echo_then(10, b"\x83\x00")) as port:
        text = load_error(load, port, "protocol_error", duration=5)
    assert 1 <= lost_after(text) <= 10


def test_oversize_message_refused_from_its_header(load):
    # The header alone announces 17 MB; the client must refuse before buffering it.
    header = b"\x82\x7f" + (17_000_000).to_bytes(8, "big")
    with raw_server(echo_then(0, header)) as port:
        load_error(load, port, "message of 17000000 bytes exceeds the 16777216-byte limit")


def test_oversize_message_with_a_configured_limit(load):
    with raw_server(echo_then(0, ws.encode_frame(ws.OP_TEXT, b"x" * 5000))) as port:
        load_error(
            load, port, "message of 5000 bytes exceeds the 4096-byte limit", max_message_size=4096
        )


# --- one client only -------------------------------------------------------------------------


def test_reference_on_uvloop(starlette_url):
    config = LoadConfig(starlette_url, duration=0.5, warmup=0)
    assert_clean(reference.run(config, use_uvloop=True))


def test_reference_socketio_default_path():
    assert reference.socketio_path("/") == "/socket.io/?EIO=4&transport=websocket"
    assert reference.socketio_path("/io/?t=1") == "/io/?t=1&EIO=4&transport=websocket"
    assert reference.socketio_path("/x/?EIO=4&transport=websocket") == (
        "/x/?EIO=4&transport=websocket"
    )


def test_fast_floor_is_sane():
    from wsprof._floor import measure_floor

    floor = measure_floor(iterations=5000, max_seconds=0.5)
    assert floor["pairs"] >= 256
    assert 0.1 < floor["us_per_pair"] < 1000
