"""Run ``py-spy record`` against a live process tree and classify its failures.

The only I/O module of :mod:`wsprof.profiling`. Every run is bounded by a
timeout and py-spy never outlives the call. Failures map onto exceptions
so that a scenario runner can mark attribution unavailable and still
report its clean measurements.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsprof.errors import MeasurementError, WsprofError

DEFAULT_RATE_HZ = 500
"""py-spy samples per second unless told otherwise: 2 ms apart, enough samples in a few seconds
for minor layers, at a cost the profiled window (not the clean one) absorbs."""

NATIVE_RATE_HZ = 20
"""The default rate with ``--native``. py-spy reads native stacks only by pausing the process
(no ``--nonblocking``) while it unwinds them: about 2 ms of py-spy CPU per sample here (0.5 ms
nonblocking). Profiled over clean throughput, adjacent 6 s windows, medians of 3, 2 cores:
socketio-asgi 1.00 at 20 Hz, 0.77 at 50 Hz; starlette-raw 0.97 at 20 Hz, 0.58 at 50 Hz. So
20 Hz, and the window grows instead (:func:`native_window_s`)."""

NATIVE_MIN_SAMPLES = 2000
"""Samples a native recording aims for: enough for the shares of the dominant layers."""

NATIVE_WINDOW_MARGIN_S = 2.0
"""Added to the native window for py-spy's start-up (it loads the native symbol tables first)."""


NATIVE_MAX_WINDOW_S = 600.0
"""The longest native window a scenario sizes for itself (a mostly idle server would need more)."""


def native_window_s(rate: int, busy: float = 1.0) -> float:
    """The native profiled window for >= 2,000 samples: ``ceil(2000 / (rate x busy))`` s plus a
    margin, at most NATIVE_MAX_WINDOW_S. py-spy keeps only samples where the server is
    running, so a server busy ``busy`` of the time needs a window 1 / busy times longer."""
    busy = min(1.0, max(busy, 0.01))
    return min(
        NATIVE_MAX_WINDOW_S, math.ceil(NATIVE_MIN_SAMPLES / (rate * busy)) + NATIVE_WINDOW_MARGIN_S
    )


PTRACE_HINT = (
    "grant ptrace: run as root, or in Docker add `--cap-add SYS_PTRACE`, "
    "or allow it host-wide with `sudo sysctl kernel.yama.ptrace_scope=0`"
)


class ProfilerUnavailable(WsprofError):
    """py-spy cannot run here at all (binary missing, no ptrace permission)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PyspyNotFound(ProfilerUnavailable):
    """No py-spy binary on PATH or next to the running interpreter."""


class PtraceDenied(ProfilerUnavailable):
    """The kernel refused py-spy access to the target's memory."""


class TargetError(WsprofError):
    """The PID given cannot be profiled (absent, or not Python)."""


class ProcessNotFound(TargetError):
    """No process has this PID."""


class NotAPythonProcess(TargetError):
    """The PID exists but py-spy finds no Python interpreter in it."""


class RecordingFailed(MeasurementError):
    """py-spy started but did not produce a profile."""


@dataclass(frozen=True)
class Recording:
    """What one ``py-spy record`` run produced."""

    path: Path
    samples: int | None
    errors: int | None
    seconds: float
    stderr: str


STOP_MARGIN_S = 20.0
"""How long past its duration a recording may run before wsprof kills py-spy."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child end (``sig``) when wsprof ends, however it ends.

    PR_SET_PDEATHSIG survives exec, so py-spy and the throwaway children of
    :func:`check_ptrace` cannot outlive a SIGKILLed or SIGTERMed wsprof. The
    kernel sends it when the *thread* that started the child exits: start
    children from a thread that outlives them (the main thread does). If
    wsprof died between fork and prctl, the child exits at once.
    """
    parent = os.getpid()
    prctl = _prctl()  # looked up here: no dlopen between fork and exec

    def preexec() -> None:
        if prctl is None:  # not Linux: the timeouts still bound the child
            return
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@functools.cache
def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _on_cpus_of(pid: int, then: Callable[[], None]) -> Callable[[], None]:
    """A ``preexec_fn`` that runs py-spy on the CPUs ``pid`` may use, then ``then``.

    In blocking (native) mode the target is stopped while py-spy unwinds each sample:
    on the target's own (now idle) core py-spy runs at once, whereas on a core shared
    with a busy load client every stop waits for a time slice (measured here: 32%
    throughput lost at 20 Hz beside the client vs a few % on the server's core).
    """
    try:
        cpus = os.sched_getaffinity(pid)
    except OSError:  # gone, or not ours to read: the recording reports it
        return then

    def preexec() -> None:
        os.sched_setaffinity(0, cpus)
        then()

    return preexec


def partial_path(path: Path) -> Path:
    """Where an interrupted recording goes: ``x.folded`` -> ``x.partial.folded``."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def find_pyspy() -> str:
    """Locate py-spy: PATH first, then the interpreter's own bin directory (a venv)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise PyspyNotFound(
        "py-spy not found on PATH or next to the Python interpreter; install it with `pip install py-spy`"
    )


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_target(pid: int) -> None:
    """Refuse a PID whose profile would not be the server's own.

    py-spy follows child processes, so PID 1 means every process on the
    machine, and any ancestor of wsprof means wsprof itself and everything
    beside it; wsprof's own process only ever shows wsprof waiting for py-spy.
    (A server wsprof started, its child, is fine: the scenario runner does that.)
    """
    import psutil

    if pid == 1:
        raise TargetError(
            "refusing to profile PID 1 (init): py-spy follows child processes, so that would "
            "record every Python process on the machine; give the server's own PID"
        )
    if pid <= 0:
        raise TargetError(f"PID {pid} is not a process ID")
    me = psutil.Process()
    if pid == me.pid:
        raise TargetError(f"refusing to profile PID {pid}: that is this wsprof process")
    try:
        ancestors = {p.pid: p for p in me.parents()}
    except psutil.Error:
        ancestors = {}
    if pid in ancestors:
        try:
            name = ancestors[pid].name()
        except psutil.Error:
            name = "?"
        raise TargetError(
            f"refusing to profile PID {pid} ({name}): it is an ancestor of this wsprof, and "
            "py-spy follows child processes, so it would record wsprof and its siblings"
        )


_PERM_RE = re.compile(r"permission denied|operation not permitted|EPERM|ptrace", re.IGNORECASE)
_NOT_PY_RE = re.compile(
    r"failed to find python version|failed to find a python interpreter|not a python|"
    r"failed to find python interpreter|no python",
    re.IGNORECASE,
)
_GONE_RE = re.compile(
    r"no such process|check that the process is running|failed to get process", re.IGNORECASE
)
_SUMMARY_RE = re.compile(r"Samples:\s*(\d+)\s+Errors:\s*(\d+)")


def _first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        s = line.strip()
        if s and not s.startswith("py-spy>") and not s.startswith("Stack backtrace"):
            return s
    return stderr.strip()[-300:] or "no output"


def classify_failure(pid: int, returncode: int, stderr: str) -> WsprofError:
    """Turn a failed py-spy run's exit and stderr into the exception to raise."""
    if _PERM_RE.search(stderr):
        return PtraceDenied(
            f"py-spy may not read PID {pid} (ptrace permission denied); {PTRACE_HINT}"
        )
    if not _pid_exists(pid) or (_GONE_RE.search(stderr) and not _NOT_PY_RE.search(stderr)):
        return ProcessNotFound(f"PID {pid} does not exist (or exited before py-spy attached)")
    if _NOT_PY_RE.search(stderr):
        return NotAPythonProcess(f"PID {pid} is not a Python process")
    return RecordingFailed(
        f"py-spy exited with status {returncode} for PID {pid}: {_first_error_line(stderr)}"
    )


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGINT first (py-spy then writes what it sampled), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Recorder:
    """One ``py-spy record`` run, started and finished separately.

    The scenario runner starts it exactly when the load client opens its
    measurement window, and collects it when the window closes. py-spy always
    gets a ``--duration`` (rounded up to whole seconds); a fractional duration
    is timed here and ended with SIGINT, which py-spy treats as "stop and
    write". ``timeout`` (default duration + :data:`STOP_MARGIN_S`) bounds the
    whole run: past it wsprof kills py-spy. py-spy dies with wsprof
    (:func:`die_with_parent`). A recording stopped before its end (Ctrl-C, an
    error) is renamed to :func:`partial_path`, never left looking complete.
    """

    def __init__(
        self,
        pid: int,
        out: Path | str,
        duration: float,
        rate: int = DEFAULT_RATE_HZ,
        native: bool = False,
        idle: bool = False,
        subprocesses: bool = True,
        nonblocking: bool = False,
        timeout: float | None = None,
    ) -> None:
        if duration <= 0 or not math.isfinite(duration):
            raise WsprofError(
                f"profiling duration must be a positive number of seconds, not {duration}"
            )
        if rate <= 0:
            raise WsprofError(f"sampling rate must be a positive integer, not {rate}")
        if native and nonblocking:
            raise WsprofError(
                "py-spy reads native stacks only by pausing the process: --native records in "
                "blocking mode, never with --nonblocking"
            )
        self.pid = pid
        self.native = native
        self.duration = duration
        self.out_path = Path(out)
        self.limit = timeout if timeout is not None else duration + STOP_MARGIN_S
        self.whole = float(duration).is_integer()
        self.partial_path = partial_path(self.out_path)
        self.cmd = [
            find_pyspy(),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            str(self.out_path),
            "--rate",
            str(rate),
        ]
        # Always a bound of py-spy's own, even if wsprof's timer never fires.
        self.cmd += ["--duration", str(max(1, math.ceil(duration)))]
        for flag, on in (
            ("--subprocesses", subprocesses),
            ("--native", native),
            ("--idle", idle),
            ("--nonblocking", nonblocking),
        ):
            if on:
                self.cmd.append(flag)
        self._proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None
        self._started = 0.0
        self._finished = False

    def start(self) -> Recorder:
        if not _pid_exists(self.pid):
            raise ProcessNotFound(f"PID {self.pid} does not exist")
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.out_path.unlink(missing_ok=True)
        self.partial_path.unlink(missing_ok=True)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        preexec = die_with_parent()
        if self.native:
            preexec = _on_cpus_of(self.pid, preexec)
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._err,
            stderr=self._err,
            start_new_session=True,
            preexec_fn=preexec,
        )
        return self

    def wait(self) -> Recording:
        """Wait for the recording to end (bounded) and check what it produced."""
        proc = self._proc
        assert proc is not None, "start() first"
        pid, limit, duration = self.pid, self.limit, self.duration
        remaining = duration - (time.monotonic() - self._started)
        try:
            try:
                proc.wait(timeout=max(limit - self.elapsed() if self.whole else remaining, 0.0))
            except subprocess.TimeoutExpired:
                if self.whole:
                    raise RecordingFailed(
                        f"py-spy did not finish within {limit:g} s for PID {pid}; stopped it"
                    ) from None
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    proc.wait(timeout=max(limit - self.elapsed(), 0.0))
            self._finished = True
        except subprocess.TimeoutExpired:
            raise RecordingFailed(
                f"py-spy did not stop within {limit:g} s for PID {pid}; stopped it"
            ) from None
        finally:
            self.stop()
        seconds = time.monotonic() - self._started
        self._err.seek(0)
        stderr = self._err.read().decode("utf-8", errors="replace")
        self._err.close()
        if not self.out_path.exists():
            if proc.returncode == 0:
                raise RecordingFailed(
                    f"py-spy wrote no profile for PID {pid}: {_first_error_line(stderr)}"
                )
            raise classify_failure(pid, proc.returncode, stderr)
        m = _SUMMARY_RE.search(stderr)
        samples, errors = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        return Recording(self.out_path, samples, errors, seconds, stderr)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def stop(self) -> None:
        """Never leave py-spy behind (idempotent); an unfinished recording is marked partial."""
        if self._proc is None:
            return
        _stop(self._proc, grace=5.0)
        if not self._finished and self.out_path.exists():
            os.replace(self.out_path, self.partial_path)


def record(pid: int, out: Path | str, duration: float, **options: Any) -> Recording:
    """Sample ``pid`` (and its children) for ``duration`` seconds into a raw folded file.

    ``options`` are :class:`Recorder`'s (rate, native, idle, subprocesses, nonblocking, timeout).
    """
    recorder = Recorder(pid, out, duration, **options)
    try:
        return recorder.start().wait()
    finally:
        recorder.stop()


def check_ptrace(timeout: float = 10.0) -> None:
    """Raise :class:`ProfilerUnavailable` unless py-spy can read a process like a server.

    The real test, not a guess from capabilities: start a throwaway Python
    child and ``py-spy dump`` it. Like a server launched by the runner, the
    child is not py-spy's own descendant, so Yama's scope 1 applies equally.
    Costs about half a second.
    """
    exe = find_pyspy()
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() == "3":
        raise PtraceDenied(
            f"ptrace is disabled until reboot (kernel.yama.ptrace_scope=3); {PTRACE_HINT}"
        )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.stdout.write('ok\\n'); sys.stdout.flush(); time.sleep(30)",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        try:
            res = subprocess.run(
                [exe, "dump", "--pid", str(child.pid)],
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
        except subprocess.TimeoutExpired:
            raise ProfilerUnavailable(
                f"py-spy dump did not answer within {timeout:.0f} s"
            ) from None
        if res.returncode != 0:
            stderr = res.stderr.decode("utf-8", errors="replace")
            exc = classify_failure(child.pid, res.returncode, stderr)
            if isinstance(exc, ProfilerUnavailable):
                raise exc
            raise ProfilerUnavailable(
                f"py-spy cannot profile a Python process here: {_first_error_line(stderr)}"
            )
    finally:
        child.kill()
        child.wait(timeout=5)
