"""Count per-message events inside a server, for the counted closure (issue 10 item 4).

Runs inside the server process when ``WSPROF_COUNT_FILE`` is set (the
launcher's ``instrumented`` start): :func:`install` wraps the places where a
stack's per-message work happens and counts calls, and every SIGUSR2 writes
the running totals to that file as JSON (the runner signals at a window's start
and end; counts over the window = end - start). The counters add Python calls
to the message path, so they run only in a separate instrumented window whose
CPU figures are never reported as the server's.

What is counted, and where:

- ``tasks``: asyncio task creations (a task factory set on every loop made
  after install, and on the running one; works on uvloop too), ``task_steps``: each resumption of such a task's
  coroutine (its ``send``/``throw``), counted through a thin coroutine wrapper.
- ``callbacks``: ``asyncio.events.Handle._run`` on the pure-Python loop. uvloop
  runs its callbacks in C, where Python cannot count them: there ``callbacks``
  stays absent and ``task_steps`` is what is counted instead.
- ``greenlet_switches``: ``greenlet.settrace`` events ``switch`` and ``throw``.
- ``json_dumps``/``json_loads``/``msgpack_dumps``/``msgpack_loads``: the
  serializer calls python-socketio and python-engineio make (their packet
  classes' ``json`` attribute and the msgpack packet module's ``msgpack``).
- ``eio_encode``/``eio_decode``/``sio_encode``/``sio_decode``: Engine.IO and
  Socket.IO packet encode/decode.
- ``ws_frames_sent``/``ws_frames_received``: the websockets library's frame
  layer (sans-I/O and legacy) and wsproto's (simple-websocket, gevent's, uses
  wsproto); eventlet's own ``eventlet.websocket`` frames are not counted.

The dump happens in the signal handler itself, not in a thread: Python runs the
handler between two bytecodes of the main thread, where every counter is
bumped, so the snapshot is a consistent instant; a helper thread would be a
green thread after eventlet/gevent patching (and so wait on the hub it
measures) and would need the original thread module of each library. Writing a
fresh file (write + rename) reenters no buffered stream the interrupted code
might be using. Both asyncio and uvloop run Python signal handlers promptly
through their wakeup fd; eventlet's hub wakes from epoll on EINTR; gevent's
loop checks signals on each iteration, and a window under load iterates often.
"""

from __future__ import annotations

import atexit
import collections.abc
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

COUNT_FILE_ENV = "WSPROF_COUNT_FILE"

counts: Counter[str] = Counter()
_installed: list[str] = []
_loop_kinds: set[str] = set()  # "asyncio" / "uvloop": the loops counting was set on
_seq = 0


def _counted(key: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[key] += 1
        return func(*args, **kwargs)

    return wrapper


def _wrap_method(cls: type, name: str, key: str) -> None:
    """Count calls of ``cls.name`` if the class itself defines it (subclasses are wrapped apart)."""
    func = cls.__dict__.get(name)
    if func is None:
        return
    if isinstance(func, classmethod):
        cls_func = func.__func__
        setattr(cls, name, classmethod(_counted(key, cls_func)))
    else:
        setattr(cls, name, _counted(key, func))


class _CountingSerializer:
    """Stands in for a serializer module: counts ``dumps``/``loads``, passes everything else."""

    def __init__(self, module: Any, prefix: str) -> None:
        self._module = module
        self.dumps = _counted(f"{prefix}_dumps", module.dumps)
        self.loads = _counted(f"{prefix}_loads", module.loads)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _StepCounter(collections.abc.Coroutine[Any, Any, Any]):
    """A task's coroutine seen through ``send``/``throw``: one call is one task step."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        counts["task_steps"] += 1
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        counts["task_steps"] += 1
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._coro.__await__()

    def __repr__(self) -> str:
        return repr(self._coro)


def _task_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    import asyncio

    counts["tasks"] += 1
    return asyncio.Task(_StepCounter(coro), loop=loop, **kwargs)


def count_loop(loop: Any) -> None:
    """Count task creations and steps on ``loop`` (asyncio or uvloop), unless it has a factory."""
    if loop.get_task_factory() is None:
        loop.set_task_factory(_task_factory)
        _loop_kinds.add("uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio")


def _count_new_loops(cls: type) -> None:
    """Every loop of ``cls`` counts from its creation (before its first task)."""
    original: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        count_loop(self)

    type.__setattr__(cls, "__init__", init)


def _install_asyncio() -> None:
    """Count on every loop made from now on (asyncio's and uvloop's), and the pure loop's callbacks."""
    import asyncio
    import asyncio.base_events
    import asyncio.events

    _count_new_loops(asyncio.base_events.BaseEventLoop)
    try:
        import uvloop

        _count_new_loops(uvloop.Loop)  # a Python subclass of uvloop's C loop
    except ImportError:
        pass
    with contextlib.suppress(RuntimeError):
        count_loop(asyncio.get_running_loop())
    _wrap_method(asyncio.events.Handle, "_run", "callbacks")
    _installed.append("asyncio")


def _greenlet_trace(event: str, args: Any) -> None:
    if event in ("switch", "throw"):
        counts["greenlet_switches"] += 1


def _install_greenlet() -> None:
    import greenlet

    greenlet.settrace(_greenlet_trace)
    _installed.append("greenlet")


def _install_socketio() -> None:
    """Packet encode/decode and the serializer calls of python-engineio and python-socketio."""
    import engineio.packet
    import socketio.msgpack_packet
    import socketio.packet

    for cls, prefix in (
        (engineio.packet.Packet, "eio"),
        (socketio.packet.Packet, "sio"),
        (socketio.msgpack_packet.MsgPackPacket, "sio"),
    ):
        _wrap_method(cls, "encode", f"{prefix}_encode")
        _wrap_method(cls, "decode", f"{prefix}_decode")
    for cls in (engineio.packet.Packet, socketio.packet.Packet):
        if not isinstance(cls.json, _CountingSerializer):
            cls.json = _CountingSerializer(cls.json, "json")
    module = socketio.msgpack_packet
    if not isinstance(module.msgpack, _CountingSerializer):
        module.msgpack = _CountingSerializer(module.msgpack, "msgpack")
    _installed.append("socketio")


def _install_frames() -> None:
    """WebSocket frames where a Python frame layer exists (websockets, wsproto)."""
    try:
        import websockets.frames

        _wrap_method(websockets.frames.Frame, "serialize", "ws_frames_sent")
        _wrap_method(websockets.frames.Frame, "parse", "ws_frames_received")
        import websockets.legacy.framing

        # Legacy write goes through frames.Frame.serialize; its read parses on its own.
        _wrap_method(websockets.legacy.framing.Frame, "read", "ws_frames_received")
        _installed.append("websockets")
    except ImportError:
        pass
    try:
        import wsproto.frame_protocol as wsproto_frames

        _wrap_method(wsproto_frames.FrameProtocol, "_serialize_frame", "ws_frames_sent")
        original = wsproto_frames.FrameProtocol.received_frames

        def received_frames(self: Any) -> Iterator[Any]:
            for frame in original(self):
                counts["ws_frames_received"] += 1
                yield frame

        setattr(wsproto_frames.FrameProtocol, "received_frames", received_frames)  # noqa: B010
        _installed.append("wsproto")
    except ImportError:
        pass


def snapshot() -> dict[str, Any]:
    """The running totals, with what was counted and on which loops."""
    return {
        "seq": _seq,
        "pid": os.getpid(),
        "time": time.monotonic(),
        "counters": sorted(_installed),
        "loops": sorted(_loop_kinds),
        "callbacks_countable": "asyncio" in _installed and "uvloop" not in _loop_kinds,
        "counts": dict(counts),
    }


def dump(path: Path) -> None:
    """Write the totals to ``path`` atomically (a fresh file, then a rename)."""
    global _seq
    _seq += 1
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(snapshot()))
    os.replace(tmp, path)


def install(path: Path) -> None:
    """Install every counter this process's stack can use, and the SIGUSR2 / exit dumps.

    Called after green monkey-patching and after the app is built (python-socketio
    sets its packet classes' ``json`` when the server is made), before serving.
    """
    if "greenlet" in sys.modules:
        _install_greenlet()
    if "asyncio" in sys.modules:
        _install_asyncio()
    if "engineio" in sys.modules:
        _install_socketio()
    _install_frames()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        dump(path)

    signal.signal(signal.SIGUSR2, on_signal)
    atexit.register(dump, path)


def install_from_env() -> bool:
    """Install when ``WSPROF_COUNT_FILE`` names a file; True if it did."""
    value = os.environ.get(COUNT_FILE_ENV)
    if not value:
        return False
    install(Path(value))
    return True


def request_counts(pid: int, path: Path, after_seq: int, timeout: float = 3.0) -> dict[str, Any]:
    """Signal the server for its totals and return them once a dump newer than ``after_seq`` lands.

    Runs in the runner. Raises TimeoutError if the server did not answer in time.
    """
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        if data.get("seq", 0) > after_seq:
            return data
        time.sleep(0.01)
    raise TimeoutError(f"server {pid} wrote no counts to {path} within {timeout:.0f} s")


def difference(start: dict[str, Any], end: dict[str, Any]) -> dict[str, int]:
    """Counts over a window: end - start, every key of either."""
    a, b = start.get("counts", {}), end.get("counts", {})
    return {key: int(b.get(key, 0)) - int(a.get(key, 0)) for key in sorted(set(a) | set(b))}
