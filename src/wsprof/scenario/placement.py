"""Where a scenario's processes run: the server's core, the client's, and worker warnings."""

from __future__ import annotations

import os
from collections.abc import Sequence

from wsprof.scenario.files import Variant


def pinning() -> tuple[int | None, list[int] | None]:
    """Server on one core, client on another, when there are two or more."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        return cores[-1], [cores[0]]
    return None, None


def workers_of(variant: Variant) -> int:
    """Server worker processes: an app's ``workers``, or a bundled stack's ``workers`` option."""
    if variant.app_spec() is not None:
        return variant.workers
    value = variant.options.get("workers", "1")
    return int(value) if value.isdigit() else 1


def worker_warnings(variants: Sequence[Variant], server_cpu: int | None) -> list[str]:
    """Variants whose workers outnumber the cores they get: their figures share cores."""
    cores = len(os.sched_getaffinity(0))
    pinned = 1 if server_cpu is not None else cores
    warnings = []
    for variant in variants:
        workers = workers_of(variant)
        if workers <= 1:
            continue
        if workers > cores:
            warnings.append(
                f"variant {variant.name}: {workers} workers > {cores} cores; "
                "workers and the load client share cores, so its figures understate the server"
            )
        elif workers > pinned:
            warnings.append(
                f"variant {variant.name}: {workers} workers share the server's "
                f"{pinned} core (cpu {server_cpu}); the load client has the other"
                f"{'s' if cores - pinned > 1 else ''}"
            )
    return warnings
