"""What a scenario run measured: typed, frozen, and saved in its own JSON form.

The runner produces a :class:`ScenarioRecord` and nothing else; analysis reads
only the record (and the stacks of its recordings), so a saved record can be
analysed again without measuring again. Each class owns its JSON form, as
pyperf's ``Benchmark``/``Run`` do, under one format version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from wsprof.errors import WsprofError
from wsprof.scenario.files import LoadPlan, Variant

RECORD_FORMAT = "wsprof.scenario-record/1"


class RecordFormatError(WsprofError, ValueError):
    """A document that is not a record this version of wsprof can read."""


@dataclass(frozen=True)
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
    histogram: dict[str, Any]  # the client's latency histogram, in its dict (mergeable) form
    # Average cores other processes (not wsprof's, not the kernel's) kept busy during the
    # window's load run: another load on the machine skews every figure of the window.
    other_cpu_cores: float = 0.0
    # Workload figures of the window (broadcasts, deliveries, missing, connections, ...).
    figures: dict[str, float] = field(default_factory=dict)
    # The kernel's user/system split of the server tree over the window (/proc stat ticks):
    # attribution's kernel-io is checked against (or apportioned from) the system part.
    server_user_s: float = 0.0
    server_system_s: float = 0.0

    @property
    def system_share(self) -> float | None:
        """System time over user + system of the window (None when no ticks were seen)."""
        total = self.server_user_s + self.server_system_s
        return self.server_system_s / total if total > 0 else None

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def server_cpu_us_per_msg(self) -> float:
        return self.server_cpu_s * 1e6 / self.messages if self.messages else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        hist = dict(data["histogram"])
        # JSON object keys are strings; the histogram's bucket indices are ints.
        hist["counts"] = {int(k): n for k, n in hist["counts"].items()}
        return cls(
            **{
                **data,
                "errors": dict(data["errors"]),
                "histogram": hist,
                "figures": dict(data.get("figures", {})),
            }
        )


def _window_or_none(data: dict[str, Any] | None) -> Window | None:
    return None if data is None else Window.from_json(data)


@dataclass(frozen=True)
class VariantRun:
    """Everything measured for one variant; ``error`` ends the variant, not the scenario."""

    variant: Variant
    server_options: dict[str, str] | None  # as the server was started; None if it never was
    capacity: tuple[Window, ...] = ()
    latency: tuple[Window, ...] = ()
    profiled: Window | None = None  # the separate window py-spy recorded
    folded: str | None = None  # py-spy's folded file of that window
    rss_bytes: int = 0
    error: str | None = None
    # py-spy's summary of its recording (samples taken, errors, seconds); None if none.
    pyspy: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def options(self) -> dict[str, str]:
        """The options the server ran with (the declared ones if it never started)."""
        return self.server_options if self.server_options is not None else self.variant.options

    def as_json(self) -> dict[str, Any]:
        return {
            "variant": asdict(self.variant),
            "server_options": self.server_options,
            "capacity": [w.as_json() for w in self.capacity],
            "latency": [w.as_json() for w in self.latency],
            "profiled": None if self.profiled is None else self.profiled.as_json(),
            "folded": self.folded,
            "rss_bytes": self.rss_bytes,
            "error": self.error,
            "pyspy": self.pyspy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantRun:
        return cls(
            variant=Variant(**data["variant"]),
            server_options=data["server_options"],
            capacity=tuple(Window.from_json(w) for w in data["capacity"]),
            latency=tuple(Window.from_json(w) for w in data["latency"]),
            profiled=_window_or_none(data["profiled"]),
            folded=data["folded"],
            rss_bytes=data["rss_bytes"],
            error=data["error"],
            pyspy=data.get("pyspy"),
        )


@dataclass(frozen=True)
class SweepPoint:
    """Every variant measured at one point of a sweep (servers kept up between points)."""

    value: int
    runs: tuple[VariantRun, ...]
    latency_rate: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "runs": [run.as_json() for run in self.runs],
            "latency_rate": self.latency_rate,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepPoint:
        return cls(
            value=data["value"],
            runs=tuple(VariantRun.from_json(r) for r in data["runs"]),
            latency_rate=data["latency_rate"],
        )


@dataclass(frozen=True)
class ScenarioRecord:
    """A whole scenario run: what was asked, where it ran, and every variant's windows."""

    scenario: str
    description: str
    question: str
    source: str
    quick: bool
    plan: LoadPlan
    client: str  # "fast" | "reference": which load client drove the windows
    server_cpu: int | None  # pinning: the server's core, the client's cores
    client_cpus: tuple[int, ...] | None
    profile: bool  # profiling asked for
    profiler_note: str | None  # why profiling was unavailable, if it was
    rate_hz: int
    native: bool
    rules: str | None  # the --rules file, None for the defaults
    out_dir: str
    env: dict[str, Any]
    runs: tuple[VariantRun, ...]
    latency_rate: float | None = None  # the open-loop rate every variant was offered
    micro_results: tuple[dict[str, Any], ...] = ()  # `wsprof micro` rows for the closure check
    closure_note: str | None = None
    # Per variant name: the instrumented window's counts (wsprof.servers.counting), or its error.
    counted: dict[str, dict[str, Any]] = field(default_factory=dict)
    floor_us: float | None = None  # the client+kernel floor of one round trip
    wall_time_s: float | None = None
    # A sweep: its parameter and every point; ``runs`` are then the last point's (profiled).
    sweep_parameter: str | None = None
    sweep_points: tuple[SweepPoint, ...] = ()

    @property
    def profiling_ok(self) -> bool:
        return self.profile and self.profiler_note is None

    def as_json(self) -> dict[str, Any]:
        data = {
            name: getattr(self, name)
            for name in (f.name for f in fields(self))
            if name not in ("plan", "runs", "client_cpus", "micro_results", "sweep_points")
        }
        return {
            "format": RECORD_FORMAT,
            **data,
            "plan": asdict(self.plan),
            "client_cpus": None if self.client_cpus is None else list(self.client_cpus),
            "micro_results": list(self.micro_results),
            "runs": [run.as_json() for run in self.runs],
            "sweep_points": [point.as_json() for point in self.sweep_points],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioRecord:
        if data.get("format") != RECORD_FORMAT:
            raise RecordFormatError(
                f"not a {RECORD_FORMAT} document (format: {data.get('format')!r})"
            )
        values = {k: v for k, v in data.items() if k != "format"}
        cpus = values["client_cpus"]
        return cls(
            **{
                **values,
                "plan": LoadPlan(**values["plan"]),
                "client_cpus": None if cpus is None else tuple(cpus),
                "micro_results": tuple(values["micro_results"]),
                "runs": tuple(VariantRun.from_json(r) for r in values["runs"]),
                "sweep_points": tuple(
                    SweepPoint.from_json(p) for p in values.get("sweep_points", ())
                ),
            }
        )
