"""One window function per workload beyond echo: broadcast, idle, connect.

Echo's window stays in the runner (`ScenarioRunner._window`); each function
here drives its workload's client (imported lazily: the clients live in
wsprof.client.broadcast and wsprof.client.connections) against a
:class:`Target` and returns a :class:`Window` whose ``messages`` is the unit
the server's cost is stated per: deliveries (broadcast), connections opened
(connect), none (idle: its figures are per connection and per second).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wsprof import stats
from wsprof.client.base import LoadConfig
from wsprof.client.histogram import PyHistogram, latency_summary_us
from wsprof.errors import MeasurementError
from wsprof.scenario.contention import OtherLoad
from wsprof.scenario.files import LoadPlan
from wsprof.scenario.record import Window
from wsprof.servers.launcher import ServerProcess


def packet_format(serializer: str) -> str:
    """What the client must speak: orjson (through the shim) still writes JSON packets."""
    return "msgpack" if serializer == "msgpack" else "json"


@dataclass
class Target:
    """A variant's server processes (the first is the one profiled) and the broker they share."""

    servers: Sequence[ServerProcess]
    broker: Any = None  # wsprof.servers.redis.RedisServer, when the variant uses redis

    @property
    def first(self) -> ServerProcess:
        return self.servers[0]

    @property
    def extra_urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers[1:])

    def cpu_seconds(self) -> float:
        """The server processes' CPU summed (the broker's is its own figure)."""
        return sum(s.cpu_seconds() for s in self.servers)

    def cpu_split(self) -> tuple[float, float]:
        """The server processes' (user, system) CPU seconds summed."""
        splits = [s.cpu_split() for s in self.servers]
        return sum(u for u, _ in splits), sum(k for _, k in splits)

    def broker_cpu_seconds(self) -> float:
        return 0.0 if self.broker is None else float(self.broker.cpu_seconds())

    def rss_bytes(self) -> int:
        return sum(s.rss_bytes() for s in self.servers)

    def check_alive(self) -> None:
        """ServerFailed (with the log tail) if any server or the broker has died."""
        for server in self.servers:
            server.check_alive()
        if self.broker is not None:
            self.broker.check_alive()


class Marks:
    """CPU (servers and broker) and RSS sampled as the client opens and closes its window."""

    def __init__(self, target: Target, on_mark: Callable[[str], None] | None) -> None:
        self.target = target
        self.on_mark = on_mark
        self.cpu: dict[str, float] = {}
        self.broker: dict[str, float] = {}
        self.rss: dict[str, int] = {}
        self.split: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str) -> None:
        self.cpu[name] = self.target.cpu_seconds()
        self.split[name] = self.target.cpu_split()
        self.broker[name] = self.target.broker_cpu_seconds()
        if name == "start":
            self.rss[name] = self.target.rss_bytes()
        if self.on_mark is not None:
            self.on_mark(name)

    def span(self, client: str) -> tuple[float, float]:
        """Server and broker CPU seconds over the window."""
        if "start" not in self.cpu or "end" not in self.cpu:
            raise MeasurementError(f"{client} client did not mark its measurement window")
        return (
            self.cpu["end"] - self.cpu["start"],
            self.broker["end"] - self.broker["start"],
        )

    def user_system(self) -> dict[str, float]:
        """The servers' user/system split over the window, as Window fields."""
        return {
            "server_user_s": self.split["end"][0] - self.split["start"][0],
            "server_system_s": self.split["end"][1] - self.split["start"][1],
        }


def _empty_histogram() -> dict[str, Any]:
    return PyHistogram().to_dict()


def _summary(histogram: dict[str, Any]) -> dict[str, float]:
    hist = PyHistogram()
    hist.merge(histogram)
    return latency_summary_us(hist) if hist.total else {}


def _measure(
    target: Target, marks: Marks, run: Callable[[], Any], client: str
) -> tuple[Any, float, float, float]:
    """One client run with the machine's other load watched, then the servers checked alive:
    (result, other cores busy, server CPU s, broker CPU s) over the client's window."""
    others = OtherLoad().start()
    result = run()
    other_cpu_cores = others.stop()
    target.check_alive()
    server_s, broker_s = marks.span(client)
    return result, other_cpu_cores, server_s, broker_s


def broadcast_window(
    target: Target,
    plan: LoadPlan,
    kind: str,
    duration: float,
    rate: float | None,
    *,
    client: str,
    on_mark: Callable[[str], None] | None = None,
) -> Window:
    """Closed loop (rate None) or open loop at ``rate`` broadcasts/s; messages = deliveries."""
    from wsprof.client.broadcast import BroadcastConfig
    from wsprof.client.broadcast import run as run_broadcast

    marks = Marks(target, on_mark)
    config = BroadcastConfig(
        url=target.first.url,
        mode=target.first.mode,
        serializer=packet_format(target.first.serializer),
        recipients=plan.recipients,
        senders=plan.senders,
        in_flight=plan.in_flight,
        rate=rate,
        duration=duration,
        warmup=plan.warmup_s,
        payload_bytes=plan.payload_bytes,
        extra_urls=target.extra_urls,
        on_window=marks,
    )
    result, other_cpu_cores, server_s, broker_s = _measure(
        target, marks, lambda: run_broadcast(config, client=client), client
    )
    cross = _summary(result.cross_histogram)
    figures = {
        "broadcasts": float(result.broadcasts),
        "deliveries": float(result.deliveries),
        "missing": float(result.missing),
        "duplicates": float(result.duplicates),
        "recipients": float(plan.recipients),
        "broker_cpu_s": broker_s,
        **({"cross_p50_us": cross["p50"], "cross_p99_us": cross["p99"]} if cross else {}),
    }
    return Window(
        kind=kind,
        messages=result.deliveries,
        elapsed_s=result.elapsed_s,
        server_cpu_s=server_s,
        client_cpu_us_per_msg=result.client_cpu_s * 1e6 / result.deliveries
        if result.deliveries
        else 0.0,
        client_busy=result.client_busy,
        client_bound=result.client_bound,
        errors=dict(result.errors),
        histogram=result.histogram,
        other_cpu_cores=other_cpu_cores,
        **marks.user_system(),
        figures=figures,
    )


def idle_window(
    target: Target,
    plan: LoadPlan,
    kind: str,
    duration: float,
    *,
    client: str,
    on_mark: Callable[[str], None] | None = None,
) -> Window:
    """``plan.connections`` held open for ``duration``: RSS per connection, idle CPU, heartbeats."""
    from wsprof.client.connections import IdleConfig, run_idle

    marks = Marks(target, on_mark)
    rss_before = target.rss_bytes()
    config = IdleConfig(
        url=target.first.url,
        mode=target.first.mode,
        serializer=packet_format(target.first.serializer),
        connections=plan.connections,
        duration=duration,
        open_concurrency=plan.open_concurrency,
        on_window=marks,
    )
    result, other_cpu_cores, server_s, broker_s = _measure(
        target, marks, lambda: run_idle(config, client=client), client
    )
    held = result.connections
    rss_start = marks.rss.get("start", rss_before)
    figures = {
        "connections": float(held),
        "failed": float(result.failed),
        "heartbeats": float(result.heartbeats),
        "heartbeats_late": float(result.heartbeats_late),
        "open_s": result.open_s,
        "rss_before_kb": rss_before / 1024,
        "rss_kb": rss_start / 1024,
        "rss_kb_per_connection": (rss_start - rss_before) / 1024 / held if held else 0.0,
        "idle_cpu_us_per_s_per_1k": server_s * 1e6 / result.elapsed_s / (held / 1000)
        if held and result.elapsed_s
        else 0.0,
        "broker_cpu_s": broker_s,
    }
    return Window(
        kind=kind,
        messages=0,
        elapsed_s=result.elapsed_s,
        server_cpu_s=server_s,
        client_cpu_us_per_msg=0.0,
        client_busy=result.client_cpu_s / result.elapsed_s if result.elapsed_s else 0.0,
        client_bound=False,
        errors=dict(result.errors),
        histogram=_empty_histogram(),
        other_cpu_cores=other_cpu_cores,
        **marks.user_system(),
        figures=figures,
    )


def connect_window(
    target: Target,
    plan: LoadPlan,
    kind: str,
    duration: float,
    *,
    client: str,
    on_mark: Callable[[str], None] | None = None,
) -> Window:
    """Connections opened as fast as ``connect_concurrency`` allows; messages = connects."""
    from wsprof.client.connections import ConnectConfig, run_connect

    marks = Marks(target, on_mark)
    config = ConnectConfig(
        url=target.first.url,
        mode=target.first.mode,
        serializer=packet_format(target.first.serializer),
        concurrency=plan.connect_concurrency,
        duration=duration,
        warmup=plan.warmup_s,
        on_window=marks,
    )
    result, other_cpu_cores, server_s, _ = _measure(
        target, marks, lambda: run_connect(config, client=client), client
    )
    return Window(
        kind=kind,
        messages=result.connects,
        elapsed_s=result.elapsed_s,
        server_cpu_s=server_s,
        client_cpu_us_per_msg=result.client_cpu_s * 1e6 / result.connects
        if result.connects
        else 0.0,
        client_busy=result.client_cpu_s / result.elapsed_s if result.elapsed_s else 0.0,
        client_bound=result.client_bound,
        errors=dict(result.errors),
        histogram=result.histogram,
        other_cpu_cores=other_cpu_cores,
        **marks.user_system(),
        figures={"connects": float(result.connects)},
    )


def workload_window(
    target: Target,
    plan: LoadPlan,
    kind: str,
    duration: float,
    rate: float | None,
    *,
    client: str,
    on_mark: Callable[[str], None] | None = None,
) -> Window:
    """The window of ``plan.workload`` (not echo); an idle capacity window lasts idle_window_s."""
    if plan.workload == "broadcast":
        return broadcast_window(target, plan, kind, duration, rate, client=client, on_mark=on_mark)
    if plan.workload == "idle":
        span = plan.idle_window_s if kind == "capacity" else duration
        return idle_window(target, plan, kind, span, client=client, on_mark=on_mark)
    if plan.workload == "connect":
        return connect_window(target, plan, kind, duration, client=client, on_mark=on_mark)
    raise ValueError(f"no window function for workload {plan.workload!r}")


def has_latency_phase(workload: str) -> bool:
    """Open-loop windows exist for echo and broadcast; connect's latency is its closed loop's."""
    return workload in ("echo", "broadcast")


def broadcast_rate(plan: LoadPlan, capacities: Sequence[Sequence[Window]]) -> float | None:
    """The open-loop broadcasts/s: the plan's, or latency_load x the slowest capacity."""
    if plan.broadcast_rate != "auto":
        return float(plan.broadcast_rate)
    rates = [
        stats.median([w.figures.get("broadcasts", 0.0) / w.elapsed_s for w in windows])
        for windows in capacities
        if windows and all(w.elapsed_s for w in windows)
    ]
    return max(1.0, round(plan.latency_load * min(rates), 1)) if rates else None


def plan_at(plan: LoadPlan, parameter: str, value: int) -> LoadPlan:
    """``plan`` at one sweep point."""
    changes: dict[str, Any] = {parameter: value}
    return replace(plan, **changes)


def echo_payload_file(directory: Path, size: int) -> Path:
    """A JSON string of exactly ``size`` bytes for echo's payload sweep (generated data)."""
    path = directory / f"payload-{size}.json"
    path.write_text(json.dumps("x" * max(0, size - 2)), encoding="utf-8")
    return path


def reply_contract(plan: LoadPlan, mode: str, source: str) -> dict[str, Any]:
    """The [load] reply-contract keys as LoadConfig fields for a variant in ``mode``
    (event, reply_event and ack belong to Socket.IO variants only)."""
    contract: dict[str, Any] = {"reply": plan.reply}
    if plan.payload_file is not None:
        path = Path(plan.payload_file)
        if not path.is_absolute():
            path = Path(source).parent / path
        contract["payload_file"] = str(path)
    if mode == "socketio":
        contract.update(event=plan.event, reply_event=plan.reply_event, ack=plan.ack)
    return contract


def check_echo_plan(plan: LoadPlan, source: str) -> None:
    """Every echo window's LoadConfig, built now so a bad value fails before any server starts."""
    rate = None if plan.latency_rate == "auto" else float(plan.latency_rate)
    for duration, window_rate in (
        (plan.capacity_window_s, None),
        (plan.latency_window_s, rate),
        (plan.profile_window_s, None),
    ):
        LoadConfig(
            url="ws://127.0.0.1:1/",
            connections=plan.connections,
            in_flight=plan.in_flight,
            rate=window_rate,
            duration=duration,
            payload=plan.payload,
            warmup=plan.warmup_s,
            **reply_contract(plan, "raw", source),
        )


def client_connections(plan: LoadPlan) -> int:
    """Sockets the client holds at once in ``plan``'s windows."""
    if plan.workload == "broadcast":
        return plan.recipients
    if plan.workload == "connect":
        return plan.connect_concurrency
    return plan.connections
