"""Measurement for `wsprof client-bench`: the load client is not what a scenario measures.

It starts the cheap C echo server (own process, own core), measures the
kernel floor (one loopback send plus one recv), then drives the server with
each client and reports client CPU per round trip as a multiple of that floor.
"""

from __future__ import annotations

import ctypes
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from wsprof import fastpath
from wsprof.client import broadcast
from wsprof.client.base import LoadConfig, LoadResult
from wsprof.client.driver import run_load
from wsprof.env import environment
from wsprof.errors import MeasurementError
from wsprof.progress import OnProgress

SCHEMA = "wsprof.client-bench/1"
PAYLOAD = "small"
#: The echo server exits by itself after this long even if nobody tells it to.
ECHO_SERVER_MAX_S = 600.0
_PR_SET_PDEATHSIG = 1
#: The broadcast ceiling row: recipients in the room, broadcasts in flight (one sender).
CEILING_RECIPIENTS = 1000
CEILING_IN_FLIGHT = 32


@dataclass(frozen=True)
class Row:
    client: str
    connections: int
    in_flight: int


def plan() -> list[Row]:
    """1 and 100 connections with one message in flight for both clients, then k=8 coalesced."""
    rows = [Row(c, n, 1) for n in (1, 100) for c in ("fast", "reference")]
    return [*rows, Row("fast", 100, 8)]


def pick_cpus() -> tuple[int | None, int | None]:
    """(client core, server core): different cores when there are two, else no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def echo_server_main() -> None:
    """Child process: bind, print the port, echo until stdin closes (parent gone) or time is up."""
    cpu = int(sys.argv[1])
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    import socket

    from wsprof._echoserver import serve_echo

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.setblocking(False)
    sys.stdout.write(f"{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    try:
        broadcast = len(sys.argv) > 3 and sys.argv[3] == "broadcast"
        serve_echo(sock.fileno(), sys.stdin.fileno(), float(sys.argv[2]), broadcast=broadcast)
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C reached the whole process group; the parent reports it


@contextmanager
def echo_server(
    cpu: int | None, max_seconds: float = ECHO_SERVER_MAX_S, *, broadcast: bool = False
) -> Iterator[int]:
    """Run the C echo server in its own process pinned to ``cpu``; yield its port; always stop it.

    With ``broadcast`` it sends every message to every connection (the fan-out ceiling)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wsprof.client.bench import echo_server_main; echo_server_main()",
            str(-1 if cpu is None else cpu),
            str(max_seconds),
            "broadcast" if broadcast else "echo",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            proc.wait(5)
            raise MeasurementError(f"the echo server did not start (exit code {proc.returncode})")
        yield int(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # EOF on its stdin tells it to stop
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def measure_floor_us(cpu: int | None, repeats: int, seconds: float) -> float:
    """Median over ``repeats`` of the floor (µs CPU per send+recv pair), on the client's core."""
    from wsprof._floor import measure_floor

    previous = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        return statistics.median(
            measure_floor(max_seconds=seconds)["us_per_pair"] for _ in range(repeats)
        )
    finally:
        os.sched_setaffinity(0, previous)


def median_result(results: list[LoadResult]) -> LoadResult:
    """The run with the median client CPU per message (a whole run, so its figures agree)."""
    ordered = sorted(results, key=lambda r: r.client_cpu_us_per_msg)
    return ordered[len(ordered) // 2]


def row_document(row: Row, result: LoadResult, floor_us: float) -> dict[str, Any]:
    return {
        "client": row.client,
        "connections": row.connections,
        "in_flight": row.in_flight,
        "msgs_per_s": result.msgs_per_s,
        "client_cpu_us_per_msg": result.client_cpu_us_per_msg,
        "floor_multiple": result.client_cpu_us_per_msg / floor_us,
        "latency_us": result.latency_us(),
        "messages": result.messages,
        "errors": result.errors,
    }


def broadcast_ceiling(
    client_cpu: int | None, server_cpu: int | None, repeats: int, duration: float
) -> dict[str, Any]:
    """The fast broadcast client's deliveries/s on one core against the C fan-out server
    (median of ``repeats`` by deliveries/s): what it can count before it is the limit."""
    runs = []
    previous = os.sched_getaffinity(0)
    with echo_server(server_cpu, broadcast=True) as port:
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        try:
            for _ in range(repeats):
                config = broadcast.BroadcastConfig(
                    f"ws://127.0.0.1:{port}/",
                    recipients=CEILING_RECIPIENTS,
                    in_flight=CEILING_IN_FLIGHT,
                    duration=duration,
                    warmup=0.5,
                    drain_s=1.0,
                )
                runs.append(broadcast.run(config, client="fast"))
        finally:
            os.sched_setaffinity(0, previous)
    result = sorted(runs, key=lambda r: r.deliveries_per_s)[len(runs) // 2]
    cpu_us = 1e6 * result.client_cpu_s / max(result.deliveries, 1)
    return {
        "client": "fast",
        "recipients": CEILING_RECIPIENTS,
        "in_flight": CEILING_IN_FLIGHT,
        "deliveries_per_s": result.deliveries_per_s,
        "client_cpu_us_per_delivery": cpu_us,
        # what one core could count if the server kept up: the client's own ceiling
        "capacity_deliveries_per_s": 1e6 / cpu_us if cpu_us > 0 else 0.0,
        "client_busy": result.client_busy,
        "client_bound": result.client_bound,
        "latency_us": result.latency_us(),
        "missing": result.missing,
        "duplicates": result.duplicates,
        "errors": result.errors,
    }


def run_bench(quick: bool, on_progress: OnProgress) -> dict[str, Any]:
    """Measure the floor and every row of the plan; return the result document."""
    for name in ("_loadclient", "_echoserver", "_floor", "_broadcast"):
        fastpath.load(name)
    client_cpu, server_cpu = pick_cpus()
    repeats = 1 if quick else 3
    duration = 1.0 if quick else 3.0
    warmup = 0.2 if quick else 0.5
    rows = plan()
    results = []
    total = 2 + len(rows) * repeats
    with echo_server(server_cpu) as port:
        on_progress("floor (send + recv)", 0, total)
        floor_us = measure_floor_us(client_cpu, repeats, 0.5 if quick else 1.5)
        done = 1
        for row in rows:
            config = LoadConfig(
                f"ws://127.0.0.1:{port}/",
                connections=row.connections,
                in_flight=row.in_flight,
                duration=duration,
                warmup=warmup,
                payload=PAYLOAD,
            )
            runs = []
            for i in range(repeats):
                on_progress(
                    f"{row.client}, {row.connections} conn, {row.in_flight} in flight "
                    f"(run {i + 1}/{repeats})",
                    done,
                    total,
                )
                cpus = None if client_cpu is None else [client_cpu]
                runs.append(run_load(config, client=row.client, cpus=cpus))
                done += 1
            results.append(row_document(row, median_result(runs), floor_us))
    on_progress(f"fast broadcast, {CEILING_RECIPIENTS} recipients", done, total)
    ceiling = broadcast_ceiling(client_cpu, server_cpu, repeats, duration)
    return {
        "schema": SCHEMA,
        "floor_us_per_msg": floor_us,
        "payload": PAYLOAD,
        "duration_s": duration,
        "repeats": repeats,
        "results": results,
        "broadcast": ceiling,
        "env": environment(
            pinning={"client_cpu": client_cpu, "echo_server_cpu": server_cpu},
        ),
    }
