"""Start a server stack in its own process, watch it, measure it, and tear it down.

The scenario runner needs three guarantees from this module: a server is
really serving before the first message is timed (READY line *and* a real
WebSocket / Engine.IO handshake), its CPU time comes from the kernel's own
accounting, and no process outlives the run, whatever happens (errors,
timeouts, Ctrl-C, the parent dying).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from wsprof.errors import MeasurementError
from wsprof.protocol import socketio
from wsprof.protocol.websocket import ProtocolError
from wsprof.servers.counting import COUNT_FILE_ENV
from wsprof.servers.serve import EXIT_BAD_ARGS, EXIT_BIND_FAILED, PARENT_PID_ENV, READY_PREFIX
from wsprof.servers.stacks import (
    STACKS,
    StackOptionError,
    get_stack,
    stack_names,
    validate_options,
)

__all__ = [
    "STACKS",
    "ServerFailed",
    "ServerProcess",
    "StackOptionError",
    "stack_names",
    "validate_options",
]

HOST = "127.0.0.1"
#: SIGTERM lets uvicorn/websockets close connections; after this we SIGKILL.
STOP_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 5.0
_STDERR_TAIL_BYTES = 64 * 1024
_READY_RE = re.compile(rf"^{READY_PREFIX} port=(\d+) pid=(\d+)$")
#: The directory holding the ``wsprof`` package, put first on the child's path.
SRC_DIR = str(Path(__file__).resolve().parents[2])


class ServerFailed(MeasurementError, RuntimeError):
    """A server did not start, or died, or misbehaved; the message ends with its stderr tail."""


class StartupProblem(Exception):
    """Why a readiness step gave up; start() turns it into ServerFailed once the tree is gone."""


class ServerProcess:
    """One running server stack, as a context manager that always cleans up.

    Typical use::

        with ServerProcess("socketio-asgi", {"serializer": "orjson"}, cpu=0) as server:
            before = server.cpu_seconds()
            ...drive server.url...
            used = server.cpu_seconds() - before
    """

    def __init__(
        self,
        stack: str,
        options: Mapping[str, str] | None = None,
        *,
        port: int = 0,
        cpu: int | None = None,
        startup_timeout: float = 20.0,
        instrumented: bool = False,
    ) -> None:
        """``instrumented`` runs the server with the per-message counters of
        :mod:`wsprof.servers.counting`, dumping to ``count_file`` on SIGUSR2: its
        CPU figures include the counters' cost, so it never serves a clean window.
        """
        self.stack = stack
        self.options: dict[str, str] = validate_options(stack, options or {})
        spec = get_stack(stack)
        self.mode: str = spec.mode
        self.serializer: str = self.options.get("serializer", "none")
        self._init_process(port, cpu, startup_timeout)
        self.instrumented = instrumented

    def _init_process(self, port: int, cpu: int | None, startup_timeout: float) -> None:
        """The state every server process has, whatever it serves."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        if cpu is not None and cpu not in os.sched_getaffinity(0):
            allowed = ", ".join(str(c) for c in sorted(os.sched_getaffinity(0)))
            raise ValueError(f"cpu {cpu} is not available to this process (allowed: {allowed})")
        if startup_timeout <= 0:
            raise ValueError("startup_timeout must be positive")
        self.requested_port = port
        self.cpu = cpu
        self.startup_timeout = startup_timeout
        self.host = HOST
        #: The bound port, known once the server is ready (0 before).
        self.port = 0
        #: The server's PID, known as soon as it is spawned (0 before).
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: IO[bytes] | None = None
        self._stopped = False
        self._final_stderr: bytes | None = None
        self._known: dict[int, psutil.Process] = {}
        self._task_ns: dict[tuple[int, int], int] = {}
        self._task_ticks: dict[tuple[int, int], tuple[int, int]] = {}
        self._use_schedstat = os.path.exists("/proc/self/task")
        self.instrumented = False
        #: Where an instrumented server writes its counts (None when not instrumented).
        self.count_file: Path | None = None

    # ----------------------------------------------------------------- start

    @property
    def url(self) -> str:
        """The ``ws://`` URL a client connects to (Engine.IO v4 WebSocket URL for Socket.IO)."""
        if not self.port:
            raise RuntimeError("server not started")
        if self.mode == "raw":
            return f"ws://{self.host}:{self.port}/ws"
        return f"ws://{self.host}:{self.port}/socket.io/?EIO=4&transport=websocket"

    def command(self) -> list[str]:
        """The exact command line the server runs with (for results' environment block)."""
        cmd = [sys.executable, "-m", "wsprof.servers.serve", "--stack", self.stack]
        cmd += ["--host", self.host, "--port", str(self.requested_port)]
        for key, value in self.options.items():
            cmd += ["--opt", f"{key}={value}"]
        return cmd

    def start(self) -> ServerProcess:
        """Spawn the server and return once a real client handshake has succeeded.

        On any failure the process tree is gone before ``ServerFailed`` is raised.
        """
        if self._proc is not None:
            raise RuntimeError("ServerProcess.start() called twice")
        if self.instrumented:
            self.count_file = Path(tempfile.mkdtemp(prefix="wsprof-counts-")) / "counts.json"
        deadline = time.monotonic() + self.startup_timeout
        self._stderr_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as self
            prefix=f"wsprof-{file_safe(self.stack)}-", suffix=".stderr"
        )
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stderr=self._stderr_file,
            start_new_session=True,
            close_fds=True,
            **self._spawn_options(),
        )
        self.pid = self._proc.pid
        try:
            if self.cpu is not None:
                os.sched_setaffinity(self._proc.pid, {self.cpu})
            self._become_ready(deadline)
        except StartupProblem as problem:
            self.stop()
            raise ServerFailed(self._failure_message(str(problem))) from None
        except BaseException:
            self.stop()
            raise
        self._remember_tree()
        return self

    def _spawn_options(self) -> dict[str, Any]:
        """Popen's environment (and, for subclasses, cwd and preexec_fn)."""
        env = dict(os.environ)
        env[PARENT_PID_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC_DIR, env.get("PYTHONPATH", "")) if p)
        env.pop(COUNT_FILE_ENV, None)
        if self.count_file is not None:
            env[COUNT_FILE_ENV] = str(self.count_file)
        return {"env": env, "stdout": subprocess.PIPE}

    def _become_ready(self, deadline: float) -> None:
        """The READY line, then one real client handshake."""
        self._wait_ready(deadline)
        self._probe(deadline)

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        buffered = b""
        while b"\n" not in buffered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupProblem(f"was not ready within {self.startup_timeout:g} s")
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise StartupProblem(self._early_exit_reason(deadline))
            buffered += chunk
            if len(buffered) > 4096:
                raise StartupProblem(f"wrote unexpected output to stdout: {buffered[:200]!r}")
        line = buffered.split(b"\n", 1)[0].decode(errors="replace").strip()
        match = _READY_RE.match(line)
        if not match:
            raise StartupProblem(f"printed {line!r} instead of the {READY_PREFIX} line")
        if int(match.group(2)) != proc.pid:
            raise StartupProblem(f"reported pid {match.group(2)}, but we started pid {proc.pid}")
        self.port = int(match.group(1))
        proc.stdout.close()

    def _early_exit_reason(self, deadline: float) -> str:
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            return "closed its stdout before it was ready"
        if code == EXIT_BIND_FAILED:
            return (
                f"could not bind port {self.requested_port} on {self.host} "
                "(the port could not be bound; is it already in use?)"
            )
        if code == EXIT_BAD_ARGS:
            return "rejected its command line"
        return f"exited before it was ready ({describe_exit(code)})"

    def _probe(self, deadline: float) -> None:
        """One real handshake: a WebSocket echo, or Engine.IO open + Socket.IO connect."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        remaining = max(0.1, deadline - time.monotonic())
        try:
            with connect(self.url, open_timeout=remaining, close_timeout=1.0) as ws:
                if self.mode == "raw":
                    ws.send("wsprof-probe")
                    reply = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                    if reply != "wsprof-probe":
                        raise StartupProblem(f"probe echo returned {reply!r}")
                    return
                opening = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                if not (isinstance(opening, str) and opening.startswith("0{")):
                    raise StartupProblem(f"Engine.IO open packet expected, got {opening!r:.200}")
                ws.send(self._socketio_connect_packet())
                reply = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                if not self._is_socketio_connect_reply(reply):
                    raise StartupProblem(f"Socket.IO connect reply expected, got {reply!r:.200}")
        except (OSError, TimeoutError, WebSocketException) as exc:
            if self._proc is not None and self._proc.poll() is not None:
                raise StartupProblem(
                    f"died during the readiness probe ({describe_exit(self._proc.returncode)})"
                ) from exc
            raise StartupProblem(f"readiness probe on {self.url} failed: {exc!r}") from exc

    def _socketio_connect_packet(self) -> str | bytes:
        if self.serializer == "msgpack":
            return socketio.encode_connect_msgpack()
        return socketio.encode_connect()

    def _is_socketio_connect_reply(self, reply: str | bytes) -> bool:
        try:
            socketio.check_connect_reply(reply, msgpack=self.serializer == "msgpack")
        except ProtocolError:
            return False
        return True

    # ----------------------------------------------------------- watching

    def check_alive(self) -> None:
        """Raise ServerFailed (with the stderr tail) if the server has exited."""
        proc = self._require_started()
        code = proc.poll()
        if code is not None:
            raise ServerFailed(self._failure_message(f"died mid-run ({describe_exit(code)})"))

    def pids(self) -> list[int]:
        """PIDs of the live process tree (the server first), e.g. for py-spy."""
        return [p.pid for p in self._remember_tree()]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the whole process tree since it started.

        Source: the kernel's CFS accounting, ``/proc/PID/task/TID/schedstat``
        (first field, nanoseconds) summed over every thread of every process
        in the tree. ``/proc/PID/schedstat`` alone would cover only the main
        thread, and ``/proc/PID/stat`` ticks at 10 ms. A thread's last seen
        value is kept after it exits, so the figure never goes backwards; only
        CPU used between our last sample and a thread's exit can be missed.
        Without ``/proc`` it falls back to psutil ``cpu_times()`` (tick precision).
        """
        self._require_started()
        for process in self._remember_tree():
            if self._use_schedstat:
                self._sample_schedstat(process.pid)
            else:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                ns = int((times.user + times.system) * 1e9)
                key = (process.pid, 0)
                self._task_ns[key] = max(ns, self._task_ns.get(key, 0))
        return sum(self._task_ns.values()) / 1e9

    def cpu_seconds_by_pid(self) -> dict[int, float]:
        """:meth:`cpu_seconds` split by process (e.g. to see that every worker worked)."""
        self.cpu_seconds()
        by_pid: dict[int, float] = {}
        for (pid, _tid), ns in self._task_ns.items():
            by_pid[pid] = by_pid.get(pid, 0.0) + ns / 1e9
        return by_pid

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the whole tree, every thread, since it started.

        The kernel's own split, ``utime``/``stime`` of ``/proc/PID/task/TID/stat``
        (clock ticks, 10 ms): what no sampler of Python stacks can see is how
        much of the server's time the kernel spent on its behalf (socket
        syscalls). A thread's last seen ticks are kept after it exits, as
        :meth:`cpu_seconds` does. Without ``/proc``: psutil ``cpu_times()``.
        """
        self._require_started()
        for process in self._remember_tree():
            if self._use_schedstat:
                sample_task_ticks(process.pid, self._task_ticks)
                continue
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            ticks = (round(times.user * CLOCK_TICKS), round(times.system * CLOCK_TICKS))
            self._task_ticks[(process.pid, 0)] = ticks
        return ticks_split(self._task_ticks)

    def _sample_schedstat(self, pid: int) -> None:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                    ns = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            key = (pid, int(tid))
            if ns > self._task_ns.get(key, -1):
                self._task_ns[key] = ns

    def rss_bytes(self) -> int:
        """Resident set size of the whole process tree, in bytes (psutil, from /proc)."""
        self.check_alive()
        total = 0
        for process in self._remember_tree():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def stderr_tail(self, n: int = 20) -> str:
        """The last ``n`` lines the server wrote to stderr (still available after stop())."""
        data = self._final_stderr if self._final_stderr is not None else self._read_stderr()
        lines = data.decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def _read_stderr(self) -> bytes:
        if self._stderr_file is None or self._stderr_file.closed:
            return b""
        fd = self._stderr_file.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_TAIL_BYTES)
        # pread: the child shares this file's offset, so we must not move it.
        return os.pread(fd, size - start, start)

    def _failure_message(self, reason: str) -> str:
        pid = self._proc.pid if self._proc is not None else "?"
        tail = self.stderr_tail(20)
        body = tail if tail else "(its stderr was empty)"
        return (
            f"server {self.stack!r} (pid {pid}) {reason}\n--- last lines of its stderr ---\n{body}"
        )

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc

    def _remember_tree(self) -> list[psutil.Process]:
        """The live tree, and remember every process ever seen in it (for stop())."""
        proc = self._proc
        if proc is None:
            return []
        live: list[psutil.Process] = []
        main = self._known.get(proc.pid)
        if main is None and proc.returncode is None:
            try:
                main = psutil.Process(proc.pid)
                self._known[proc.pid] = main
            except psutil.NoSuchProcess:
                main = None
        if main is not None and main.is_running():
            live.append(main)
            try:
                for child in main.children(recursive=True):
                    self._known.setdefault(child.pid, child)
            except psutil.Error:
                pass
        live += [p for pid, p in self._known.items() if pid != proc.pid and p.is_running()]
        return live

    # ------------------------------------------------------------- stopping

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left. Idempotent.

        Every process seen in the tree is tracked by a psutil handle (which
        detects PID reuse), and the group is signalled only while the server
        is unreaped, so nothing we did not start can be hit.
        """
        proc = self._proc
        if proc is None or self._stopped:
            return
        self._stopped = True
        if self._use_schedstat and proc.returncode is None:
            self._sample_schedstat(proc.pid)
        tree = self._remember_tree()
        try:
            self._signal_tree(signal.SIGTERM, tree)
            self._wait_tree(tree, STOP_GRACE_SECONDS)
        finally:
            self._signal_tree(signal.SIGKILL, tree)
            self._wait_tree(tree, KILL_WAIT_SECONDS)
            if proc.stdout is not None and not proc.stdout.closed:
                proc.stdout.close()
            self._final_stderr = self._read_stderr()
            if self._stderr_file is not None:
                self._stderr_file.close()
            if self.count_file is not None:
                shutil.rmtree(self.count_file.parent, ignore_errors=True)

    def _signal_tree(self, sig: signal.Signals, tree: list[psutil.Process]) -> None:
        proc = self._proc
        assert proc is not None
        if proc.returncode is None:  # unreaped: its PID (= our process group) is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        for process in tree:
            try:
                if process.is_running():
                    process.send_signal(sig)
            except psutil.Error:
                pass

    def _wait_tree(self, tree: list[psutil.Process], timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        others = [p for p in tree if p.pid != proc.pid]
        if others:
            psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ServerProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("running" if self._proc else "not started")
        return (
            f"<ServerProcess {self.stack} {self.options} port={self.port} pid={self.pid} {state}>"
        )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Ticks per second of ``utime``/``stime`` in ``/proc/.../stat``."""


def sample_task_ticks(pid: int, seen: dict[tuple[int, int], tuple[int, int]]) -> None:
    """Add every thread of ``pid`` to ``seen``: (pid, tid) -> (utime, stime) ticks, never less.

    Fields 14 and 15 of ``stat``, counted after the command name's closing
    parenthesis (a name may hold spaces and parentheses).
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            user, system = int(fields[11]), int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
        key = (pid, int(tid))
        old_user, old_system = seen.get(key, (0, 0))
        seen[key] = (max(user, old_user), max(system, old_system))


def ticks_split(seen: dict[tuple[int, int], tuple[int, int]]) -> tuple[float, float]:
    """(user, system) seconds of the threads in ``seen``."""
    user = sum(u for u, _ in seen.values())
    system = sum(s for _, s in seen.values())
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def tree_cpu_split(pid: int, seen: dict[tuple[int, int], tuple[int, int]]) -> tuple[float, float]:
    """:meth:`ServerProcess.cpu_split` for a process wsprof did not start (``profile --pid``).

    ``seen`` carries the threads between calls; children are found by psutil.
    """
    try:
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        pids = [pid]
    for p in pids:
        sample_task_ticks(p, seen)
    return ticks_split(seen)


def file_safe(name: str) -> str:
    """``name`` usable inside a temporary file's name."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
