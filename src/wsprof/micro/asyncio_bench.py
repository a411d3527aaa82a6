"""Event-loop costs: a bare ``await asyncio.sleep(0)`` and a task-to-task hand-off.

uvloop is imported inside the timer: each row runs in its own pyperf worker
processes, so a uvloop policy can never leak into an asyncio row. asyncio
itself is imported lazily too, because every pyperf worker imports this
catalogue and its start-up time multiplies by the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

CASES: dict[str, tuple[str, ...]] = {
    "yield": ("asyncio", "uvloop"),
    "handoff": ("asyncio", "uvloop"),
}
PAYLOAD_KINDS: tuple[str, ...] = ()
INNER_LOOPS: dict[tuple[str, str], int] = {}

TimeFunc = Callable[[int], float]

_loops: dict[str, asyncio.AbstractEventLoop] = {}


def _loop(variant: str) -> asyncio.AbstractEventLoop:
    """One loop per worker process, reused across pyperf's calls of the time function."""
    if variant not in _loops:
        import asyncio

        if variant == "uvloop":
            import uvloop

            _loops[variant] = uvloop.new_event_loop()
        else:
            _loops[variant] = asyncio.new_event_loop()
    return _loops[variant]


async def _yield(loops: int) -> float:
    import asyncio

    sleep = asyncio.sleep
    await sleep(0)
    t0 = perf_counter()
    for _ in range(loops):
        await sleep(0)
    return perf_counter() - t0


async def _handoff(loops: int) -> float:
    """One op = this task wakes a waiting task through a Queue and is woken back the same way.

    That is the per-message path of a server whose reader task feeds a handler
    task (python-engineio's asyncio driver queues packets like this).
    """
    import asyncio

    to_partner: asyncio.Queue[int | None] = asyncio.Queue()
    to_main: asyncio.Queue[int] = asyncio.Queue()

    async def partner() -> None:
        get, put = to_partner.get, to_main.put_nowait
        while (item := await get()) is not None:
            put(item)

    task = asyncio.get_running_loop().create_task(partner())
    put, get = to_partner.put_nowait, to_main.get
    put(0)
    await get()
    t0 = perf_counter()
    for i in range(loops):
        put(i)
        await get()
    elapsed = perf_counter() - t0
    put(None)
    await task
    return elapsed


def _on_loop(variant: str, bench: Callable[[int], Coroutine[Any, Any, float]]) -> TimeFunc:
    def time_func(loops: int) -> float:
        return _loop(variant).run_until_complete(bench(loops))

    return time_func


def timer(case: str, variant: str, payload: str | None) -> TimeFunc:
    """pyperf time function: runs ``loops`` iterations, returns seconds."""
    if variant not in CASES[case]:
        raise KeyError((case, variant))
    bench = {"yield": _yield, "handoff": _handoff}[case]
    return _on_loop(variant, bench)
