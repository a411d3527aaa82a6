"""py-spy over one profiled window of a variant: every server process, one folded file.

py-spy follows one process tree per run, so a variant with ``processes = N``
gets N recorders; their files join by appending, because every line starts
with its own process frame (``--subprocesses``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsprof.scenario.record import Window
from wsprof.servers.launcher import ServerProcess


def window_s(planned: float, native: bool, rate_hz: int, capacity: Sequence[Window]) -> float:
    """The plan's profiled window; with --native, grown for a server that is not always running.

    Native samples are taken only while the server runs, so the window is sized by
    the busy share of the variant's last clean window (its CPU over its wall time).
    """
    if not native or not capacity:
        return planned
    from wsprof.profiling.pyspy import native_window_s

    last = capacity[-1]
    busy = last.server_cpu_s / last.elapsed_s if last.elapsed_s > 0 else 1.0
    return max(planned, native_window_s(rate_hz, busy))


class WindowRecording:
    """Start at the window's start mark, :meth:`finish` after it, :meth:`stop` always."""

    def __init__(
        self,
        pyspy: Any,
        servers: Sequence[ServerProcess],
        folded: Path,
        *,
        duration: float,
        rate: int,
        native: bool,
    ) -> None:
        self.pyspy = pyspy
        self.servers = list(servers)
        self.folded = folded
        self.outputs = [folded] + [
            folded.with_suffix(f".p{i}.folded") for i in range(2, len(self.servers) + 1)
        ]
        self.duration = duration
        self.rate = rate
        self.native = native
        self.recorders: list[Any] = []

    def start(self) -> None:
        # py-spy runs --nonblocking (it reads the server's memory without pausing it:
        # a paused server loses throughput, which would be the profiler's, not the
        # stack's), started from the client's thread so it shares the client's core.
        # --native cannot: py-spy pauses the server per sample, so it runs at a lower
        # rate over a longer window, on the server's own core (idle while paused), and
        # the overhead is reported as for every profiled window.
        for server, out in zip(self.servers, self.outputs, strict=True):
            self.recorders.append(
                self.pyspy.Recorder(
                    server.pid,
                    out,
                    duration=self.duration,
                    rate=self.rate,
                    native=self.native,
                    nonblocking=not self.native,
                    # Worker trees (gunicorn, uvicorn --workers) work in children; and
                    # without it py-spy writes a frameless sample as a bare " N" line.
                    subprocesses=True,
                ).start()
            )

    def finish(self) -> dict[str, Any]:
        """Wait for every recorder, join their files; py-spy's own counts (None: not printed)."""
        recs = [recorder.wait() for recorder in self.recorders]
        with self.folded.open("a", encoding="utf-8") as joined:
            for extra in self.outputs[1:]:
                joined.write(extra.read_text(encoding="utf-8"))
                extra.unlink()
        samples = [rec.samples for rec in recs]
        errors = [rec.errors for rec in recs]
        return {
            "samples": None if None in samples else sum(samples),
            "errors": None if None in errors else sum(errors),
            "seconds": max((rec.seconds for rec in recs), default=0.0),
        }

    def stop(self) -> None:
        for recorder in self.recorders:
            recorder.stop()
