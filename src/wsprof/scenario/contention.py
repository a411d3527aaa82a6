"""Is something else loading the machine while a window runs?

Two runs on the same cores each measure about half their real throughput, and
nothing in their figures says so. :class:`OtherLoad` reads the CPU time of
every process that is not wsprof's own (this process and its descendants:
servers, load workers, py-spy) nor a kernel thread (ksoftirqd does the
loopback work our own traffic causes), before and after a window; their
average busy cores over the window is the contention figure.
"""

from __future__ import annotations

import os
import time

import psutil

#: Other processes busy for at least this many cores on average: the window is contended.
CONTENTION_CORES = 0.25
_KTHREADD = 2


def _own_pids(root: int) -> set[int]:
    try:
        proc = psutil.Process(root)
        return {root, *(child.pid for child in proc.children(recursive=True))}
    except psutil.Error:
        return {root}


def _cpu_by_pid() -> dict[int, float]:
    times: dict[int, float] = {}
    for proc in psutil.process_iter(["ppid", "cpu_times"]):
        info = proc.info
        cpu = info.get("cpu_times")
        if cpu is None or proc.pid == _KTHREADD or info.get("ppid") == _KTHREADD:
            continue
        times[proc.pid] = cpu.user + cpu.system
    return times


class OtherLoad:
    """Measure the CPU other processes used between :meth:`start` and :meth:`stop`."""

    def __init__(self, root: int | None = None) -> None:
        self.root = os.getpid() if root is None else root
        self._before: dict[int, float] = {}
        self._started = 0.0

    def start(self) -> OtherLoad:
        self._before = _cpu_by_pid()
        self._started = time.monotonic()
        return self

    def stop(self) -> float:
        """Average cores other processes kept busy since :meth:`start` (0.0 if none)."""
        after = _cpu_by_pid()
        elapsed = time.monotonic() - self._started
        own = _own_pids(self.root)
        used = sum(
            max(0.0, cpu - self._before[pid])
            for pid, cpu in after.items()
            if pid in self._before and pid not in own
        )
        return round(used / elapsed, 3) if elapsed > 0 else 0.0


def contended(other_cores: float) -> bool:
    return other_cores >= CONTENTION_CORES
