"""Run a scenario: start each variant's server, measure clean windows, profile; return the record.

Order of work, chosen for honest figures on a small shared machine:
1. every variant's server is started (pinned to its own core) and kept up;
2. capacity windows (closed loop) run round-robin over the variants, `repeats`
   times, so slow drift of the machine spreads over all variants alike;
3. the offered rate for the latency windows is fixed once for all variants
   (default: half the slowest variant's capacity), then open-loop windows run
   round-robin the same way;
4. a separate profiled window per variant (py-spy), never mixed with the
   clean figures; its throughput over the clean one is the profiler overhead.

The runner only measures: it returns a :class:`ScenarioRecord` and reports
progress through a callback; analysis and presentation happen elsewhere.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wsprof import fastpath, stats
from wsprof.client.base import LoadConfig, LoadError, ensure_fd_limit, raise_fd_limit
from wsprof.client.driver import run_load
from wsprof.env import environment
from wsprof.errors import MeasurementError, WsprofError
from wsprof.progress import OnProgress
from wsprof.scenario.closure import Row, needed_rows
from wsprof.scenario.contention import OtherLoad
from wsprof.scenario.counted import count_variant
from wsprof.scenario.files import (
    MAX_RATE_HZ,
    MAX_REPEATS,
    REDIS_PROBE,
    LoadPlan,
    Scenario,
    Variant,
    file_component,
    printable,
)
from wsprof.scenario.placement import pinning, worker_warnings
from wsprof.scenario.record import ScenarioRecord, SweepPoint, VariantRun, Window
from wsprof.scenario.recording import WindowRecording, window_s
from wsprof.scenario.rundirs import check_out_dir, claim_run_dir
from wsprof.scenario.sweep import Sweep
from wsprof.scenario.workloads import (
    Target,
    broadcast_rate,
    check_echo_plan,
    client_connections,
    echo_payload_file,
    has_latency_phase,
    packet_format,
    plan_at,
    reply_contract,
    workload_window,
)
from wsprof.servers.appcmd import check_installed
from wsprof.servers.appserver import AppServerProcess
from wsprof.servers.launcher import ServerFailed, ServerProcess
from wsprof.servers.stacks import validate_options

"""Called as each step starts: (what, steps done, steps in all)."""


__all__ = ["ScenarioRunner", "check_out_dir", "claim_run_dir", "packet_format", "reply_contract"]


def _profile_settings(plan: LoadPlan, rate_hz: int | None, native: bool) -> tuple[int, float]:
    """Sampling rate and profiled window: the scenario's, or with --native the native defaults.

    Native samples pause the server, so unless a rate is given it is the low native rate and
    the window long enough for >= 2,000 samples at it (never shorter than the scenario's).
    """
    from wsprof.profiling.pyspy import NATIVE_RATE_HZ, native_window_s

    if not native:
        return rate_hz or plan.profile_rate_hz, plan.profile_window_s
    rate = rate_hz or NATIVE_RATE_HZ
    return rate, max(plan.profile_window_s, native_window_s(rate))


@dataclass
class LiveVariant:
    """One variant while it is being measured: its server and the windows so far."""

    variant: Variant
    server: ServerProcess | None = None
    capacity: list[Window] = field(default_factory=list)
    latency: list[Window] = field(default_factory=list)
    profiled: Window | None = None
    folded: Path | None = None
    rss_bytes: int = 0
    error: str | None = None
    pyspy: dict[str, Any] | None = None  # py-spy's own summary of the profiled window
    extra_servers: list[ServerProcess] = field(default_factory=list)  # processes = N > 1
    broker: Any = None  # the scenario's RedisServer, for a variant with manager = "redis"

    @property
    def ok(self) -> bool:
        return self.error is None

    def target(self) -> Target:
        assert self.server is not None
        return Target([self.server, *self.extra_servers], self.broker)

    def next_point(self) -> LiveVariant:
        """The same servers for the next sweep point; a variant that failed stays failed."""
        return LiveVariant(
            self.variant,
            self.server,
            error=self.error,
            extra_servers=self.extra_servers,
            broker=self.broker,
        )

    def freeze(self) -> VariantRun:
        return VariantRun(
            variant=self.variant,
            server_options=self.server.options if self.server is not None else None,
            capacity=tuple(self.capacity),
            latency=tuple(self.latency),
            profiled=self.profiled,
            folded=None if self.folded is None else str(self.folded),
            rss_bytes=self.rss_bytes,
            error=self.error,
            pyspy=self.pyspy,
        )


class ScenarioRunner:
    """Measures one scenario; :meth:`run` returns its record."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        quick: bool = False,
        out_dir: Path = Path("flamegraphs"),
        profile: bool = True,
        rate_hz: int | None = None,
        native: bool = False,
        rules: Path | None = None,
        repeats: int | None = None,
        on_progress: OnProgress | None = None,
    ) -> None:
        self.scenario = scenario
        self.quick = quick
        plan = scenario.plan(quick)
        self.plan: LoadPlan = plan if repeats is None else replace(plan, repeats=repeats)
        self.profile = profile
        self.native = native
        self.rate_hz, window = _profile_settings(self.plan, rate_hz, native)
        self.plan = replace(self.plan, profile_window_s=window)  # the record says what ran
        self.rules = rules
        self.on_progress = on_progress
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out_root = Path(out_dir)
        # Claimed (created, never shared) when profiling starts; names from sanitised names.
        self.out_dir = self.out_root / file_component(scenario.name) / self.run_id
        self.server_cpu, self.client_cpus = pinning()
        self.client = "fast" if fastpath.available("_loadclient") else "reference"
        self.runs = [LiveVariant(v) for v in scenario.variants]
        self.sweep: Sweep | None = scenario.sweep_for(quick)
        self.sweep_points: list[SweepPoint] = []
        self.broker: Any = None
        self.broker_error: str | None = None
        self.latency_rate: float | None = None
        self.profiler_note: str | None = None
        self.micro_results: list[dict[str, Any]] = []
        self.closure_note: str | None = None
        self.counted: dict[str, dict[str, Any]] = {}
        self.floor_us: float | None = None
        self._pyspy: Any = None  # the py-spy module once it is known to work here
        n = len(self.runs)
        points = 1 if self.sweep is None else len(self.sweep.points)
        broker = any(v.options.get("manager") == "redis" for v in scenario.variants)
        self._steps = n * (1 + points * 2 * self.plan.repeats + (2 if profile else 0)) + (
            (1 if profile else 0) + (1 if broker else 0)
        )
        self._done = 0

    def _advance(self, description: str) -> None:
        if self.on_progress is not None:
            self.on_progress(description, self._done, self._steps)
        self._done += 1

    # -- windows ---------------------------------------------------------------

    def _window(
        self,
        run: LiveVariant,
        kind: str,
        duration: float,
        rate: float | None,
        on_mark: Callable[[str], None] | None = None,
    ) -> Window:
        if self.plan.workload != "echo":
            window = workload_window(
                run.target(), self.plan, kind, duration, rate, client=self.client, on_mark=on_mark
            )
            run.rss_bytes = max(run.rss_bytes, run.target().rss_bytes())
            return window
        server = run.server
        assert server is not None
        marks: dict[str, float] = {}
        splits: dict[str, tuple[float, float]] = {}

        def mark(name: str) -> None:
            marks[name] = server.cpu_seconds()
            splits[name] = server.cpu_split()
            if on_mark is not None:
                on_mark(name)

        config = LoadConfig(
            url=server.url,
            mode=server.mode,
            connections=self.plan.connections,
            in_flight=self.plan.in_flight,
            rate=rate,
            duration=duration,
            payload=self.plan.payload,
            serializer=packet_format(server.serializer),
            warmup=self.plan.warmup_s,
            on_window=mark,
            **reply_contract(self.plan, server.mode, self.scenario.source),
        )
        others = OtherLoad().start()
        result = run_load(config, client=self.client, cpus=self.client_cpus)
        other_cpu_cores = others.stop()
        server.check_alive()
        if "start" not in marks or "end" not in marks:
            raise MeasurementError(f"{self.client} client did not mark its measurement window")
        run.rss_bytes = max(run.rss_bytes, server.rss_bytes())
        return Window(
            kind=kind,
            messages=result.messages,
            elapsed_s=result.elapsed_s,
            server_cpu_s=marks["end"] - marks["start"],
            client_cpu_us_per_msg=result.client_cpu_us_per_msg,
            client_busy=result.worker_busy_max,
            client_bound=result.client_bound,
            errors=result.errors,
            histogram=result.histogram,
            other_cpu_cores=other_cpu_cores,
            server_user_s=splits["end"][0] - splits["start"][0],
            server_system_s=splits["end"][1] - splits["start"][1],
        )

    def _capacity_window(self, run: LiveVariant) -> None:
        run.capacity.append(self._window(run, "capacity", self.plan.capacity_window_s, None))

    def _latency_window(self, run: LiveVariant) -> None:
        run.latency.append(
            self._window(run, "latency", self.plan.latency_window_s, self.latency_rate)
        )

    def _guarded(self, run: LiveVariant, step: Callable[[LiveVariant], None]) -> None:
        """Run one step; a server or client failure ends this variant, not the scenario."""
        if not run.ok:
            return
        try:
            step(run)
        except (ServerFailed, LoadError, MeasurementError) as exc:
            run.error = str(exc)
            if run.server is not None:
                try:
                    run.server.check_alive()
                except ServerFailed as died:  # the client's error is a symptom: show the cause
                    run.error = f"{died} (the client saw: {exc})"
                run.server.stop()

    # -- phases ----------------------------------------------------------------

    def _start_broker(self, stack: ExitStack) -> None:
        """One redis-server for the scenario when a variant uses the redis manager."""
        if not any(v.options.get("manager") == "redis" for v in self.scenario.variants):
            return
        from wsprof.servers.redis import RedisServer

        self._advance("starting redis-server")
        broker = RedisServer(cpu=self.server_cpu)
        stack.callback(broker.stop)
        try:
            self.broker = broker.start()
        except ServerFailed as exc:
            self.broker_error = f"redis-server failed to start: {exc}"

    def _server_options(self, variant: Variant, broker_url: str | None) -> dict[str, str]:
        """The variant's options, with what its workload and the broker need."""
        options = dict(variant.options)
        if self.plan.workload == "broadcast":
            options["handler"] = "broadcast"
        if options.get("manager") == "redis" and broker_url is not None:
            options["redis_url"] = broker_url
        return options

    def _start_servers(self, stack: ExitStack) -> None:
        for run in self.runs:
            self._advance(f"starting {run.variant.name}")
            redis = run.variant.options.get("manager") == "redis"
            if redis and self.broker_error is not None:
                run.error = self.broker_error
                continue
            run.broker = self.broker if redis else None
            spec = run.variant.app_spec()
            options = self._server_options(run.variant, self.broker and self.broker.url)
            servers: list[ServerProcess] = [
                ServerProcess(
                    run.variant.stack,
                    options,
                    port=run.variant.port if i == 0 else 0,
                    cpu=self.server_cpu,
                )
                if spec is None
                else AppServerProcess(spec, cpu=self.server_cpu)
                for i in range(run.variant.processes)
            ]
            for server in servers:
                stack.callback(server.stop)
            try:
                run.server = servers[0].start()
                run.extra_servers = [server.start() for server in servers[1:]]
            except ServerFailed as exc:
                run.error = f"server failed to start: {exc}"

    def _capacity(self) -> None:
        """Closed-loop windows, round-robin; the last round pairs each with a profiled window.

        The profiled window runs right after the same variant's last clean window,
        so the profiler's overhead is a paired ratio of two adjacent windows, not
        one window against a median taken minutes apart on a shared machine.
        """
        for r in range(self.plan.repeats):
            last = r == self.plan.repeats - 1
            for run in self.runs:
                self._advance(f"capacity {run.variant.name} ({r + 1}/{self.plan.repeats})")
                self._guarded(run, self._capacity_window)
                if last and self._pyspy is not None:
                    mode = ", native: blocking" if self.native else ""
                    self._advance(
                        f"profiling {run.variant.name} (py-spy at {self.rate_hz} Hz{mode}, "
                        f"{self.plan.profile_window_s:g} s)"
                    )
                    self._guarded(run, self._profile_one)

    def _choose_rate(self) -> None:
        if self.plan.workload != "echo":
            self.latency_rate = None
            if self.plan.workload == "broadcast":
                ok = [run.capacity for run in self.runs if run.ok]
                self.latency_rate = broadcast_rate(self.plan, ok)
            return
        if self.plan.latency_rate != "auto":
            self.latency_rate = float(self.plan.latency_rate)
            return
        capacities = [
            stats.median([w.msgs_per_s for w in run.capacity]) for run in self.runs if run.ok
        ]
        if capacities:
            self.latency_rate = max(1.0, round(self.plan.latency_load * min(capacities)))

    def _latency(self) -> None:
        rate = self.latency_rate
        if rate is None or not has_latency_phase(self.plan.workload):
            return
        for r in range(self.plan.repeats):
            for run in self.runs:
                self._advance(
                    f"latency {run.variant.name} at {rate:,.0f} msgs/s "
                    f"({r + 1}/{self.plan.repeats})"
                )
                self._guarded(run, self._latency_window)

    def _check_profiler(self) -> None:
        """py-spy must be able to attach; if not, say why and measure without it."""
        from wsprof.profiling import pyspy

        try:
            pyspy.check_ptrace()
        except pyspy.ProfilerUnavailable as exc:
            self.profiler_note = str(exc)
            return
        self.out_dir = claim_run_dir(
            self.out_root / file_component(self.scenario.name), self.run_id
        )
        self._pyspy = pyspy

    def _profile_one(self, run: LiveVariant) -> None:
        """The separate profiled window: py-spy on every server process (see recording.py)."""
        pyspy = self._pyspy
        assert run.server is not None and pyspy is not None
        duration = window_s(self.plan.profile_window_s, self.native, self.rate_hz, run.capacity)
        recording = WindowRecording(
            pyspy,
            [run.server, *run.extra_servers],
            self.out_dir / f"{file_component(run.variant.name)}.folded",
            duration=duration,
            rate=self.rate_hz,
            native=self.native,
        )

        def on_mark(name: str) -> None:
            if name == "start":
                recording.start()

        try:
            run.profiled = self._window(run, "profile", duration, None, on_mark)
            run.pyspy = recording.finish()
            run.folded = recording.folded
        except pyspy.ProfilerUnavailable as exc:
            self.profiler_note = str(exc)
            self._pyspy = None
        finally:
            recording.stop()

    def _count(self) -> None:
        """The counted closure's phase: per variant, its own instrumented server and one window."""
        for run in self.runs:
            self._advance(f"counting events per message of {run.variant.name}")
            if run.ok and run.server is not None:
                self.counted[run.variant.name] = count_variant(
                    run.variant,
                    run.server,
                    self.plan,
                    self.scenario.source,
                    client=self.client,
                    server_cpu=self.server_cpu,
                    client_cpus=self.client_cpus,
                )

    def _predict(self) -> None:
        """Micro predictions for the closure check, and the client+kernel floor."""
        from wsprof.scenario.predict import measure_predictions

        self._advance("closure: micro predictions and the loopback floor")
        rows: list[Row] = []
        for run in self.runs:
            counted = self.counted.get(run.variant.name, {})
            if run.ok and run.server is not None and "error" not in counted:
                for row in needed_rows(run.server.options, self.plan.payload, counted):
                    if row not in rows:
                        rows.append(row)
        try:
            self.micro_results = measure_predictions(rows, self.quick)
        except MeasurementError as exc:
            self.closure_note = f"closure unavailable: {exc}"
        if fastpath.available("_loadclient"):
            from wsprof.client.bench import measure_floor_us

            cpu = self.client_cpus[0] if self.client_cpus else None
            self.floor_us = measure_floor_us(cpu, repeats=3, seconds=0.3)

    def _measure_point(self) -> None:
        self._capacity()
        self._choose_rate()
        self._latency()

    def _sweep(self, sweep: Sweep, stack: ExitStack) -> None:
        """Every point in turn on the same servers (no parameter of a sweep needs a restart);
        py-spy records at the last point only, so profiling never repeats per point."""
        base = self.plan
        payloads = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsprof-")))
        pyspy = self._pyspy
        for i, value in enumerate(sweep.points):
            last = i == len(sweep.points) - 1
            self.plan = plan_at(base, sweep.parameter, value)
            if sweep.parameter == "payload_bytes" and base.workload == "echo":
                self.plan = replace(self.plan, payload_file=str(echo_payload_file(payloads, value)))
            if i:
                self.runs = [run.next_point() for run in self.runs]
            self._pyspy = pyspy if last else None
            self._measure_point()
            self.sweep_points.append(
                SweepPoint(value, tuple(run.freeze() for run in self.runs), self.latency_rate)
            )
        self.plan = base

    # -- the whole run ----------------------------------------------------------

    def preflight(self) -> None:
        """Every limit the load client will apply, checked now: before any server starts.

        The scenario file's checks already hold these bounds; this catches what
        the command line changed (--repeats) and the file-descriptor limit, and
        names the scenario file rather than a flag of `wsprof load`.
        """
        check_out_dir(self.out_root)
        plan = self.plan
        if plan.repeats > MAX_REPEATS:  # only the command line can get here: the file is checked
            raise WsprofError(f"--repeats must be at most {MAX_REPEATS}, not {plan.repeats}")
        if self.rate_hz > MAX_RATE_HZ:
            raise WsprofError(f"--rate-hz must be at most {MAX_RATE_HZ}, not {self.rate_hz}")
        try:
            points: list[int | None] = [None] if self.sweep is None else [*self.sweep.points]
            for point in points:
                if point is not None:
                    assert self.sweep is not None
                    plan = plan_at(self.plan, self.sweep.parameter, point)
                if plan.workload == "echo" and not (
                    self.sweep is not None and self.sweep.parameter == "payload_bytes"
                ):
                    check_echo_plan(plan, self.scenario.source)
                if plan.workload in ("idle", "connect"):
                    # Raised as far as it goes; a limit still too low is met mid-ramp as a
                    # ConnectionLimit, and the points measured before it are kept.
                    raise_fd_limit(client_connections(plan))
                else:
                    ensure_fd_limit(client_connections(plan))
            for variant in self.scenario.variants:
                if (spec := variant.app_spec()) is not None:
                    check_installed(spec)
                else:  # the options the runner adds (handler, redis_url) must be known
                    validate_options(variant.stack, self._server_options(variant, REDIS_PROBE))
            if any(v.options.get("manager") == "redis" for v in self.scenario.variants):
                from wsprof.servers.redis import require_redis_server

                require_redis_server()
        except WsprofError as exc:
            raise WsprofError(f"{printable(self.scenario.source)}: {exc}") from None

    def worker_warnings(self) -> list[str]:
        """Variants whose workers outnumber the cores they get: their figures share cores."""
        return worker_warnings(self.scenario.variants, self.server_cpu)

    def run(self) -> ScenarioRecord:
        """Measure every variant (servers are always stopped on the way out)."""
        started = time.monotonic()
        self.preflight()
        with ExitStack() as stack:
            if self.profile:
                self._check_profiler()
            self._start_broker(stack)
            self._start_servers(stack)
            if self.sweep is None:
                self._measure_point()
            else:
                self._sweep(self.sweep, stack)
            for run in self.runs:
                for server in (run.server, *run.extra_servers):
                    if server is not None:
                        server.stop()
            if self.profile and self.profiler_note is None:
                self._count()
                self._predict()
        if self.on_progress is not None:
            self.on_progress("done", self._steps, self._steps)
        return self._record(time.monotonic() - started)

    def _record(self, wall_time_s: float) -> ScenarioRecord:
        scenario = self.scenario
        return ScenarioRecord(
            scenario=scenario.name,
            description=scenario.description,
            question=scenario.question,
            source=scenario.source,
            quick=self.quick,
            plan=self.plan,
            client=self.client,
            server_cpu=self.server_cpu,
            client_cpus=None if self.client_cpus is None else tuple(self.client_cpus),
            profile=self.profile,
            profiler_note=self.profiler_note,
            rate_hz=self.rate_hz,
            native=self.native,
            rules=None if self.rules is None else str(self.rules),
            out_dir=str(self.out_dir),
            env={
                **environment(
                    server_cpu=self.server_cpu, client_cpus=self.client_cpus, client=self.client
                ),
                "warnings": self.worker_warnings(),
            },
            runs=tuple(run.freeze() for run in self.runs),
            latency_rate=self.latency_rate,
            micro_results=tuple(self.micro_results),
            closure_note=self.closure_note,
            counted=dict(self.counted),
            floor_us=self.floor_us,
            wall_time_s=round(wall_time_s, 1),
            sweep_parameter=None if self.sweep is None else self.sweep.parameter,
            sweep_points=tuple(self.sweep_points),
        )
