# The WebSocket frame layer in C: parser state and the functions every product inlines.
# Same checks in the same order as wsprof.protocol.websocket.FrameParser; error codes
# are the ones protocol/websocket.py maps to texts (FRAME_ERRORS).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from wsprof._buffer cimport Buffer, buf_append


cdef enum Opcode:
    OP_CONT = 0x0
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA

cdef enum FrameError:
    E_NONE = 0
    E_RSV = 1
    E_FRAG_CTRL = 2
    E_OPCODE = 3
    E_MASKED = 4
    E_UNMASKED = 5
    E_CONT = 6
    E_NEWDATA = 7
    E_HIGHBIT = 8
    E_CTRL_LEN = 9
    E_TOO_BIG = 10
    E_UTF8 = 11
    E_NOMEM = 12

cdef enum:
    MAX_HEADER = 14         # 2 + 8 length bytes + 4 mask bytes
    MAX_CONTROL_PAYLOAD = 125

cdef struct WsParser:
    uint64_t max_size
    int expect_masked
    int err
    uint64_t err_arg
    int frag_op          # opcode of the message being reassembled, -1 if none
    Buffer frag


cdef inline void parser_init(WsParser* p, uint64_t max_size, int expect_masked) noexcept nogil:
    p.max_size = max_size
    p.expect_masked = expect_masked
    p.err = E_NONE
    p.frag_op = -1
    p.frag.len = 0


cdef inline void apply_mask(uint8_t* data, size_t n, const uint8_t* key) noexcept nogil:
    """XOR in place, eight bytes at a time (the key repeats every 4 bytes)."""
    cdef uint64_t k8, w
    cdef uint32_t k4
    cdef size_t i = 0
    memcpy(&k4, key, 4)
    k8 = (<uint64_t>k4 << 32) | k4
    while i + 8 <= n:
        memcpy(&w, data + i, 8)
        w ^= k8
        memcpy(data + i, &w, 8)
        i += 8
    while i < n:
        data[i] ^= key[i & 3]
        i += 1


cdef inline bint utf8_valid(const uint8_t* s, size_t n) noexcept nogil:
    """Strict UTF-8, as Python's decoder: no overlongs, surrogates or code points past U+10FFFF."""
    cdef size_t i = 0
    cdef uint64_t w
    cdef uint8_t c, c1
    while i < n:
        if i + 8 <= n:
            memcpy(&w, s + i, 8)
            if (w & 0x8080808080808080ULL) == 0:
                i += 8
                continue
        c = s[i]
        if c < 0x80:
            i += 1
        elif c < 0xC2:
            return False
        elif c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif c < 0xF0:
            if i + 2 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80:
                return False
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return False
            i += 3
        elif c < 0xF5:
            if i + 3 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
                return False
            i += 4
        else:
            return False
    return True


cdef inline int parse_fail(WsParser* p, int err, uint64_t arg) noexcept nogil:
    p.err = err
    p.err_arg = arg
    return -1


cdef inline int ws_next(WsParser* p, uint8_t* buf, size_t n, size_t* pos,
                        int* op, uint8_t** data, size_t* dlen) noexcept nogil:
    """Find the next complete message in ``buf[pos:n]``.

    Returns 1 with (op, data, dlen) set and ``pos`` past it, 0 when more bytes
    are needed, -1 on a protocol error (``p.err``). ``data`` points into ``buf``
    (unmasked in place) or into the reassembly buffer, valid until the next call.
    """
    cdef size_t i = pos[0]
    cdef size_t hlen, need
    cdef uint64_t length
    cdef int opcode, fin, masked, k
    cdef uint8_t b0, b1
    cdef uint8_t* payload
    while n - i >= 2:
        b0 = buf[i]
        b1 = buf[i + 1]
        if b0 & 0x70:
            return parse_fail(p, E_RSV, 0)
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        if opcode >= 8:
            if opcode > 10:
                return parse_fail(p, E_OPCODE, opcode)
            if not fin:
                return parse_fail(p, E_FRAG_CTRL, 0)
        elif opcode > 2:
            return parse_fail(p, E_OPCODE, opcode)
        masked = b1 & 0x80
        if masked and not p.expect_masked:
            return parse_fail(p, E_MASKED, 0)
        if not masked and p.expect_masked:
            return parse_fail(p, E_UNMASKED, 0)
        if opcode == OP_CONT:
            if p.frag_op < 0:
                return parse_fail(p, E_CONT, 0)
        elif opcode < 8 and p.frag_op >= 0:
            return parse_fail(p, E_NEWDATA, 0)
        length = b1 & 0x7F
        hlen = 2
        if length == 126:
            if n - i < 4:
                break
            length = (<uint64_t>buf[i + 2] << 8) | buf[i + 3]
            hlen = 4
        elif length == 127:
            if n - i < 10:
                break
            length = 0
            for k in range(8):
                length = (length << 8) | buf[i + 2 + k]
            hlen = 10
            if length >> 63:
                return parse_fail(p, E_HIGHBIT, 0)
        if opcode >= 8:
            if length > 125:
                return parse_fail(p, E_CTRL_LEN, length)
        elif p.frag.len + length > p.max_size:
            return parse_fail(p, E_TOO_BIG, p.frag.len + length)
        if masked:
            hlen += 4
        if n - i < hlen or n - i - hlen < length:
            break
        payload = buf + i + hlen
        if masked:
            apply_mask(payload, <size_t>length, buf + i + hlen - 4)
        i += hlen + <size_t>length
        if opcode >= 8 or (opcode != OP_CONT and fin):
            if opcode == OP_TEXT and not utf8_valid(payload, <size_t>length):
                return parse_fail(p, E_UTF8, 0)
            pos[0] = i
            op[0] = opcode
            data[0] = payload
            dlen[0] = <size_t>length
            return 1
        if opcode != OP_CONT:
            p.frag_op = opcode
        if buf_append(&p.frag, payload, <size_t>length) < 0:
            return parse_fail(p, E_NOMEM, p.frag.len + length)
        if fin:
            opcode = p.frag_op
            need = p.frag.len
            p.frag_op = -1
            p.frag.len = 0
            if opcode == OP_TEXT and not utf8_valid(p.frag.data, need):
                return parse_fail(p, E_UTF8, 0)
            pos[0] = i
            op[0] = opcode
            data[0] = p.frag.data
            dlen[0] = need
            return 1
    pos[0] = i
    return 0


cdef inline size_t frame_header(uint8_t* out, int b0, size_t n, const uint8_t* mask) noexcept nogil:
    """Write a frame header (with the mask key if any) and return its length."""
    cdef size_t h = 2
    cdef int mbit = 0x80 if mask != NULL else 0
    cdef int k
    out[0] = <uint8_t>b0
    if n < 126:
        out[1] = <uint8_t>(mbit | n)
    elif n < 65536:
        out[1] = <uint8_t>(mbit | 126)
        out[2] = <uint8_t>(n >> 8)
        out[3] = <uint8_t>(n & 0xFF)
        h = 4
    else:
        out[1] = <uint8_t>(mbit | 127)
        for k in range(8):
            out[2 + k] = <uint8_t>((<uint64_t>n >> (56 - 8 * k)) & 0xFF)
        h = 10
    if mask != NULL:
        memcpy(out + h, mask, 4)
        h += 4
    return h


cdef inline size_t write_frame(uint8_t* out, int b0, const uint8_t* data, size_t n,
                               const uint8_t* mask) noexcept nogil:
    """Write a whole frame (masked if ``mask``) into ``out``, which has room; its length."""
    cdef size_t h = frame_header(out, b0, n, mask)
    memcpy(out + h, data, n)
    if mask != NULL:
        apply_mask(out + h, n, mask)
    return h + n
