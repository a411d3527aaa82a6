"""Green-thread costs: a raw greenlet switch, and eventlet/gevent hub yields and hand-offs.

eventlet and gevent are imported inside the timers, never at module level:
each row runs in its own pyperf worker processes, so one hub (and anything
it patches) cannot leak into another row or into the orchestrator.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from time import perf_counter
from types import ModuleType
from typing import Any

CASES: dict[str, tuple[str, ...]] = {
    "switch": ("greenlet",),
    "yield": ("eventlet", "gevent"),
    "handoff": ("eventlet", "gevent"),
}
PAYLOAD_KINDS: tuple[str, ...] = ()
# Operations per loop iteration, where one iteration does more than one.
INNER_LOOPS: dict[tuple[str, str], int] = {("switch", "greenlet"): 2}

TimeFunc = Callable[[int], float]


def _switch(loops: int) -> float:
    """Ping-pong between two greenlets; each iteration is two switches (there and back)."""
    from greenlet import getcurrent, greenlet

    main = getcurrent()

    def partner() -> None:
        while True:
            main.switch()

    other = greenlet(partner)
    other.switch()
    switch = other.switch
    t0 = perf_counter()
    for _ in range(loops):
        switch()
    return perf_counter() - t0


def _eventlet() -> ModuleType:
    """eventlet, without its deprecation banner on every worker's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet
        import eventlet.queue
    return eventlet


def _eventlet_yield(loops: int) -> float:
    eventlet = _eventlet()
    sleep = eventlet.sleep
    sleep(0)
    t0 = perf_counter()
    for _ in range(loops):
        sleep(0)
    return perf_counter() - t0


def _gevent_yield(loops: int) -> float:
    import gevent

    sleep = gevent.sleep
    sleep(0)
    t0 = perf_counter()
    for _ in range(loops):
        sleep(0)
    return perf_counter() - t0


def _handoff(
    loops: int, spawn: Callable[..., Any], join: Callable[[Any], object], queue_cls: type
) -> float:
    """One op = main wakes a waiting partner through a queue, the partner wakes main back.

    This is what a server does per message when a reader green thread hands a
    packet to a handler (python-engineio's eventlet and gevent drivers use
    these queues).
    """
    to_partner = queue_cls()
    to_main = queue_cls()

    def partner() -> None:
        get, put = to_partner.get, to_main.put
        while (item := get()) is not None:
            put(item)

    thread = spawn(partner)
    put, get = to_partner.put, to_main.get
    put(0)
    get()
    t0 = perf_counter()
    for i in range(loops):
        put(i)
        get()
    elapsed = perf_counter() - t0
    put(None)
    join(thread)
    return elapsed


def _eventlet_handoff(loops: int) -> float:
    eventlet = _eventlet()
    return _handoff(loops, eventlet.spawn, lambda t: t.wait(), eventlet.queue.Queue)


def _gevent_handoff(loops: int) -> float:
    import gevent
    import gevent.queue

    return _handoff(loops, gevent.spawn, lambda t: t.join(), gevent.queue.Queue)


_TIMERS: dict[tuple[str, str], TimeFunc] = {
    ("switch", "greenlet"): _switch,
    ("yield", "eventlet"): _eventlet_yield,
    ("yield", "gevent"): _gevent_yield,
    ("handoff", "eventlet"): _eventlet_handoff,
    ("handoff", "gevent"): _gevent_handoff,
}


def timer(case: str, variant: str, payload: str | None) -> TimeFunc:
    """pyperf time function: runs ``loops`` iterations, returns seconds."""
    return _TIMERS[case, variant]
