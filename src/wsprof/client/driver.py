"""Run a load with one client implementation over one or more worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import replace
from types import ModuleType

from wsprof.client.base import CLIENTS, LoadConfig, LoadResult
from wsprof.errors import WsprofError


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
    if not 1 <= workers <= config.connections:
        raise WsprofError(f"--workers must be between 1 and --connections ({config.connections})")
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


def _worker(args: tuple[str, LoadConfig, int | None]) -> LoadResult:
    client, config, cpu = args
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return _client_module(client).run(config)


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
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_worker, jobs)
    merged = results[0]
    for result in results[1:]:
        merged = merged.merge(result)
    return merged
