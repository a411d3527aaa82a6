"""Run a user's app under its production server, with the launcher's guarantees.

Unlike wsprof's own stacks, these servers print no READY line and cannot
report a port-0 bind back, so readiness is: the port accepts TCP, every
worker process exists, and a real WebSocket upgrade (or Engine.IO open +
Socket.IO connect) succeeds on the app's path. CPU, RSS and teardown are the
launcher's, over the whole process tree (gunicorn's and uvicorn's workers
included).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import time
from http import HTTPStatus
from typing import Any

import psutil

from wsprof.profiling.pyspy import die_with_parent
from wsprof.servers.appcmd import AppSpec, check_installed, check_spec, child_env, command
from wsprof.servers.launcher import HOST, SRC_DIR, ServerProcess, StartupProblem, describe_exit

#: Paths tried, in order, when the declared one does not upgrade.
_CANDIDATE_PATHS = ("/ws", "/", "/websocket", "/socket.io/")
_PROBE_ATTEMPT_S = 2.0
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b(:.*)?$")


def free_port(host: str = HOST) -> int:
    """A port the kernel reports free right now.

    uvicorn, hypercorn, gunicorn and socketio.run only log the port they bound
    (as free text), so with port 0 we could not learn where they listen. We
    bind port 0 ourselves, read the kernel's choice, release it and pass it
    on; if something takes it in between, the server fails to bind and says so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def last_error_line(stderr: str) -> str:
    """The line that says why: the last exception line of a traceback, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


class AppServerProcess(ServerProcess):
    """A user's app served by uvicorn / hypercorn / gunicorn / socketio.run, as a context manager."""

    def __init__(
        self, spec: AppSpec, *, cpu: int | None = None, startup_timeout: float = 30.0
    ) -> None:
        self.spec = check_spec(spec)
        self.stack = spec.label
        self.options = dict(spec.options)
        self.mode = spec.mode
        self.serializer = spec.serializer
        self.workers = spec.workers
        self._init_process(0, cpu, startup_timeout)

    @property
    def url(self) -> str:
        """The URL clients use: the app's path (with the Engine.IO query for Socket.IO)."""
        if not self.port:
            raise RuntimeError("server not started")
        return self._url(self.spec.path, self.mode)

    def _url(self, path: str, mode: str) -> str:
        base = f"ws://{self.host}:{self.port}{path}"
        if mode == "raw":
            return base
        return base + ("&" if "?" in path else "?") + "EIO=4&transport=websocket"

    def command(self) -> list[str]:
        """The production command line (port 0 until start() has chosen one)."""
        return command(self.spec, self.host, self.port)

    def start(self) -> AppServerProcess:
        """Check the server program is installed, choose a port, then start as the launcher does."""
        check_installed(self.spec)
        self.port = free_port(self.host)
        super().start()
        return self

    def _spawn_options(self) -> dict[str, Any]:
        # The real program cannot set PR_SET_PDEATHSIG itself, so it is set between
        # fork and exec; its stdout goes to the stderr file (nobody reads a pipe).
        return {
            "env": child_env(self.spec, SRC_DIR),
            "cwd": self.spec.directory,
            "stdout": self._stderr_file,
            "preexec_fn": die_with_parent(signal.SIGTERM),
        }

    def _become_ready(self, deadline: float) -> None:
        self._wait_listening(deadline)
        self._wait_workers(deadline)
        self._probe_app(deadline)

    def _exited(self, when: str) -> None:
        proc = self._require_started()
        if proc.poll() is not None:
            raise StartupProblem(f"exited {when} ({describe_exit(proc.returncode)})")

    def _wait_listening(self, deadline: float) -> None:
        while True:
            self._exited("before it was ready")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.25):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise StartupProblem(
                    f"was not listening on port {self.port} within {self.startup_timeout:g} s"
                )
            time.sleep(0.05)

    def _expected_children(self) -> int:
        if self.spec.server == "gunicorn":
            return self.workers
        if self.spec.server == "hypercorn":
            return self.workers  # hypercorn spawns its workers, even one
        if self.spec.server == "uvicorn" and self.workers > 1:
            return self.workers
        return 0

    def worker_pids(self) -> list[int]:
        """The tree's processes other than the first one and multiprocessing's helpers."""
        workers = []
        for process in self._remember_tree()[1:]:
            with contextlib.suppress(psutil.Error):
                if "resource_tracker" not in " ".join(process.cmdline()):
                    workers.append(process.pid)
        return workers

    def _wait_workers(self, deadline: float) -> None:
        expected = self._expected_children()
        while len(self.worker_pids()) < expected:
            self._exited("while its workers started")
            if time.monotonic() >= deadline:
                raise StartupProblem(
                    f"started {len(self.worker_pids())} of {expected} workers "
                    f"within {self.startup_timeout:g} s"
                )
            time.sleep(0.05)

    def _probe_app(self, deadline: float) -> None:
        """Upgrade on the app's path, retried while the server is alive (workers may still boot)."""
        from websockets.exceptions import InvalidStatus

        while True:
            attempt = min(deadline, time.monotonic() + _PROBE_ATTEMPT_S)
            try:
                if self.mode == "raw":
                    self._upgrade(self.url, attempt)
                else:
                    self._probe(attempt)
                return
            except StartupProblem as problem:
                if isinstance(problem.__cause__, InvalidStatus):
                    raise StartupProblem(self._no_upgrade(problem.__cause__)) from None
                self._exited("during the readiness probe")
                if time.monotonic() >= deadline:
                    raise StartupProblem(
                        f"did not answer on {self.url} within {self.startup_timeout:g} s "
                        f"(last try: {problem})"
                    ) from None
            except InvalidStatus as exc:
                raise StartupProblem(self._no_upgrade(exc)) from None
            time.sleep(0.1)

    def _upgrade(self, url: str, deadline: float) -> None:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        try:
            with connect(url, open_timeout=max(0.1, deadline - time.monotonic()), close_timeout=1):
                return
        except InvalidStatus:
            raise
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise StartupProblem(f"readiness probe on {url} failed: {exc!r}") from exc

    def _no_upgrade(self, exc: Any) -> str:
        response = exc.response
        reason = response.reason_phrase or _phrase(response.status_code)
        status = f"HTTP {response.status_code} {reason}".strip()
        return f"did not upgrade GET {self.spec.path} to a WebSocket ({status}); {self._suggest()}"

    def _suggest(self) -> str:
        """Try the usual paths (each bounded to 1 s) and name one that upgrades."""
        for path in _CANDIDATE_PATHS:
            mode = "socketio" if "socket.io" in path else "raw"
            if path == self.spec.path and mode == self.mode:
                continue
            try:
                self._upgrade(self._url(path, mode), time.monotonic() + 1.0)
            except Exception:
                continue
            extra = ' and mode = "socketio"' if mode != self.mode and mode == "socketio" else ""
            return f'try path = "{path}"{extra} (--path {path})'
        return "set path to the route your app accepts WebSockets on (--path)"

    def _failure_message(self, reason: str) -> str:
        pid = self._proc.pid if self._proc is not None else "?"
        message = f"app {self.spec.app} on {self.stack[4:]} (pid {pid}) {reason}"
        # Why it exited is in its stderr; a server that is up but refused us said it all.
        gone = any(word in reason for word in ("exited", "died", "workers", "did not answer"))
        why = last_error_line(self.stderr_tail(80)) if gone else ""
        if why and why not in reason:
            message += f": {why}"
        return message

    def __repr__(self) -> str:
        return f"<AppServerProcess {self.spec.app} {self.stack} port={self.port} pid={self.pid}>"
