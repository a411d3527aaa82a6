"""Run a load with one client implementation over one or more worker processes.

Several workers are spawned processes that each run their share and send back one
result over a pipe. They never outlive wsprof: each asks the kernel for SIGKILL when
its parent dies (PR_SET_PDEATHSIG) and exits at once if the parent is already gone;
the parent watches every worker, so one that dies without a result ends the run with
one line instead of a wait that never ends, and an interrupt stops them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import ModuleType
from typing import Any

from wsprof.client.base import CLIENTS, LoadConfig, LoadResult
from wsprof.errors import MeasurementError, WsprofError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_WAIT_S = 2.0  # how long a worker may take to end after SIGTERM before SIGKILL
# Beyond its connect timeout, warm-up and window, how long a worker may take to start
# (spawn imports wsprof afresh) and to close its connections before it counts as hung.
WORKER_SLACK_S = 60.0


def _client_module(client: str) -> ModuleType:
    if client == "fast":
        from wsprof.client import fast

        fast.require()
        return fast
    if client == "reference":
        from wsprof.client import reference

        return reference
    raise WsprofError(f"unknown client {client!r} (valid: {', '.join(CLIENTS)})")


def split_config(config: LoadConfig, workers: int) -> list[LoadConfig]:
    """Share connections, rate and message limit out over ``workers`` processes."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise WsprofError(f"--workers must be a whole number, not {workers!r}")
    if not 1 <= workers <= config.connections:
        raise WsprofError(f"--workers must be between 1 and --connections ({config.connections})")
    if workers > 1 and config.on_window is not None:
        raise WsprofError("a window callback (on_window) needs a single worker")
    if config.rate is not None and config.rate * config.duration < workers:
        raise WsprofError(
            f"--rate {config.rate:g} msgs/s over a --duration {config.duration:g} s window is "
            f"less than one message per worker ({workers}): raise the rate or use fewer workers"
        )
    parts = []
    for i in range(workers):
        conns = config.connections // workers + (1 if i < config.connections % workers else 0)
        share = conns / config.connections
        parts.append(
            replace(
                config,
                connections=conns,
                rate=None if config.rate is None else config.rate * share,
                max_messages=None
                if config.max_messages is None
                else max(1, round(config.max_messages * share)),
            )
        )
    return parts


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent ends; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(
    client: str, config: LoadConfig, cpu: int | None, parent_pid: int, out: Connection
) -> None:
    """A worker process: run one share and send back ("ok", result) or ("error", exception)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a Ctrl-C pending since birth
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        reply: tuple[str, Any] = ("ok", _client_module(client).run(config))
    except KeyboardInterrupt:  # only if a caller set SIGINT back to its handler: end quietly
        sys.exit(130)
    except WsprofError as exc:
        reply = ("error", exc)
    except Exception as exc:  # any other failure: its text, as the parent's one line
        reply = ("error", MeasurementError(f"a load worker failed: {type(exc).__name__}: {exc}"))
    out.send(reply)
    out.close()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Start processes with SIGINT blocked (the mask survives fork and exec).

    Ctrl-C reaches the whole process group: the parent takes it and stops the workers
    itself, so a worker must never print a traceback of its own, even while it imports
    wsprof. Blocked, not ignored: a Ctrl-C during the start waits for the parent instead
    of being lost; the worker discards it (see ``_worker_main``).
    """
    # Starting the resource tracker unblocks SIGINT after it: start it first, outside.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop(processes: Sequence[BaseProcess]) -> None:
    """End every worker still running: SIGTERM, then SIGKILL after STOP_WAIT_S."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(STOP_WAIT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(STOP_WAIT_S)


def _run_workers(
    jobs: Sequence[tuple[str, LoadConfig, int | None]], timeout: float
) -> list[LoadResult]:
    """Run each job in its own spawned process; return their results in order.

    A worker that sends nothing within ``timeout`` seconds is hung: the run fails.
    """
    deadline = time.monotonic() + timeout
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    pipes: dict[Connection, int] = {}
    try:
        for i, (client, config, cpu) in enumerate(jobs):
            receive, send = context.Pipe(duplex=False)
            proc = context.Process(
                target=_worker_main,
                args=(client, config, cpu, os.getpid(), send),
                name=f"wsprof-load-worker-{i}",
                daemon=True,
            )
            with _sigint_blocked():
                proc.start()
            send.close()
            processes.append(proc)
            pipes[receive] = i
        results: dict[int, LoadResult] = {}
        while pipes:
            left = deadline - time.monotonic()
            ready_list = wait(list(pipes), timeout=max(0.0, left))
            if not ready_list:
                raise MeasurementError(
                    f"{len(pipes)} load worker(s) sent no result within {timeout:g} s"
                )
            for ready in ready_list:
                assert isinstance(ready, Connection)
                i = pipes.pop(ready)
                try:
                    status, value = ready.recv()
                except EOFError:
                    processes[i].join(STOP_WAIT_S)
                    code = processes[i].exitcode
                    raise MeasurementError(
                        f"load worker {i + 1} of {len(jobs)} ended without a result "
                        f"(exit code {code})"
                    ) from None
                finally:
                    ready.close()
                if status != "ok":
                    raise value
                results[i] = value
        return [results[i] for i in range(len(jobs))]
    finally:
        _stop(processes)
        for receive in pipes:
            receive.close()


def run_load(
    config: LoadConfig,
    client: str = "fast",
    workers: int = 1,
    cpus: Sequence[int] | None = None,
) -> LoadResult:
    """Drive ``config.url``; with several workers each runs its share in its own process."""
    module = _client_module(client)
    if workers == 1:
        if cpus:
            previous = os.sched_getaffinity(0)
            os.sched_setaffinity(0, set(cpus))
            try:
                return module.run(config)
            finally:
                os.sched_setaffinity(0, previous)
        return module.run(config)
    parts = split_config(config, workers)
    jobs = [(client, part, cpus[i % len(cpus)] if cpus else None) for i, part in enumerate(parts)]
    timeout = config.connect_timeout + config.warmup + config.duration + WORKER_SLACK_S
    results = _run_workers(jobs, timeout)
    merged = results[0]
    for result in results[1:]:
        merged = merged.merge(result)
    return merged
