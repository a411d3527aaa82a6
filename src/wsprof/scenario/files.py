"""Scenario files (TOML, data not code): load, validate, list.

A scenario is an A/B(/C) experiment: variants differ in one layer (stack, loop,
serializer...) and share one load plan. See scenarios/*.toml for the format.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from wsprof.client.base import DEFAULT_WARMUP_S
from wsprof.errors import WsprofError
from wsprof.payloads import payload_names
from wsprof.profiling.pyspy import DEFAULT_RATE_HZ
from wsprof.scenario.sweep import SWEEP_PARAMETERS, Sweep
from wsprof.servers.appcmd import AppSpec, AppSpecError, check_spec, default_mode


@dataclass(frozen=True)
class LoadPlan:
    connections: int = 50
    in_flight: int = 1
    payload: str = "small"
    warmup_s: float = DEFAULT_WARMUP_S
    capacity_window_s: float = 3.0
    latency_window_s: float = 3.0
    latency_rate: float | str = "auto"
    latency_load: float = 0.5
    profile_window_s: float = 4.0
    profile_rate_hz: int = DEFAULT_RATE_HZ
    repeats: int = 3
    # The reply contract (LoadConfig): event, reply_event and ack apply to Socket.IO
    # variants; payload_file is relative to the scenario file's directory.
    reply: str | None = None
    event: str = "echo"
    reply_event: str | None = None
    ack: bool = False
    payload_file: str | None = None
    # The workload (issue 9) and its keys; see scenario/workloads.py.
    workload: str = "echo"
    recipients: int = 100
    senders: int = 1
    broadcast_rate: float | str = "auto"
    payload_bytes: int = 64
    idle_window_s: float = 5.0
    open_concurrency: int = 100
    connect_concurrency: int = 50


@dataclass(frozen=True)
class Variant:
    name: str
    stack: str  # a bundled stack, or "app:SERVER" for a user's app
    options: dict[str, str] = field(default_factory=dict)
    claim: dict[str, Any] | None = None  # a published figure this variant is set beside
    port: int = 0  # 0: a free port the kernel picks; set one only if something requires it
    # A user's app instead of a bundled stack (see wsprof.servers.appcmd.AppSpec).
    app: str | None = None
    server: str | None = None
    worker: str | None = None
    workers: int = 1
    path: str | None = None
    mode: str | None = None
    serializer: str = "json"
    directory: str | None = None  # where `app` is imported from: the scenario file's directory
    processes: int = 1  # server processes of a bundled stack sharing the broker

    def app_spec(self) -> AppSpec | None:
        """The user's app this variant runs, or None for a bundled stack."""
        if self.app is None or self.server is None:
            return None
        path = self.path or ("/socket.io/" if self.server == "flask-socketio" else "/ws")
        return AppSpec(
            app=self.app,
            server=self.server,
            directory=self.directory or ".",
            worker=self.worker,
            workers=self.workers,
            path=path,
            mode=self.mode or default_mode(self.server, path),
            serializer=self.serializer,
            options=dict(self.options),
        )


def application_globs(variants: Iterable[Variant]) -> list[str]:
    """Path globs of the user's app code (its top package or module), for attribution.

    py-spy prints a file relative to the sys.path entry it came from
    ("chat/main.py"), so a package is matched by its name too; a lone module
    only by its absolute path, since "main.py" would also match uvicorn/main.py.
    """
    globs: list[str] = []
    for v in variants:
        if v.app is None:
            continue
        top = v.app.split(":", 1)[0].split(".", 1)[0]
        base = Path(v.directory or ".").resolve() / top
        found = [f"{base}/", f"{top}/"] if base.is_dir() else [f"{base}.py"]
        globs.extend(g for g in found if g not in globs)
    return globs


APP_KEYS = ("app", "server", "worker", "workers", "path", "mode", "serializer")


def app_variant(
    name: str, values: dict[str, Any], directory: str, claim: dict[str, Any] | None = None
) -> Variant:
    """A user-app variant from its keys, checked (AppSpecError names the bad key)."""
    for key in ("app", "server", "worker", "path", "mode", "serializer"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise AppSpecError(f"key '{key}': must be a string")
    options = values.get("options", {})
    if not isinstance(options, dict):
        raise AppSpecError("key 'options': must be a table")
    variant = Variant(
        name=name,
        stack="app",
        options={k: str(v) for k, v in options.items()},
        claim=claim,
        app=values["app"],
        server=values.get("server", "uvicorn"),
        worker=values.get("worker"),
        workers=values.get("workers", 1),
        path=values.get("path"),
        mode=values.get("mode"),
        serializer=values.get("serializer", "json"),
        directory=directory,
    )
    spec = variant.app_spec()
    assert spec is not None
    check_spec(spec)
    return replace(variant, stack=spec.label, path=spec.path, mode=spec.mode)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    question: str
    load: LoadPlan
    quick: dict[str, Any]
    variants: tuple[Variant, ...]
    source: str
    sweep: Sweep | None = None
    quick_sweep: Sweep | None = None  # [quick.sweep]: fewer or smaller points for --quick

    def plan(self, quick: bool) -> LoadPlan:
        return replace(self.load, **self.quick) if quick else self.load

    def sweep_for(self, quick: bool) -> Sweep | None:
        """The points to run: [quick.sweep] under --quick when the file has one."""
        return self.quick_sweep if quick and self.quick_sweep is not None else self.sweep


def _shipped_dir() -> Path:
    """Installed: wsprof/scenarios/ (copied at build); source checkout: <repo>/scenarios/."""
    packaged = Path(str(resources.files("wsprof"))) / "scenarios"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "scenarios"


def shipped_scenarios() -> dict[str, Path]:
    """The scenario files wsprof ships, by name (the file's stem)."""
    return {p.stem: p for p in sorted(_shipped_dir().glob("*.toml"))}


class ScenarioFileError(WsprofError):
    pass


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character escaped: a file's text never drives the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: Scenario and variant names become file and directory names: one path component, no dots first.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,79}")
_NAME_RULE = "must be 1-80 of A-Z a-z 0-9 . _ + -, starting with a letter or digit"


def file_component(name: str) -> str:
    """A name made safe as one path component (anything else becomes '_'); never '.' or '..'."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:80]
    return safe if NAME_RE.fullmatch(safe) else "_" + safe[:79]


def _bad(source: str, key: str, problem: str) -> ScenarioFileError:
    return ScenarioFileError(f"{printable(source)}: key '{printable(key)}': {printable(problem)}")


_PLAN_TYPES = {f.name: f.type for f in fields(LoadPlan)}
MAX_REPEATS = 100
MAX_RATE_HZ = 10_000  # py-spy samples per second
#: Integer keys: (lowest, highest). The load client allows at most 10000 connections.
_INT_LIMITS = {
    "connections": (1, 10_000),
    "in_flight": (1, 1_000),
    "repeats": (1, MAX_REPEATS),
    "profile_rate_hz": (1, MAX_RATE_HZ),
    "recipients": (1, 10_000),
    "senders": (1, 10_000),
    "payload_bytes": (16, 1 << 20),  # 16: the broadcast id's hex digits; up to 1 MB
    "open_concurrency": (1, 10_000),
    "connect_concurrency": (1, 10_000),
}
WORKLOADS = ("echo", "broadcast", "idle", "connect")
#: Seconds keys: (lowest, highest, lowest allowed). Windows must be longer than 0 s.
_SECONDS_LIMITS = {
    "warmup_s": (0.0, 3600.0, True),
    "capacity_window_s": (0.0, 3600.0, False),
    "latency_window_s": (0.0, 3600.0, False),
    "profile_window_s": (0.0, 3600.0, False),
    "idle_window_s": (0.0, 3600.0, False),
}
MAX_RATE = 10_000_000  # msgs/s: the load client's own bound on an offered rate


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_CONTRACT_KEYS = ("reply", "event", "reply_event", "ack", "payload_file")


def _check_contract_value(source: str, where: str, key: str, value: Any) -> None:
    """The reply-contract keys of [load]; their combination is checked by LoadConfig."""
    from wsprof.client.base import REPLIES

    if key == "ack":
        if not isinstance(value, bool):
            raise _bad(source, where, "must be true or false")
    elif key == "reply":
        if value not in REPLIES:
            raise _bad(source, where, f"must be one of {', '.join(REPLIES)}, not {value!r}")
    elif not isinstance(value, str) or not value:
        raise _bad(source, where, "must be a non-empty string")


def _check_plan_value(source: str, where: str, key: str, value: Any) -> None:
    """NaN, infinity and absurd magnitudes are refused here, before any server starts."""
    if key in _CONTRACT_KEYS:
        _check_contract_value(source, where, key, value)
    elif key == "payload":
        if value not in payload_names():
            raise _bad(
                source, where, f"unknown payload {value!r} (valid: {', '.join(payload_names())})"
            )
    elif key == "workload":
        if value not in WORKLOADS:
            raise _bad(source, where, f"must be one of {', '.join(WORKLOADS)}, not {value!r}")
    elif key in ("latency_rate", "broadcast_rate"):
        unit = "msgs/s" if key == "latency_rate" else "broadcasts/s"
        if value != "auto" and not (_number(value) and 0 < value <= MAX_RATE):
            raise _bad(
                source,
                where,
                f'must be "auto" or a number of {unit} above 0 and at most {MAX_RATE}, not {value!r}',
            )
    elif key == "latency_load":
        if not (_number(value) and 0 < value <= 1):
            raise _bad(source, where, f"must be a number above 0 and at most 1, not {value!r}")
    elif key in _INT_LIMITS:
        low, high = _INT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _bad(source, where, "must be a positive integer")
        if value > high:
            raise _bad(source, where, f"must be at most {high}, not {value}")
    else:
        low_f, high_f, low_ok = _SECONDS_LIMITS[key]
        above = _number(value) and (low_f <= value if low_ok else low_f < value)
        if not (above and math.isfinite(value) and value <= high_f):
            span = f"from 0 to {high_f:g}" if low_ok else f"above 0 and at most {high_f:g}"
            raise _bad(source, where, f"must be a number of seconds {span}, not {value!r}")


def _check_plan_values(source: str, table: str, values: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{table}.{key}"
        if key not in _PLAN_TYPES:
            raise _bad(source, where, f"unknown key (valid: {', '.join(_PLAN_TYPES)})")
        _check_plan_value(source, where, key, value)
        checked[key] = value
    return checked


def _check_text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(source, key, "must be a string")
    if _CONTROL.search(value.replace("\n", " ").replace("\t", " ")):
        raise _bad(source, key, "must not contain control characters")
    return value


def _check_name(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(source, key, "must be a non-empty string")
    if not NAME_RE.fullmatch(value):
        raise _bad(source, key, f"{_NAME_RULE} (it names files under --out), not {value!r}")
    return value


def parse_scenario(text: str, source: str) -> Scenario:
    """Validate a scenario document; every error names the file and the key."""
    from wsprof.servers.launcher import validate_options

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"{printable(source)}: not valid TOML: {exc}") from None
    known = {"name", "description", "question", "load", "quick", "variants", "sweep"}
    for key in doc:
        if key not in known:
            raise _bad(source, key, f"unknown key (valid: {', '.join(sorted(known))})")
    for key in ("name", "description"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _bad(source, key, "is required and must be a string")
    _check_name(source, "name", doc["name"])
    _check_text(source, "description", doc["description"])
    _check_text(source, "question", doc.get("question", ""))
    for table in ("load", "quick"):
        if not isinstance(doc.get(table, {}), dict):
            raise _bad(source, table, "must be a table")
    load = LoadPlan(**_check_plan_values(source, "load", dict(doc.get("load", {}))))
    quick_table = dict(doc.get("quick", {}))
    quick_sweep_table = quick_table.pop("sweep", None)
    quick = _check_plan_values(source, "quick", quick_table)
    sweep = None if "sweep" not in doc else _check_sweep(source, "sweep", doc["sweep"])
    quick_sweep = (
        None
        if quick_sweep_table is None
        else _check_sweep(source, "quick.sweep", quick_sweep_table)
    )
    if quick_sweep is not None and (sweep is None or quick_sweep.parameter != sweep.parameter):
        raise _bad(source, "quick.sweep", "must sweep the same parameter as [sweep]")
    for table, plan in (("load", load), ("quick", replace(load, **quick))):
        _check_workload(source, table, plan)
        if sweep is not None and plan.workload not in SWEEPS_OF[sweep.parameter]:
            raise _bad(
                source,
                f"sweep.{sweep.parameter}",
                f"does not apply to workload {plan.workload!r} "
                f"(it applies to {', '.join(SWEEPS_OF[sweep.parameter])})",
            )
    raw_variants = doc.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise _bad(source, "variants", "needs at least one [[variants]] table")
    variants = []
    for i, raw in enumerate(raw_variants):
        where = f"variants[{i}]"
        if isinstance(raw, dict) and "app" in raw:
            variants.append(_app_variant(source, where, raw))
            continue
        if not isinstance(raw, dict) or not isinstance(raw.get("stack"), str):
            raise _bad(source, f"{where}.stack", "is required (or app, for your own app)")
        unknown = set(raw) - {"name", "stack", "options", "claim", "port", "processes"}
        if unknown:
            raise _bad(
                source,
                f"{where}.{sorted(unknown)[0]}",
                "unknown key (valid: name, stack, options, claim, port, processes)",
            )
        port = raw.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise _bad(source, f"{where}.port", "must be an integer from 0 to 65535")
        name = _check_name(source, f"{where}.name", raw.get("name", raw["stack"]))
        if not isinstance(raw.get("options", {}), dict):
            raise _bad(source, f"{where}.options", "must be a table")
        options = {k: str(v) for k, v in dict(raw.get("options", {})).items()}
        try:
            validate_options(raw["stack"], with_broker_url(options))
        except ValueError as exc:
            raise _bad(source, f"{where}.stack/options", str(exc)) from None
        processes = _check_processes(source, where, raw, options, load.workload)
        variants.append(
            Variant(name, raw["stack"], options, raw.get("claim"), port, processes=processes)
        )
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise _bad(source, "variants", f"variant names must be unique, got {names}")
    return Scenario(
        name=doc["name"],
        description=doc["description"],
        question=doc.get("question", ""),
        load=load,
        quick=quick,
        variants=tuple(variants),
        source=source,
        sweep=sweep,
        quick_sweep=quick_sweep,
    )


#: A well-formed redis URL for checking options before redis-server runs (the runner
#: passes the URL of the one it starts).
REDIS_PROBE = "redis://127.0.0.1:6379/0"


def with_broker_url(options: dict[str, str]) -> dict[str, str]:
    """``options`` as the runner will start them: manager = "redis" gets its redis_url."""
    if options.get("manager") == "redis" and "redis_url" not in options:
        return {**options, "redis_url": REDIS_PROBE}
    return options


MAX_SWEEP_POINTS = 20
#: The workloads each sweep parameter changes (echo's payload sizes are generated data).
SWEEPS_OF = {
    "connections": ("echo", "idle"),
    "recipients": ("broadcast",),
    "payload_bytes": ("echo", "broadcast"),
}
MAX_PROCESSES = 16


def _check_sweep(source: str, where: str, table: Any) -> Sweep:
    """Exactly one parameter, a list of values each valid as the [load] key it replaces."""
    valid = ", ".join(SWEEP_PARAMETERS)
    if not isinstance(table, dict) or len(table) != 1:
        raise _bad(source, where, f"must be a table with exactly one key of {valid}")
    ((parameter, values),) = table.items()
    if parameter not in SWEEP_PARAMETERS:
        raise _bad(source, f"{where}.{parameter}", f"cannot be swept (valid: {valid})")
    key = f"{where}.{parameter}"
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_SWEEP_POINTS:
        raise _bad(source, key, f"must be a list of 1 to {MAX_SWEEP_POINTS} values")
    for i, value in enumerate(values):
        _check_plan_value(source, f"{key}[{i}]", parameter, value)
    if len(set(values)) != len(values):
        raise _bad(source, key, f"points must be distinct, got {values}")
    return Sweep(parameter, tuple(values))


def _check_workload(source: str, table: str, plan: LoadPlan) -> None:
    """Keys that only make sense together."""
    if plan.senders > plan.recipients:
        raise _bad(
            source,
            f"{table}.senders",
            f"must be at most recipients ({plan.recipients}), not {plan.senders}",
        )


def _check_processes(
    source: str, where: str, raw: dict[str, Any], options: dict[str, str], workload: str
) -> int:
    """``processes`` > 1: broadcast between server processes, which needs a shared broker."""
    processes = raw.get("processes", 1)
    if isinstance(processes, bool) or not isinstance(processes, int):
        raise _bad(source, f"{where}.processes", "must be a positive integer")
    if not 1 <= processes <= MAX_PROCESSES:
        raise _bad(source, f"{where}.processes", f"must be from 1 to {MAX_PROCESSES}")
    if processes > 1 and workload != "broadcast":
        raise _bad(source, f"{where}.processes", 'above 1 needs workload = "broadcast"')
    if processes > 1 and options.get("manager") != "redis":
        raise _bad(
            source,
            f"{where}.processes",
            'above 1 needs options.manager = "redis" (the processes share the broker)',
        )
    return processes


def _app_variant(source: str, where: str, raw: dict[str, Any]) -> Variant:
    valid = {"name", "claim", "options", *APP_KEYS}
    unknown = set(raw) - valid
    if unknown:
        raise _bad(
            source,
            f"{where}.{sorted(unknown)[0]}",
            f"unknown key for an app variant (valid: {', '.join(sorted(valid))})",
        )
    name = _check_name(source, f"{where}.name", raw.get("name", "app"))
    directory = str(Path(source).resolve().parent) if Path(source).is_file() else "."
    try:
        return app_variant(name, raw, directory, raw.get("claim"))
    except AppSpecError as exc:
        key, _, problem = str(exc).removeprefix("key '").partition("': ")
        raise _bad(source, f"{where}.{key}", problem) from None


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or any .toml file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise WsprofError(f"scenario file {name_or_path!r} does not exist")
        return parse_scenario(_read_text(path), str(path))
    shipped = shipped_scenarios()
    if name_or_path not in shipped:
        raise WsprofError(
            f"unknown scenario {name_or_path!r} "
            f"(valid: {', '.join(shipped)}; or a path to a .toml file)"
        )
    return parse_scenario(_read_text(shipped[name_or_path]), str(shipped[name_or_path]))


MAX_FILE_BYTES = 1 << 20  # a scenario is a page of TOML


def _read_text(path: Path) -> str:
    """The file's text as UTF-8; any problem reading it is one line naming the file."""
    source = printable(str(path))
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioFileError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioFileError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioFileError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
