"""Run a scenario: start each variant's server, measure clean windows, profile, attribute.

Order of work, chosen for honest figures on a small shared machine:
1. every variant's server is started (pinned to its own core) and kept up;
2. capacity windows (closed loop) run round-robin over the variants, `repeats`
   times, so slow drift of the machine spreads over all variants alike;
3. the offered rate for the latency windows is fixed once for all variants
   (default: half the slowest variant's capacity), then open-loop windows run
   round-robin the same way;
4. a separate profiled window per variant (py-spy), never mixed with the
   clean figures; its throughput over the clean one is the profiler overhead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wsprof import fastpath, stats
from wsprof.client.base import LoadConfig, LoadError
from wsprof.client.driver import run_load
from wsprof.client.histogram import PyHistogram, latency_summary_us
from wsprof.errors import MeasurementError, WsprofError
from wsprof.report.console import make_console
from wsprof.report.jsonout import write_json
from wsprof.scenarios import LoadPlan, Scenario, Variant, load_scenario, shipped_scenarios
from wsprof.servers.launcher import ServerFailed, ServerProcess

SCHEMA = "wsprof.scenario/1"


@dataclass
class Window:
    """One load window against one server, with the server's CPU over exactly that window."""

    kind: str  # capacity | latency | profile
    messages: int
    elapsed_s: float
    server_cpu_s: float
    client_cpu_us_per_msg: float
    client_busy: float
    client_bound: bool
    errors: dict[str, int]
    histogram: dict[str, Any]

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def server_cpu_us_per_msg(self) -> float:
        return self.server_cpu_s * 1e6 / self.messages if self.messages else 0.0


@dataclass
class VariantRun:
    variant: Variant
    server: ServerProcess | None = None
    capacity: list[Window] = field(default_factory=list)
    latency: list[Window] = field(default_factory=list)
    profiled: Window | None = None
    folded: Path | None = None
    rss_bytes: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def packet_format(serializer: str) -> str:
    """What the client must speak: orjson (through the shim) still writes JSON packets."""
    return "msgpack" if serializer == "msgpack" else "json"


def _pinning() -> tuple[int | None, list[int] | None]:
    """Server on one core, client on another, when there are two or more."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        return cores[-1], [cores[0]]
    return None, None


class ScenarioRunner:
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
        console: Console | None = None,
    ) -> None:
        self.scenario = scenario
        self.quick = quick
        plan = scenario.plan(quick)
        self.plan: LoadPlan = plan if repeats is None else replace(plan, repeats=repeats)
        self.profile = profile
        self.rate_hz = rate_hz or self.plan.profile_rate_hz
        self.native = native
        self.rules = rules
        self.console = console or Console(stderr=True)
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out_dir = Path(out_dir) / scenario.name / self.run_id
        self.server_cpu, self.client_cpus = _pinning()
        self.client = "fast" if fastpath.available("_fastclient") else "reference"
        self.runs = [VariantRun(v) for v in scenario.variants]
        self.latency_rate: float | None = None
        self.profiler_note: str | None = None
        self.micro_results: list[dict[str, Any]] = []
        self.closure_note: str | None = None
        self.floor_us: float | None = None
        self._pyspy: Any = None  # the py-spy module once it is known to work here

    # -- windows ---------------------------------------------------------------

    def _window(
        self,
        run: VariantRun,
        kind: str,
        duration: float,
        rate: float | None,
        on_mark: Callable[[str], None] | None = None,
    ) -> Window:
        server = run.server
        assert server is not None
        marks: dict[str, float] = {}

        def mark(name: str) -> None:
            marks[name] = server.cpu_seconds()
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
        )
        result = run_load(config, client=self.client, cpus=self.client_cpus)
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
        )

    def _guarded(self, run: VariantRun, step: Callable[[], None]) -> None:
        """Run one step; a server or client failure ends this variant, not the scenario."""
        if not run.ok:
            return
        try:
            step()
        except (ServerFailed, LoadError, MeasurementError) as exc:
            run.error = str(exc)
            if run.server is not None:
                try:
                    run.server.check_alive()
                except ServerFailed as died:  # the client's error is a symptom: show the cause
                    run.error = f"{died} (the client saw: {exc})"
                run.server.stop()

    # -- phases ----------------------------------------------------------------

    def _start_servers(self, stack: ExitStack, advance: Callable[[str], None]) -> None:
        for run in self.runs:
            advance(f"starting {run.variant.name}")
            server = ServerProcess(
                run.variant.stack, run.variant.options, port=run.variant.port, cpu=self.server_cpu
            )
            stack.callback(server.stop)
            try:
                run.server = server.start()
            except ServerFailed as exc:
                run.error = f"server failed to start: {exc}"

    def _capacity(self, advance: Callable[[str], None]) -> None:
        """Closed-loop windows, round-robin; the last round pairs each with a profiled window.

        The profiled window runs right after the same variant's last clean window,
        so the profiler's overhead is a paired ratio of two adjacent windows, not
        one window against a median taken minutes apart on a shared machine.
        """
        for r in range(self.plan.repeats):
            last = r == self.plan.repeats - 1
            for run in self.runs:
                advance(f"capacity {run.variant.name} ({r + 1}/{self.plan.repeats})")
                self._guarded(
                    run,
                    lambda run=run: run.capacity.append(
                        self._window(run, "capacity", self.plan.capacity_window_s, None)
                    ),
                )
                if last and self._pyspy is not None:
                    advance(f"profiling {run.variant.name} (py-spy at {self.rate_hz} Hz)")
                    self._guarded(run, lambda run=run: self._profile_one(run))

    def _choose_rate(self) -> None:
        if self.plan.latency_rate != "auto":
            self.latency_rate = float(self.plan.latency_rate)
            return
        capacities = [
            stats.median([w.msgs_per_s for w in run.capacity]) for run in self.runs if run.ok
        ]
        if capacities:
            self.latency_rate = max(1.0, round(self.plan.latency_load * min(capacities)))

    def _latency(self, advance: Callable[[str], None]) -> None:
        if self.latency_rate is None:
            return
        for r in range(self.plan.repeats):
            for run in self.runs:
                advance(
                    f"latency {run.variant.name} at {self.latency_rate:,.0f} msgs/s ({r + 1}/{self.plan.repeats})"
                )
                self._guarded(
                    run,
                    lambda run=run: run.latency.append(
                        self._window(run, "latency", self.plan.latency_window_s, self.latency_rate)
                    ),
                )

    def _check_profiler(self) -> None:
        """py-spy must be able to attach; if not, say why and measure without it."""
        from wsprof.profiling import pyspy

        try:
            pyspy.check_ptrace()
        except pyspy.ProfilerUnavailable as exc:
            self.profiler_note = str(exc)
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pyspy = pyspy

    def _profile_one(self, run: VariantRun) -> None:
        # py-spy runs --nonblocking (it reads the server's memory without pausing it:
        # a paused server loses throughput, which would be the profiler's, not the
        # stack's), started from the client's thread so it shares the client's core.
        pyspy = self._pyspy
        assert run.server is not None and pyspy is not None
        folded = self.out_dir / f"{run.variant.name}.folded"
        recorders: list[Any] = []

        def on_mark(name: str) -> None:
            if name == "start":
                recorders.append(
                    pyspy.Recorder(
                        run.server.pid,
                        folded,
                        duration=self.plan.profile_window_s,
                        rate=self.rate_hz,
                        native=self.native,
                        nonblocking=True,
                    ).start()
                )

        try:
            run.profiled = self._window(run, "profile", self.plan.profile_window_s, None, on_mark)
            for recorder in recorders:
                recorder.wait()
            run.folded = folded
        except pyspy.ProfilerUnavailable as exc:
            self.profiler_note = str(exc)
            self._pyspy = None
        finally:
            for recorder in recorders:
                recorder.stop()

    def _predict(self, advance: Callable[[str], None]) -> None:
        """Micro predictions for the closure check, and the client+kernel floor."""
        from wsprof.closure import measure_predictions, needed_rows

        advance("closure: micro predictions and the loopback floor")
        variants = [
            (run.variant.stack, run.server.options) for run in self.runs if run.ok and run.server
        ]
        try:
            self.micro_results = measure_predictions(
                needed_rows(variants, self.plan.payload), self.quick
            )
        except MeasurementError as exc:
            self.closure_note = f"closure unavailable: {exc}"
        if fastpath.available("_fastclient"):
            from wsprof.client.bench import measure_floor_us

            cpu = self.client_cpus[0] if self.client_cpus else None
            self.floor_us = measure_floor_us(cpu, repeats=3, seconds=0.3)

    # -- the whole run ----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        n = len(self.runs)
        total = n * (1 + 2 * self.plan.repeats + (1 if self.profile else 0)) + (
            1 if self.profile else 0
        )
        with (
            ExitStack() as stack,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task(f"{self.scenario.name}", total=total)
            started = {"first": True}

            def advance(description: str) -> None:
                if not started["first"]:
                    progress.advance(task)
                started["first"] = False
                progress.update(task, description=f"{self.scenario.name}: {description}")

            if self.profile:
                self._check_profiler()
            self._start_servers(stack, advance)
            self._capacity(advance)
            self._choose_rate()
            self._latency(advance)
            for run in self.runs:
                if run.server is not None:
                    run.server.stop()
            if self.profile and self.profiler_note is None:
                self._predict(advance)
            progress.update(task, completed=total)
        from wsprof.analysis import build_document

        return build_document(self)


def scenario_command(
    name: str,
    *,
    quick: bool,
    json_path: Path | None,
    out_dir: Path,
    profile: bool,
    rate_hz: int | None,
    native: bool,
    rules: Path | None,
    repeats: int | None,
) -> int:
    from wsprof.report.scenario import render_scenario

    scenario = load_scenario(name)
    if rules is not None and not rules.is_file():
        raise WsprofError(f"rules file {str(rules)!r} does not exist")
    console = make_console()
    started = time.monotonic()
    runner = ScenarioRunner(
        scenario,
        quick=quick,
        out_dir=out_dir,
        profile=profile,
        rate_hz=rate_hz,
        native=native,
        rules=rules,
        repeats=repeats,
    )
    document = runner.run()
    document["wall_time_s"] = round(time.monotonic() - started, 1)
    render_scenario(document, console)
    if json_path is not None:
        write_json(json_path, document)
        console.print(f"wrote {json_path}")
    if not document["complete"]:
        failed = [v for v in document["variants"] if v["status"] != "ok"]
        for v in failed:
            print(f"wsprof: error: variant {v['name']}: {v['error']}", file=sys.stderr)
        return 1
    return 0


def list_scenarios_command() -> int:
    from rich.table import Table

    table = Table(title="wsprof scenarios (run: wsprof scenario NAME)")
    table.add_column("name", style="bold")
    table.add_column("variants")
    table.add_column("description")
    for name, path in shipped_scenarios().items():
        scenario = load_scenario(str(path))
        table.add_row(name, ", ".join(v.name for v in scenario.variants), scenario.description)
    make_console().print(table)
    return 0


def merged_latency(windows: list[Window]) -> dict[str, float]:
    hist = PyHistogram()
    for w in windows:
        hist.merge(w.histogram)
    return latency_summary_us(hist)
