"""The counted closure's window: one instrumented server, one short load window, its counts.

Kept apart from the runner's clean and profiled windows on purpose: the
counters (:mod:`wsprof.servers.counting`) add work to every message, so
nothing but the counts per message is kept from this window.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wsprof.client.base import LoadConfig, LoadError
from wsprof.client.driver import run_load
from wsprof.errors import MeasurementError
from wsprof.scenario.files import LoadPlan, Variant
from wsprof.scenario.placement import workers_of
from wsprof.scenario.workloads import packet_format, reply_contract
from wsprof.servers import counting
from wsprof.servers.launcher import ServerFailed, ServerProcess

#: Long enough for thousands of messages on a contended 2-core machine; counts need no more.
COUNT_WINDOW_S = 2.0


def count_events(
    stack: str,
    options: dict[str, str],
    window: LoadConfig,
    *,
    client: str,
    server_cpu: int | None,
    client_cpus: list[int] | None,
) -> dict[str, Any]:
    """Counts over one closed-loop window of a freshly started instrumented server.

    ``window`` is the load to run (its URL and window callback are replaced by
    this server's). Returns ``{"messages", "elapsed_s", "counts", "counters",
    "loops", "callbacks_countable"}``, or ``{"error": one line}``: a failed
    count ends the closure of that variant, not the scenario.
    """
    server = ServerProcess(stack, options, cpu=server_cpu, instrumented=True)
    marks: dict[str, dict[str, Any]] = {}
    try:
        server.start()
        count_file = server.count_file
        assert count_file is not None

        def mark(name: str) -> None:
            seq = marks["start"]["seq"] if "start" in marks else 0
            marks[name] = counting.request_counts(server.pid, count_file, seq)

        config = replace(window, url=server.url, on_window=mark)
        result = run_load(config, client=client, cpus=client_cpus)
        server.check_alive()
    except (ServerFailed, LoadError, MeasurementError, TimeoutError) as exc:
        return {"error": f"counting failed: {exc}"}
    finally:
        server.stop()
    if "start" not in marks or "end" not in marks:
        return {"error": f"counting failed: the {client} client did not mark its window"}
    return {
        "messages": result.messages,
        "elapsed_s": result.elapsed_s,
        "counts": counting.difference(marks["start"], marks["end"]),
        "counters": marks["end"]["counters"],
        "loops": marks["end"]["loops"],
        "callbacks_countable": marks["end"]["callbacks_countable"],
    }


def count_variant(
    variant: Variant,
    server: ServerProcess,
    plan: LoadPlan,
    source: str,
    *,
    client: str,
    server_cpu: int | None,
    client_cpus: list[int] | None,
) -> dict[str, Any]:
    """Counts per message for one variant whose clean server is ``server``, or why none.

    The instrumented server is a second one, started with the clean server's options.
    Only the echo workload has one message per request to count against; user apps
    and worker trees are not instrumented (the counters install in wsprof's own
    serve entry point, in one process).
    """
    if plan.workload != "echo":
        return {"error": "events are counted for the echo workload only"}
    if variant.app_spec() is not None or workers_of(variant) > 1:
        return {"error": "events are counted in bundled single-process stacks only"}
    window = LoadConfig(
        url=server.url,
        mode=server.mode,
        connections=plan.connections,
        in_flight=plan.in_flight,
        duration=min(plan.capacity_window_s, COUNT_WINDOW_S),
        payload=plan.payload,
        serializer=packet_format(server.serializer),
        warmup=plan.warmup_s,
        **reply_contract(plan, server.mode, source),
    )
    return count_events(
        variant.stack,
        server.options,
        window,
        client=client,
        server_cpu=server_cpu,
        client_cpus=client_cpus,
    )
