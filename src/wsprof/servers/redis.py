"""A throwaway redis-server for the Redis broker workloads, with the launcher's guarantees.

python-socketio's Redis managers need a real broker; wsprof starts its own so
that its CPU can be reported as its own row and nothing outlives the run.
It listens on TCP loopback, not a unix socket: the decided URL form is
``redis://127.0.0.1:PORT/0`` and deployments reach their broker over TCP, so
the measured cost includes the TCP path a real broker costs. redis-server
cannot report a port-0 bind back, so we pick a free port, release it and pass
it on; if something takes it in between, redis-server exits with "Address
already in use" and we retry with another port. Readiness is a real
``PING`` -> ``+PONG`` plus ``INFO server`` naming our own pid (so a broker
that grabbed the port in the race is never mistaken for ours). CPU, the stderr
tail and teardown (SIGTERM, then SIGKILL) are the launcher's; the kernel
SIGKILLs redis-server if wsprof dies (PR_SET_PDEATHSIG set between fork and exec).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from wsprof.errors import WsprofError
from wsprof.profiling.pyspy import die_with_parent
from wsprof.servers.appserver import free_port
from wsprof.servers.launcher import ServerFailed, ServerProcess, StartupProblem, describe_exit

__all__ = ["RedisServer", "RedisUnavailable", "ServerFailed", "require_redis_server"]

INSTALL_HINT = (
    "redis-server is not installed: apt-get install redis-server (Debian/Ubuntu) "
    "or brew install redis (macOS)"
)
#: Bind races lost in a row before we give up (each one is a new free port).
BIND_ATTEMPTS = 5
_PROBE_TIMEOUT_S = 0.5
_ADDRESS_IN_USE = "Address already in use"
_PROCESS_ID = re.compile(rb"^process_id:(\d+)\r?$", re.MULTILINE)
_LOG_TAIL_LINES = 3


class RedisUnavailable(WsprofError):
    """redis-server is not on PATH; the message says how to install it."""


def require_redis_server() -> str:
    """The path of ``redis-server``, or RedisUnavailable with the install commands."""
    path = shutil.which("redis-server")
    if path is None:
        raise RedisUnavailable(INSTALL_HINT)
    return path


class RedisServer(ServerProcess):
    """A private redis-server on loopback (no persistence), as a context manager.

    Typical use::

        with RedisServer(cpu=1) as redis:
            before = redis.cpu_seconds()
            ...servers with redis_url=redis.url...
            broker_cpu = redis.cpu_seconds() - before

    The kernel ends it when the *thread* that started it exits (PR_SET_PDEATHSIG):
    start it from a thread that outlives it, as the main thread does.
    """

    def __init__(self, *, cpu: int | None = None, startup_timeout: float = 10.0) -> None:
        self.stack = "redis-server"
        self.options: dict[str, str] = {}
        self.mode = "redis"
        self.serializer = "none"
        self._cpu_request = cpu
        self._init_process(0, cpu, startup_timeout)
        self._executable = ""

    @property
    def url(self) -> str:
        """The ``redis://`` URL python-socketio's Redis managers connect to (database 0)."""
        if not self.port:
            raise RuntimeError("redis-server not started")
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """redis-server's command line: loopback, our port, no snapshots, no AOF, log to stdout."""
        return [
            self._executable or "redis-server",
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--databases",
            "1",
        ]

    def start(self) -> RedisServer:
        """Start redis-server on a free port; retry a port lost to a race, else ServerFailed."""
        self._executable = require_redis_server()
        for attempt in range(BIND_ATTEMPTS):
            if attempt:
                self._init_process(0, self._cpu_request, self.startup_timeout)
            self.port = free_port(self.host)
            try:
                super().start()
            except ServerFailed:
                if attempt + 1 < BIND_ATTEMPTS and _ADDRESS_IN_USE in self.stderr_tail(50):
                    continue
                raise
            return self
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _spawn_options(self) -> dict[str, Any]:
        # redis-server cannot set PR_SET_PDEATHSIG itself, so it is set between fork
        # and exec; its log (stdout) goes to the stderr file, which the launcher tails.
        return {
            "env": dict(os.environ),
            "stdout": self._stderr_file,
            "preexec_fn": die_with_parent(signal.SIGKILL),
        }

    def _become_ready(self, deadline: float) -> None:
        """PING -> +PONG, then INFO names our pid, within the deadline."""
        proc = self._require_started()
        last = "no answer"
        while True:
            if proc.poll() is not None:
                raise StartupProblem(
                    f"exited before it was ready ({describe_exit(proc.returncode)})"
                )
            try:
                pid = _ping_and_pid(self.host, self.port)
            except (OSError, ValueError) as exc:
                last = str(exc) or type(exc).__name__
            else:
                if pid != proc.pid:
                    raise StartupProblem(f"port {self.port} is served by another redis (pid {pid})")
                return
            if time.monotonic() >= deadline:
                raise StartupProblem(
                    f"did not answer PING on port {self.port} within "
                    f"{self.startup_timeout:g} s ({last})"
                )
            time.sleep(0.05)

    def _failure_message(self, reason: str) -> str:
        pid = self._proc.pid if self._proc is not None else "?"
        lines = [line.strip() for line in self.stderr_tail(20).splitlines() if line.strip()]
        tail = " | ".join(lines[-_LOG_TAIL_LINES:]) or "(its log was empty)"
        return f"redis-server (pid {pid}, port {self.port}) {reason}: {tail}"

    def __enter__(self) -> RedisServer:
        if self._proc is None:
            self.start()
        return self

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("running" if self._proc else "not started")
        return f"<RedisServer port={self.port} pid={self.pid} {state}>"


def _ping_and_pid(host: str, port: int) -> int:
    """One connection: PING must answer +PONG, then INFO server's process_id."""
    with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
        sock.sendall(b"PING\r\n")
        reply = _read_until(sock, lambda data: data.endswith(b"\r\n"))
        if reply != b"+PONG\r\n":
            raise ValueError(f"PING answered {reply[:80]!r}")
        sock.sendall(b"INFO server\r\n")
        info = _read_until(sock, _complete_bulk)
    match = _PROCESS_ID.search(info)
    if match is None:
        raise ValueError("INFO server named no process_id")
    return int(match.group(1))


def _complete_bulk(data: bytes) -> bool:
    """True once ``data`` holds a whole RESP bulk string (or an error line)."""
    if data.startswith(b"-"):
        return data.endswith(b"\r\n")
    header, sep, body = data.partition(b"\r\n")
    if not sep or not header.startswith(b"$"):
        return False
    return len(body) >= int(header[1:]) + 2


def _read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError(f"connection closed after {data[:80]!r}")
        data += chunk
    if data.startswith(b"-"):
        raise ValueError(data.decode(errors="replace").strip())
    return data
