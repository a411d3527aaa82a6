"""Scenario files (TOML, data not code): load, validate, list.

A scenario is an A/B(/C) experiment: variants differ in one layer (stack, loop,
serializer...) and share one load plan. See scenarios/*.toml for the format.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from wsprof.client.base import DEFAULT_WARMUP_S
from wsprof.errors import WsprofError
from wsprof.payloads import payload_names
from wsprof.profiling.pyspy import DEFAULT_RATE_HZ


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


@dataclass(frozen=True)
class Variant:
    name: str
    stack: str
    options: dict[str, str] = field(default_factory=dict)
    claim: dict[str, Any] | None = None  # a published figure this variant is set beside
    port: int = 0  # 0: a free port the kernel picks; set one only if something requires it


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    question: str
    load: LoadPlan
    quick: dict[str, Any]
    variants: tuple[Variant, ...]
    source: str

    def plan(self, quick: bool) -> LoadPlan:
        return replace(self.load, **self.quick) if quick else self.load


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


def _bad(source: str, key: str, problem: str) -> ScenarioFileError:
    return ScenarioFileError(f"{source}: key '{key}': {problem}")


_PLAN_TYPES = {f.name: f.type for f in fields(LoadPlan)}


def _check_plan_values(source: str, table: str, values: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{table}.{key}"
        if key not in _PLAN_TYPES:
            raise _bad(source, where, f"unknown key (valid: {', '.join(_PLAN_TYPES)})")
        if key == "payload":
            if value not in payload_names():
                raise _bad(
                    source,
                    where,
                    f"unknown payload {value!r} (valid: {', '.join(payload_names())})",
                )
        elif key == "latency_rate":
            if value != "auto" and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise _bad(source, where, 'must be a positive number of msgs/s or "auto"')
        elif key in ("connections", "in_flight", "repeats", "profile_rate_hz"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _bad(source, where, "must be a positive integer")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _bad(source, where, "must be a non-negative number")
        checked[key] = value
    if "latency_load" in checked and not 0 < checked["latency_load"] <= 1:
        raise _bad(source, f"{table}.latency_load", "must be in (0, 1]")
    return checked


def parse_scenario(text: str, source: str) -> Scenario:
    """Validate a scenario document; every error names the file and the key."""
    from wsprof.servers.launcher import validate_options

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"{source}: not valid TOML: {exc}") from None
    for key in ("name", "description"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _bad(source, key, "is required and must be a string")
    known = {"name", "description", "question", "load", "quick", "variants"}
    for key in doc:
        if key not in known:
            raise _bad(source, key, f"unknown key (valid: {', '.join(sorted(known))})")
    load = LoadPlan(**_check_plan_values(source, "load", dict(doc.get("load", {}))))
    quick = _check_plan_values(source, "quick", dict(doc.get("quick", {})))
    raw_variants = doc.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise _bad(source, "variants", "needs at least one [[variants]] table")
    variants = []
    for i, raw in enumerate(raw_variants):
        where = f"variants[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("stack"), str):
            raise _bad(source, f"{where}.stack", "is required")
        unknown = set(raw) - {"name", "stack", "options", "claim", "port"}
        if unknown:
            raise _bad(
                source,
                f"{where}.{sorted(unknown)[0]}",
                "unknown key (valid: name, stack, options, claim, port)",
            )
        port = raw.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise _bad(source, f"{where}.port", "must be an integer from 0 to 65535")
        name = raw.get("name", raw["stack"])
        if not isinstance(name, str) or not name:
            raise _bad(source, f"{where}.name", "must be a non-empty string")
        options = {k: str(v) for k, v in dict(raw.get("options", {})).items()}
        try:
            validate_options(raw["stack"], options)
        except ValueError as exc:
            raise _bad(source, f"{where}.stack/options", str(exc)) from None
        variants.append(Variant(name, raw["stack"], options, raw.get("claim"), port))
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
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or any .toml file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise WsprofError(f"scenario file {name_or_path!r} does not exist")
        return parse_scenario(path.read_text(), str(path))
    shipped = shipped_scenarios()
    if name_or_path not in shipped:
        raise WsprofError(
            f"unknown scenario {name_or_path!r} "
            f"(valid: {', '.join(shipped)}; or a path to a .toml file)"
        )
    return parse_scenario(shipped[name_or_path].read_text(), str(shipped[name_or_path]))
