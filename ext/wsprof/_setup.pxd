# Connection set-up (implemented in _setup.pyx): the bytes a load run sends, built once, and
# the steps each load-client connection takes once before the load, in Python. The load loop
# (_loadclient.pyx) owns the epoll loop and calls the steps as a connection's bytes arrive;
# each step advances ``Conn.state``.
cimport cython

from wsprof._conn cimport Conn
from wsprof._session cimport Session


@cython.final
cdef class Setup:
    cdef str host_port
    cdef object family
    cdef object addr
    cdef str host
    cdef int port
    cdef str path
    cdef bint socketio
    cdef bint msgpack
    cdef list keys               # each connection's Sec-WebSocket-Key
    # The bytes the load loop sends (masked frames) and views for the run.
    cdef bytes mask_key
    cdef bytes unit              # one message: 1 or 2 frames
    cdef bytes goodbye           # (Socket.IO disconnect +) WebSocket Close
    cdef object session          # wsprof.protocol.socketio.session_bytes(), Socket.IO only
    cdef bytes pong
    cdef bytes connect           # the namespace connect
    cdef Session sio             # C views of session's bytes and pong, valid while this lives

    cdef int connect_tcp(self, Conn* c, int epfd, int idx) except -1
    cdef bytes upgrade_request(self, Conn* c, int idx)
    cdef int upgrade_response(self, Conn* c, int idx) except -1
    cdef bytes message(self, Conn* c, int op, bytes data)
