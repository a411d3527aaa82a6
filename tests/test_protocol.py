"""Sans-I/O protocol tests: bytes in, messages out, no sockets.

Both frame parsers, one set of tests
-----------------------------------
``TestFrameParser`` runs every test of ``FrameParser`` / ``encode_frame`` /
``ProtocolError`` against the pure-Python parser (``wsprof.protocol.websocket``)
and the Cython one (``wsprof._frames``) through the parametrised ``impl``
fixture; ``test_same_messages_and_errors_in_both_parsers`` compares them
stream for stream.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import struct
from types import ModuleType

import msgpack
import pytest
import socketio.msgpack_packet
import socketio.packet
from engineio import packet as eio_packet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsprof.protocol import engineio
from wsprof.protocol import socketio as sio
from wsprof.protocol import websocket as ws

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"
HYPO = settings(
    max_examples=200,
    deadline=None,
    # The same tests run against the Python and the Cython parser (a stateless fixture).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def header(b0: int, length: int, *, masked: bool = False) -> bytes:
    """A frame header with the shortest length encoding, built independently of encode_frame."""
    m = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, m | length))
    if length < 65536:
        return bytes((b0, m | 126)) + struct.pack("!H", length)
    return bytes((b0, m | 127)) + struct.pack("!Q", length)


PARSERS = ["wsprof.protocol.websocket", "wsprof._frames"]


@pytest.fixture(params=PARSERS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The frame layer under test: the Python one or the Cython one."""
    return importlib.import_module(request.param)


class TestFrameParser:
    """Behaviour both FrameParser/encode_frame implementations must have."""

    impl: ModuleType

    @pytest.fixture(autouse=True)
    def _use(self, impl: ModuleType) -> None:
        self.impl = impl

    def parse(self, data: bytes, **kwargs) -> list[tuple[int, bytes]]:
        return self.impl.FrameParser(**kwargs).feed(data)

    def assert_error(self, data: bytes, phrase: str, **kwargs) -> None:
        parser = self.impl.FrameParser(**kwargs)
        with pytest.raises(self.impl.ProtocolError, match=phrase):
            parser.feed(data)
        # A failed parser stays failed, whatever comes next.
        with pytest.raises(self.impl.ProtocolError):
            parser.feed(self.impl.encode_frame(OP_TEXT, b"ok"))

    # --- encoding ---------------------------------------------------------------------

    def test_rfc_examples(self):
        enc = self.impl.encode_frame
        assert enc(OP_TEXT, b"Hello") == b"\x81\x05Hello"
        # RFC 6455 §5.7: a masked "Hello".
        assert enc(OP_TEXT, b"Hello", mask=MASK) == bytes.fromhex("818537fa213d7f9f4d5158")
        assert enc(OP_TEXT, b"Hel", fin=False) + enc(OP_CONT, b"lo") == (b"\x01\x03Hel\x80\x02lo")
        assert enc(OP_PING, b"Hello") == b"\x89\x05Hello"

    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
    @pytest.mark.parametrize("masked", [False, True])
    def test_length_encodings_round_trip(self, length, masked):
        payload = bytes(i % 251 for i in range(length))
        frame = self.impl.encode_frame(OP_BINARY, payload, mask=MASK if masked else None)
        hdr = header(0x82, length, masked=masked)
        assert frame.startswith(hdr)
        assert len(frame) == len(hdr) + (4 if masked else 0) + length
        assert self.parse(frame, expect_masked=masked) == [(OP_BINARY, payload)]

    def test_encode_rejects_invalid_frames(self):
        enc = self.impl.encode_frame
        with pytest.raises(ValueError):
            enc(OP_PING, b"x" * 126)
        with pytest.raises(ValueError):
            enc(OP_CLOSE, b"", fin=False)
        with pytest.raises(ValueError):
            enc(0x3, b"")
        with pytest.raises(ValueError):
            enc(OP_TEXT, b"x", mask=b"abc")

    # --- parsing valid streams --------------------------------------------------------

    def test_several_messages_in_one_feed(self):
        enc = self.impl.encode_frame
        stream = enc(OP_TEXT, b"one") + enc(OP_BINARY, b"\x00\xff") + enc(OP_PONG, b"p")
        assert self.parse(stream) == [(OP_TEXT, b"one"), (OP_BINARY, b"\x00\xff"), (OP_PONG, b"p")]

    def test_byte_by_byte(self):
        enc = self.impl.encode_frame
        stream = enc(OP_TEXT, "héllo".encode()) + enc(OP_BINARY, b"z" * 300)
        parser = self.impl.FrameParser()
        out = []
        for i in range(len(stream)):
            out += parser.feed(stream[i : i + 1])
        assert out == [(OP_TEXT, "héllo".encode()), (OP_BINARY, b"z" * 300)]

    def test_incomplete_frame_returns_nothing_yet(self):
        parser = self.impl.FrameParser()
        frame = self.impl.encode_frame(OP_BINARY, b"x" * 1000)
        assert parser.feed(frame[:1]) == []
        assert parser.feed(frame[1:3]) == []
        assert parser.feed(frame[3:-1]) == []
        assert parser.feed(b"") == []
        assert parser.feed(frame[-1:]) == [(OP_BINARY, b"x" * 1000)]

    def test_fragments_reassembled_with_interleaved_control_frames(self):
        enc = self.impl.encode_frame
        stream = (
            enc(OP_BINARY, b"ab", fin=False)
            + enc(OP_PING, b"1")
            + enc(OP_CONT, b"cd", fin=False)
            + enc(OP_PONG, b"")
            + enc(OP_CONT, b"ef")
            + enc(OP_CLOSE, b"\x03\xe8bye")
        )
        assert self.parse(stream) == [
            (OP_PING, b"1"),
            (OP_PONG, b""),
            (OP_BINARY, b"abcdef"),
            (OP_CLOSE, b"\x03\xe8bye"),
        ]

    def test_text_fragments_may_split_a_character(self):
        enc = self.impl.encode_frame
        data = "é€".encode()
        stream = enc(OP_TEXT, data[:1], fin=False) + enc(OP_CONT, data[1:4], fin=False)
        stream += enc(OP_CONT, data[4:])
        assert self.parse(stream) == [(OP_TEXT, data)]

    def test_masked_fragments_from_a_client(self):
        enc = self.impl.encode_frame
        stream = enc(OP_TEXT, b"abc", fin=False, mask=MASK) + enc(
            OP_CONT, b"def", mask=b"\x01\x02\x03\x04"
        )
        assert self.parse(stream, expect_masked=True) == [(OP_TEXT, b"abcdef")]

    def test_message_at_the_limit_is_accepted(self):
        frame = self.impl.encode_frame(OP_BINARY, b"x" * 1000)
        assert self.parse(frame, max_message_size=1000) == [(OP_BINARY, b"x" * 1000)]

    # --- every ProtocolError ----------------------------------------------------------

    @pytest.mark.parametrize(
        ("data", "phrase", "kwargs"),
        [
            (b"\xc1\x00", "frame with reserved bits set", {}),  # RSV1
            (b"\xa1\x00", "frame with reserved bits set", {}),  # RSV2
            (b"\x91\x00", "frame with reserved bits set", {}),  # RSV3
            (b"\x83\x00", "unknown opcode 0x3", {}),
            (b"\x8b\x00", "unknown opcode 0xb", {}),
            (b"\x89\x7e\x00\x7e" + b"x" * 126, "control frame of 126 bytes exceeds", {}),
            (b"\x09\x00", "fragmented control frame", {}),
            (b"\x81\x81" + MASK + b"a", "masked frame from server", {}),
            (b"\x81\x01a", "unmasked frame from client", {"expect_masked": True}),
            (b"\x80\x01a", "continuation without a start frame", {}),
            (b"\x01\x01a\x81\x01b", "new data frame during a fragmented message", {}),
            (b"\x81\x02\xc3\x28", "invalid UTF-8 in text message", {}),
            (b"\x81\x7f\x80" + b"\x00" * 7, "frame length with the high bit set", {}),
        ],
    )
    def test_errors(self, data, phrase, kwargs):
        self.assert_error(data, phrase, **kwargs)

    def test_oversize_checked_on_the_declared_length(self):
        # Only the header arrives: the limit must trip before any payload is buffered.
        hdr = header(0x82, 17_000_000)
        self.assert_error(hdr, "message of 17000000 bytes exceeds the 16777216-byte limit")

    def test_oversize_across_fragments(self):
        enc = self.impl.encode_frame
        stream = enc(OP_BINARY, b"x" * 600, fin=False) + enc(OP_CONT, b"x" * 600)
        self.assert_error(
            stream, "message of 1200 bytes exceeds the 1000-byte limit", max_message_size=1000
        )

    def test_invalid_utf8_in_fragmented_text(self):
        enc = self.impl.encode_frame
        stream = enc(OP_TEXT, b"ok", fin=False) + enc(OP_CONT, b"\xff")
        self.assert_error(stream, "invalid UTF-8 in text message")

    def test_binary_messages_are_not_utf8_checked(self):
        assert self.parse(self.impl.encode_frame(OP_BINARY, b"\xff\xfe")) == [
            (OP_BINARY, b"\xff\xfe")
        ]

    # --- properties -------------------------------------------------------------------

    @HYPO
    @given(
        messages=st.lists(
            st.tuples(
                st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]),
                st.text(max_size=300),
                st.integers(1, 3),
            ),
            max_size=8,
        ),
        cuts=st.lists(st.integers(0, 5000), max_size=12),
        masked=st.booleans(),
    )
    def test_any_split_gives_the_same_messages(self, messages, cuts, masked):
        enc = self.impl.encode_frame
        stream = b""
        expected = []
        for opcode, text, nfrags in messages:
            payload = text.encode()[:125] if opcode == OP_PING else text.encode()
            mask = MASK if masked else None
            if opcode == OP_PING or nfrags == 1:
                stream += enc(opcode, payload, mask=mask)
            else:
                step = len(payload) // nfrags + 1
                parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
                for i, part in enumerate(parts):
                    stream += enc(
                        opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1, mask=mask
                    )
            expected.append((opcode, payload))
        whole = self.impl.FrameParser(expect_masked=masked).feed(stream)
        parser = self.impl.FrameParser(expect_masked=masked)
        got = []
        prev = 0
        for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
            got += parser.feed(stream[prev:cut])
            prev = cut
        assert whole == expected
        assert got == expected

    @HYPO
    @given(data=st.binary(max_size=400), masked=st.booleans())
    def test_random_bytes_raise_only_protocol_error(self, data, masked):
        parser = self.impl.FrameParser(max_message_size=4096, expect_masked=masked)
        with contextlib.suppress(self.impl.ProtocolError):
            for opcode, payload in parser.feed(data):
                assert isinstance(opcode, int)
                assert isinstance(payload, bytes)

    @HYPO
    @given(
        flips=st.lists(
            st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4
        )
    )
    def test_corrupted_streams_raise_only_protocol_error(self, flips):
        enc = self.impl.encode_frame
        stream = bytearray(
            enc(OP_TEXT, "déjà vu".encode(), fin=False)
            + enc(OP_PING, b"p")
            + enc(OP_CONT, b"!")
            + enc(OP_BINARY, bytes(200))
        )
        for where, xor in flips:
            stream[where % len(stream)] ^= xor
        parser = self.impl.FrameParser(max_message_size=1000)
        with contextlib.suppress(self.impl.ProtocolError):
            parser.feed(bytes(stream))


def test_the_cython_parser_raises_the_reference_error_class():
    from wsprof import _frames

    assert _frames.ProtocolError is ws.ProtocolError


frames = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
        st.binary(max_size=140),
        st.booleans(),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.binary(max_size=8), st.integers(1, 50), st.booleans())
def test_same_messages_and_errors_in_both_parsers(spec, junk, chunk, masked):
    from wsprof import _frames

    stream = b""
    for opcode, payload, fin in spec:
        if opcode >= 8:
            payload, fin = payload[:125], True
        stream += ws.encode_frame(opcode, payload, fin=fin, mask=b"k3y!" if masked else None)
    stream += junk

    def run(module: ModuleType) -> tuple[list[tuple[int, bytes]], str | None]:
        parser = module.FrameParser(max_message_size=300, expect_masked=masked)
        out: list[tuple[int, bytes]] = []
        for i in range(0, len(stream), chunk):
            try:
                out += parser.feed(stream[i : i + chunk])
            except module.ProtocolError as exc:
                return out, str(exc)
        return out, None

    assert run(_frames) == run(ws)


def test_default_message_limit_is_the_shared_constant(impl):
    assert impl.FrameParser().max_message_size == ws.MAX_MESSAGE_SIZE == 16 * 1024 * 1024


# --- Python-only: masking, handshake, close payloads ------------------------------------


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 1000, 65537])
def test_apply_mask_matches_the_definition(length):
    data = bytes((i * 7) % 256 for i in range(length))
    expected = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
    assert ws.apply_mask(data, MASK) == expected
    assert ws.apply_mask(expected, MASK) == data


def test_accept_key_rfc_example():
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_new_key_is_16_random_bytes():
    import base64

    keys = {ws.new_key() for _ in range(10)}
    assert len(keys) == 10
    assert all(len(base64.b64decode(k)) == 16 for k in keys)


def test_handshake_request():
    req = ws.build_handshake_request("127.0.0.1", 8765, "/socket.io/?EIO=4", "KEY==")
    lines = req.decode().split("\r\n")
    assert lines[0] == "GET /socket.io/?EIO=4 HTTP/1.1"
    assert "Host: 127.0.0.1:8765" in lines
    assert "Upgrade: websocket" in lines
    assert "Connection: Upgrade" in lines
    assert "Sec-WebSocket-Key: KEY==" in lines
    assert "Sec-WebSocket-Version: 13" in lines
    assert req.endswith(b"\r\n\r\n")


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def test_handshake_response_good_with_trailing_frame():
    frame = ws.encode_frame(OP_TEXT, b"hi")
    assert ws.parse_handshake_response(GOOD + frame, KEY) == len(GOOD)


def test_handshake_response_header_case_and_lists():
    resp = GOOD.replace(b"Upgrade: websocket", b"upgrade: WebSocket").replace(
        b"Connection: Upgrade", b"connection: keep-alive, upgrade"
    )
    assert ws.parse_handshake_response(resp, KEY) == len(resp)


def test_handshake_response_partial():
    for cut in (0, 10, len(GOOD) - 1):
        assert ws.parse_handshake_response(GOOD[:cut], KEY) is None


def test_handshake_response_rejected():
    resp = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ws.HandshakeError, match=r"HTTP/1\.1 403 Forbidden"):
        ws.parse_handshake_response(resp, KEY)


def test_handshake_response_wrong_or_missing_accept():
    wrong = GOOD.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(ws.HandshakeError, match="wrong Sec-WebSocket-Accept"):
        ws.parse_handshake_response(wrong, KEY)
    missing = GOOD.replace(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", b"")
    with pytest.raises(ws.HandshakeError, match="Sec-WebSocket-Accept"):
        ws.parse_handshake_response(missing, KEY)


def test_handshake_response_not_http_or_huge():
    with pytest.raises(ws.HandshakeError, match="not an HTTP response"):
        ws.parse_handshake_response(b"SSH-2.0-OpenSSH\r\n\r\n", KEY)
    with pytest.raises(ws.HandshakeError, match="exceeds"):
        ws.parse_handshake_response(b"HTTP/1.1 101 X\r\n" + b"X-A: b\r\n" * 10000, KEY)


def test_close_payloads():
    assert ws.close_payload() == b"\x03\xe8"
    assert ws.close_payload(1001, "bye") == b"\x03\xe9bye"
    assert ws.parse_close_payload(ws.close_payload(4000, "héllo")) == (4000, "héllo")
    assert ws.parse_close_payload(b"") == (None, "")
    with pytest.raises(ws.ProtocolError, match="1-byte payload"):
        ws.parse_close_payload(b"\x03")
    with pytest.raises(ws.ProtocolError, match="invalid UTF-8 in close reason"):
        ws.parse_close_payload(b"\x03\xe8\xff")
    with pytest.raises(ValueError):
        ws.close_payload(1000, "x" * 124)


# --- Engine.IO ---------------------------------------------------------------------------


def test_engineio_open_from_python_engineio():
    info = {
        "sid": "abc",
        "upgrades": [],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    }
    text = eio_packet.Packet(eio_packet.OPEN, info).encode()
    assert engineio.parse_open(text) == engineio.OpenPacket("abc", 25000, 20000, 1000000)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ('4{"sid":"a"}', "expected an Engine.IO OPEN packet"),
        ("0{nope", "invalid JSON"),
        ("0[1]", "not a JSON object"),
        ('0{"pingInterval":1,"pingTimeout":1}', "no 'sid'"),
        ('0{"sid":"a","pingInterval":"x","pingTimeout":1}', "pingInterval"),
        ('0{"sid":"a","pingInterval":1}', "pingTimeout"),
    ],
)
def test_engineio_open_errors(text, phrase):
    with pytest.raises(engineio.EngineIOError, match=phrase):
        engineio.parse_open(text)


def test_engineio_open_is_a_protocol_error():
    assert issubclass(engineio.EngineIOError, ws.ProtocolError)


def test_engineio_text_packets():
    assert engineio.encode_text(engineio.PONG) == "3"
    assert engineio.encode_text(engineio.MESSAGE, "2[]") == "42[]"
    assert engineio.decode_text("2") == ("2", "")
    assert engineio.decode_text('42["x"]') == ("4", '2["x"]')
    with pytest.raises(engineio.EngineIOError, match=r"unknown Engine\.IO packet type '9'"):
        engineio.decode_text("9")
    with pytest.raises(engineio.EngineIOError, match="empty"):
        engineio.decode_text("")
    with pytest.raises(ValueError):
        engineio.encode_text("x")


# --- Socket.IO ---------------------------------------------------------------------------


def theirs(text_after_4: str, attachments=()) -> socketio.packet.Packet:
    pkt = socketio.packet.Packet(encoded_packet=text_after_4)
    for a in attachments:
        pkt.add_attachment(a)
    return pkt


def test_encode_event_plain():
    assert sio.encode_event("echo", {"a": 1}) == ['42["echo",{"a":1}]']
    assert sio.encode_event("echo", 1, "x", ack_id=12) == ['4212["echo",1,"x"]']
    assert sio.encode_event("e", namespace="/chat", ack_id=3) == ['42/chat,3["e"]']


def test_encode_event_binary_is_read_by_python_socketio():
    blob = bytes(range(256))
    messages = sio.encode_event("echo", {"name": "x", "data": blob, "more": [b"1", 2]}, ack_id=7)
    text, *attachments = messages
    assert text.startswith("452-7[")
    assert attachments == [blob, b"1"]
    pkt = theirs(text[1:], attachments)
    assert pkt.packet_type == sio.BINARY_EVENT
    assert pkt.id == 7
    assert pkt.data == ["echo", {"name": "x", "data": blob, "more": [b"1", 2]}]


def test_encode_connect_and_disconnect():
    assert sio.encode_connect() == "40"
    assert sio.encode_connect("/admin", {"token": "t"}) == '40/admin,{"token":"t"}'
    assert sio.encode_disconnect() == "41"
    assert sio.encode_ack(5, "ok") == ['435["ok"]']


@pytest.mark.parametrize(
    ("ptype", "data", "namespace", "ack_id"),
    [
        (sio.CONNECT, {"sid": "s1"}, "/", None),
        (sio.CONNECT_ERROR, {"message": "Unauthorized"}, "/", None),
        (sio.DISCONNECT, None, "/chat", None),
        (sio.EVENT, ["echo", {"x": [1, 2.5, None, "é"]}], "/", None),
        (sio.EVENT, ["echo", 1], "/chat", 42),
        (sio.ACK, [{"ok": True}], "/", 0),
        (sio.BINARY_EVENT, ["echo", {"data": b"\x00\x01"}], "/", None),
        (sio.BINARY_ACK, [b"abc", b"de"], "/nsp", 9),
    ],
)
def test_decoder_reads_python_socketio_packets(ptype, data, namespace, ack_id):
    # python-socketio picks BINARY_EVENT/BINARY_ACK itself when the data holds bytes.
    base = {sio.BINARY_EVENT: sio.EVENT, sio.BINARY_ACK: sio.ACK}.get(ptype, ptype)
    encoded = socketio.packet.Packet(base, data, namespace=namespace, id=ack_id).encode()
    text, *attachments = encoded if isinstance(encoded, list) else [encoded]
    decoder = sio.PacketDecoder()
    out = decoder.feed_text(text)
    for i, a in enumerate(attachments):
        assert out == []
        assert decoder.waiting_for_attachments == len(attachments) - i
        out = decoder.feed_binary(a)
    assert out == [sio.Packet(ptype, namespace, data, ack_id)]
    assert decoder.waiting_for_attachments == 0


def test_decoder_namespace_with_query_and_no_data():
    assert sio.PacketDecoder().feed_text("0/admin?x=1,") == [sio.Packet(0, "/admin", None, None)]
    assert sio.PacketDecoder().feed_text("1/admin") == [sio.Packet(1, "/admin", None, None)]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "empty"),
        ("7[]", "unknown Socket.IO packet type"),
        ("2[nope", "invalid JSON"),
        ('2{"a":1}', r"not \[name"),
        ("5[]", "attachment count"),
        ('51-["e",{"_placeholder":true,"num":1}]', "placeholder 1 has no attachment"),
    ],
)
def test_decoder_errors(text, phrase):
    decoder = sio.PacketDecoder()
    with pytest.raises(sio.SocketIOError, match=phrase):
        decoder.feed_text(text)
        decoder.feed_binary(b"x")


def test_decoder_unexpected_binary_and_text_while_pending():
    decoder = sio.PacketDecoder()
    with pytest.raises(sio.SocketIOError, match="unexpected binary message"):
        decoder.feed_binary(b"x")
    decoder.feed_text('52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.feed_binary(b"a")
    with pytest.raises(sio.SocketIOError, match="1 binary attachment"):
        decoder.feed_text('2["e"]')


@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.text(max_size=20)
        | st.binary(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(max_size=8).filter(lambda k: k != "_placeholder"), children, max_size=4
            )
        ),
        max_leaves=12,
    ),
    ack_id=st.none() | st.integers(0, 10**6),
    namespace=st.sampled_from(["/", "/chat"]),
)
@HYPO
def test_event_round_trip(value, ack_id, namespace):
    messages = sio.encode_event("echo", value, ack_id=ack_id, namespace=namespace)
    decoder = sio.PacketDecoder()
    text = messages[0]
    assert isinstance(text, str) and text[0] == "4"
    out = decoder.feed_text(text[1:])
    for attachment in messages[1:]:
        out = decoder.feed_binary(attachment)
    ptype = sio.BINARY_EVENT if len(messages) > 1 else sio.EVENT
    assert out == [sio.Packet(ptype, namespace, ["echo", value], ack_id)]


def test_custom_dumps_and_loads():
    messages = sio.encode_event(
        "e", {"b": 1, "a": 2}, dumps=lambda o: json.dumps(o, sort_keys=True)
    )
    assert messages == ['42["e", {"a": 2, "b": 1}]']
    seen = []
    decoder = sio.PacketDecoder(loads=lambda text: seen.append(text) or json.loads(text))
    assert decoder.feed_text(messages[0][1:])[0].data == ["e", {"a": 2, "b": 1}]
    assert seen == ['["e", {"a": 2, "b": 1}]']


# --- Socket.IO msgpack -------------------------------------------------------------------


def test_msgpack_event_matches_python_socketio():
    data = sio.encode_event_msgpack("echo", {"data": b"\x00\xff", "n": 1}, ack_id=4)
    pkt = socketio.msgpack_packet.MsgPackPacket(encoded_packet=data)
    assert (pkt.packet_type, pkt.namespace, pkt.id) == (sio.EVENT, "/", 4)
    assert pkt.data == ["echo", {"data": b"\x00\xff", "n": 1}]
    theirs_bytes = socketio.msgpack_packet.MsgPackPacket(
        sio.EVENT, ["echo", {"data": b"\x00\xff", "n": 1}], namespace="/", id=4
    ).encode()
    assert data == theirs_bytes


def test_msgpack_decode_python_socketio_packets():
    for args in [(sio.CONNECT, {"sid": "x"}, "/", None), (sio.ACK, [b"x"], "/chat", 3)]:
        ptype, value, namespace, ack_id = args
        raw = socketio.msgpack_packet.MsgPackPacket(
            ptype, value, namespace=namespace, id=ack_id
        ).encode()
        assert sio.decode_msgpack(raw) == sio.Packet(ptype, namespace, value, ack_id)
    assert sio.decode_msgpack(sio.encode_connect_msgpack()) == sio.Packet(0, "/", None, None)


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"\xc1", "invalid msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"type": 9, "nsp": "/"}), "unknown Socket.IO packet type"),
        (msgpack.packb({"type": 2, "nsp": 5}), "bad 'nsp'"),
        (msgpack.packb({"type": 2, "nsp": "/"}) + b"\x00", "invalid msgpack"),
    ],
)
def test_msgpack_errors(data, phrase):
    with pytest.raises(sio.SocketIOError, match=phrase):
        sio.decode_msgpack(data)


def test_server_handshake_answers_the_client_request():
    request = ws.build_handshake_request("h", 1, "/", "dGhlIHNhbXBsZSBub25jZQ==")
    key = ws.request_key(request[: request.index(b"\r\n\r\n") + 4])
    assert key == "dGhlIHNhbXBsZSBub25jZQ=="
    response = ws.build_handshake_response(key)
    assert ws.parse_handshake_response(response, key) == len(response)
    assert ws.request_key(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") is None


@pytest.mark.parametrize("msgpack_mode", [False, True])
def test_session_bytes_are_what_python_socketio_sends_and_expects(msgpack_mode):
    wire = sio.session_bytes(msgpack_mode)
    assert (wire.ping, wire.pong) == (eio_packet.Packet(eio_packet.PING).encode().encode(), b"3")
    packet_class = socketio.msgpack_packet.MsgPackPacket if msgpack_mode else socketio.packet.Packet

    def python_socketio(ptype: int) -> bytes:
        encoded = packet_class(ptype, namespace="/").encode()
        return encoded if msgpack_mode else b"4" + encoded.encode()

    assert wire.connect == (OP_BINARY if msgpack_mode else OP_TEXT, python_socketio(0))
    assert wire.disconnect == (OP_BINARY if msgpack_mode else OP_TEXT, python_socketio(1))
    assert wire.ended == (b"1", b"41")
    assert (wire.event, wire.binary_event) == (b"42", b"45")
    assert sio.encode_event("e", b"x")[0].encode().startswith(wire.binary_event)


def test_connect_reply_accepted_refused_or_unexpected():
    sio.check_connect_reply('40{"sid":"abc"}', msgpack=False)
    sio.check_connect_reply(sio.encode_msgpack(sio.CONNECT, {"sid": "abc"}), msgpack=True)
    with pytest.raises(sio.SocketIOError, match=r"refused the namespace connect: .*nope"):
        sio.check_connect_reply('44{"message":"nope"}', msgpack=False)
    refused = sio.encode_msgpack(sio.CONNECT_ERROR, {"message": "nope"})
    with pytest.raises(sio.SocketIOError, match=r"refused the namespace connect: .*nope"):
        sio.check_connect_reply(refused, msgpack=True)
    for other in ('42["echo"]', b"\x01", "3"):
        with pytest.raises(sio.SocketIOError, match="unexpected message during"):
            sio.check_connect_reply(other, msgpack=False)


# --- reply contracts: the prefixes the fast client compares ----------------------------------


def test_event_prefix_is_how_python_socketio_starts_that_event():
    for name, data in (("response", "Echo: hi"), ("r", {"a": [1]}), ("é", None)):
        packet = socketio.packet.Packet(
            socketio.packet.EVENT, [name] if data is None else [name, data]
        )
        text = "4" + str(packet.encode())
        prefix = sio.event_prefix(name).decode()
        assert text.startswith(prefix)
        assert text[len(prefix)] in ",]"


def test_ack_parts_frame_an_event_with_any_ack_id():
    head, tail = sio.event_with_ack_parts("message", {"text": "hi"})
    for ack_id in (0, 7, 123456789):
        text = (head + str(ack_id).encode() + tail).decode()
        assert text == sio.encode_event("message", {"text": "hi"}, ack_id=ack_id)[0]
        (packet,) = sio.PacketDecoder().feed_text(text[1:])
        assert (packet.type, packet.id, packet.data) == (
            sio.EVENT,
            ack_id,
            ["message", {"text": "hi"}],
        )
    with pytest.raises(sio.SocketIOError):
        sio.event_with_ack_parts("message", {"data": b"\x00"})


def test_an_ack_starts_with_the_ack_prefix_then_its_id():
    for ack_id in (0, 42):
        ack = socketio.packet.Packet(socketio.packet.ACK, ["x"], id=ack_id)
        text = "4" + str(ack.encode())
        assert text.startswith(sio.ack_prefix().decode() + str(ack_id) + "[")
        assert text == sio.encode_ack(ack_id, "x")[0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('42["response","Echo: x"]', "event:response"),
        ('451-["pic",{"_placeholder":true,"num":0}]', "event:pic"),
        ('42["cut short', "frame"),
        ("43[1]", "frame"),
        ("2", "frame"),
    ],
)
def test_event_key_names_unexpected_events(text, key):
    found, prefix = sio.event_key(text.encode())
    assert found == key
    if prefix is not None:
        assert text.encode().startswith(prefix)
