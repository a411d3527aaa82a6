"""The layer list and the ordered layer rules (layers.toml): which layer one frame belongs to.

Layers and rules are data so that users can correct or extend them
(``--rules FILE``) without touching code; the file's header documents the
format. This module only decides single frames; :mod:`wsprof.profiling.attribute`
walks stacks.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.profiling.folded import Frame, parse_frame

IDLE = "idle"
INHERIT = "inherit"
OTHER = "other"

_PACKAGED = "wsprof/profiling/layers.toml"
_RULE_KEYS = frozenset({"layer", "path", "function", "line", "frame"})
_TOP_KEYS = frozenset({"rule", "extends_defaults"})
_LAYER_KEYS = frozenset({"name", "colour", "description"})
_LAYER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_COLOUR_RE = re.compile(r"#[0-9a-f]{6}\Z")


class RulesError(WsprofError, ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Layer:
    """One entry of the packaged layer list: its name, flamegraph colour and meaning."""

    name: str
    colour: str
    description: str


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: invalid TOML: {exc}") from exc


@cache
def _packaged_doc() -> dict[str, Any]:
    text = resources.files("wsprof.profiling").joinpath("layers.toml").read_text(encoding="utf-8")
    return _toml(text, _PACKAGED)


def _layer_list(tables: Any) -> tuple[Layer, ...]:
    """The ``[[layer]]`` tables, checked: "other" ends the reported list, "idle" is present."""
    if not isinstance(tables, list) or not tables:
        raise RulesError(f"{_PACKAGED}: layer: must be a non-empty array of tables ([[layer]])")
    out: list[Layer] = []
    for i, t in enumerate(tables):
        where = f"{_PACKAGED}: layer[{i}]"
        if not isinstance(t, dict) or set(t) != _LAYER_KEYS:
            raise RulesError(f"{where}: needs exactly {', '.join(sorted(_LAYER_KEYS))}")
        if not _LAYER_NAME_RE.match(str(t["name"])) or t["name"] in (x.name for x in out):
            raise RulesError(f"{where}.name: {t['name']!r} is not a new layer name")
        if not isinstance(t["colour"], str) or not _COLOUR_RE.match(t["colour"]):
            raise RulesError(f'{where}.colour: expected "#rrggbb", not {t["colour"]!r}')
        out.append(Layer(t["name"], t["colour"], str(t["description"])))
    reported = [x.name for x in out if x.name != IDLE]
    if reported[-1:] != [OTHER] or len(reported) == len(out):
        raise RulesError(f'{_PACKAGED}: the layers must include "idle" and end with "other"')
    return tuple(out)


LAYER_INFO: tuple[Layer, ...] = _layer_list(_packaged_doc().get("layer"))
"""The packaged layers (and "idle"), in order of concern, as layers.toml lists them."""

LAYERS: tuple[str, ...] = tuple(x.name for x in LAYER_INFO if x.name != IDLE)
"""The default layers in order of concern; reports list them in this order."""

_COLOURS = {x.name: x.colour for x in LAYER_INFO}


def layer_colour(layer: str) -> str:
    """The packaged colour of a layer; a user's new layer gets a stable colour from its name."""
    if layer in _COLOURS:
        return _COLOURS[layer]
    hue = int(hashlib.sha1(layer.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.7, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _segment(text: str) -> str:
    return "".join("." if ch == "?" else re.escape(ch) for ch in text)


def _glob_body(glob: str) -> str:
    """A regex for ``glob`` (``*``, ``?``) that matches in linear time, however many ``*``.

    Naively each ``*`` is ``.*`` and a glob such as ``*a*a*a*a*b`` backtracks
    exponentially over a long frame. Between two ``*`` the text has a fixed
    length, so its leftmost occurrence is always the best choice: each middle
    piece is an atomic ``(?>.*?piece)`` that never retries, and only the last
    piece is anchored at the end.
    """
    first, *rest = glob.split("*")
    if not rest:
        return _segment(first)
    *middle, last = rest
    pieces = "".join(f"(?>.*?{_segment(m)})" for m in middle if m)
    return f"{_segment(first)}{pieces}.*{_segment(last)}"


def _path_tails(file: str) -> tuple[str, ...]:
    """The file and every tail of it that starts after a "/": where a path glob may anchor."""
    tails = [file]
    i = file.find("/")
    while i >= 0:
        tails.append(file[i + 1 :])
        i = file.find("/", i + 1)
    return tuple(tails)


def _compile(globs: Sequence[str], dirs: bool = False) -> re.Pattern[str] | None:
    if not globs:
        return None
    bodies = [_glob_body(g + "*" if dirs and g.endswith("/") else g) for g in globs]
    return re.compile("|".join(f"(?:{b})" for b in bodies), re.DOTALL)


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: a frame matches when it matches every key the rule gives."""

    layer: str
    paths: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    lines: tuple[tuple[int, int], ...] = ()
    frame: str | None = None
    _rel_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _abs_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _func_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _tail_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rel = [g for g in self.paths if not g.startswith("/")]
        absolute = [g for g in self.paths if g.startswith("/")]
        object.__setattr__(self, "_rel_re", _compile(rel, dirs=True))
        object.__setattr__(self, "_abs_re", _compile(absolute, dirs=True))
        object.__setattr__(self, "_func_re", _compile(self.functions))
        object.__setattr__(self, "_tail_re", _compile([g for g in self.functions if "." not in g]))

    def matches_path(self, file: str, tails: Sequence[str]) -> bool:
        """Whether one of the path globs matches ``file`` (``tails`` from :func:`_path_tails`)."""
        if self._abs_re is not None and self._abs_re.fullmatch(file):
            return True
        rel = self._rel_re
        return rel is not None and any(rel.fullmatch(t) for t in tails)

    def matches_rest(self, frame: Frame) -> bool:
        """Every condition but the path: frame kind, function and line."""
        if frame.kind in ("process", "thread"):
            return False
        if self.frame is not None and frame.kind != self.frame:
            return False
        if self._func_re is not None and not self._func_re.fullmatch(frame.name):
            tail = frame.name.rpartition(".")[2]
            if self._tail_re is None or not self._tail_re.fullmatch(tail):
                return False
        return not self.lines or (
            frame.line is not None and any(lo <= frame.line <= hi for lo, hi in self.lines)
        )

    def matches(self, frame: Frame) -> bool:
        """Whether this rule claims ``frame`` (process/thread roots never match)."""
        if self.paths and (
            frame.file is None or not self.matches_path(frame.file, _path_tails(frame.file))
        ):
            return False
        return self.matches_rest(frame)


_NO_HITS: frozenset[int] = frozenset()


@dataclass
class RuleSet:
    """Rules in precedence order plus the layers a report should list."""

    rules: tuple[Rule, ...]
    layers: tuple[str, ...] = LAYERS
    source: str = "<default>"
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _files: dict[str, frozenset[int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def new_layers(self) -> tuple[str, ...]:
        """Layers that only a user rule names: listed before "other", and worth a notice."""
        return tuple(name for name in self.layers if name not in LAYERS)

    def with_application_files(self, globs: Iterable[str]) -> RuleSet:
        """These rules with a user's own files charged to ``application`` before anything else.

        The default rules cannot know where a user's app lives; a scenario does.
        """
        first = tuple(Rule(layer="application", paths=(g,)) for g in globs)
        return replace(self, rules=first + self.rules) if first else self

    def new_layers_notice(self) -> str | None:
        """One line saying which layers ``source`` adds (a typo would otherwise pass silently)."""
        if not self.new_layers:
            return None
        names = ", ".join(repr(n) for n in self.new_layers)
        return (
            f"{self.source} names layer(s) {names} that wsprof does not define "
            f"({', '.join(LAYERS)}); reported as new layer(s) before 'other'"
        )

    def _path_hits(self, file: str) -> frozenset[int]:
        # Path globs are the costly part and files repeat across frames: once per file.
        hits = self._files.get(file)
        if hits is None:
            tails = _path_tails(file)
            hits = frozenset(
                i for i, r in enumerate(self.rules) if r.paths and r.matches_path(file, tails)
            )
            self._files[file] = hits
        return hits

    def layer_of(self, frame: Frame) -> str | None:
        """The layer of the first matching rule (may be ``idle``/``inherit``), or None."""
        hits = self._path_hits(frame.file) if frame.file is not None else _NO_HITS
        for i, rule in enumerate(self.rules):
            if rule.paths and i not in hits:
                continue
            if rule.matches_rest(frame):
                return rule.layer
        return None

    def decide(self, frame_text: str) -> str:
        """What one frame does to a leaf-first walk: a layer to charge, or ``inherit``.

        Unmatched Python frames and process/thread roots end the walk in
        ``other``; unmatched native frames pass their time to the caller.
        Cached per frame string, which keeps attribution linear and fast.
        """
        hit = self._cache.get(frame_text)
        if hit is not None:
            return hit
        frame = parse_frame(frame_text)
        layer = self.layer_of(frame)
        if layer is None:
            layer = INHERIT if frame.kind == "native" else OTHER
        self._cache[frame_text] = layer
        return layer


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{where}: expected a non-empty string or list of non-empty strings")
    return tuple(value)


def _lines(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RulesError(f'{where}: expected a line number, an "a-b" range or a list of them')
    out = []
    for v in value:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            out.append((v, v))
            continue
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", v) if isinstance(v, str) else None
        if m is None or int(m.group(1)) > int(m.group(2)):
            raise RulesError(f'{where}: {v!r} is not a line number or an "a-b" range with a <= b')
        out.append((int(m.group(1)), int(m.group(2))))
    return tuple(out)


def _rule(table: Any, where: str) -> Rule:
    if not isinstance(table, dict):
        raise RulesError(f"{where}: expected a table ([[rule]])")
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        raise RulesError(
            f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})"
        )
    layer = table.get("layer")
    if not isinstance(layer, str) or not _LAYER_NAME_RE.match(layer):
        raise RulesError(f'{where}.layer: required, a name such as "json" (letters, digits, - _ .)')
    paths = _strings(table["path"], f"{where}.path") if "path" in table else ()
    functions = _strings(table["function"], f"{where}.function") if "function" in table else ()
    if not paths and not functions:
        raise RulesError(f"{where}: a rule needs a 'path' or a 'function'")
    lines = _lines(table["line"], f"{where}.line") if "line" in table else ()
    if lines and not paths:
        raise RulesError(
            f"{where}.line: a line rule also needs a 'path' (line numbers are per file)"
        )
    frame = table.get("frame")
    if frame is not None and frame not in ("python", "native"):
        raise RulesError(f'{where}.frame: must be "python" or "native", not {frame!r}')
    return Rule(layer, paths, functions, lines, frame)


def _parse_doc(doc: dict[str, Any], source: str) -> tuple[list[Rule], bool]:
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise RulesError(
            f"{source}: {unknown[0]}: unknown top-level key (allowed: extends_defaults, [[rule]])"
        )
    extends = doc.get("extends_defaults", True)
    if not isinstance(extends, bool):
        raise RulesError(f"{source}: extends_defaults: must be true or false")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError(f"{source}: rule: must be an array of tables ([[rule]])")
    rules = [_rule(t, f"{source}: rule[{i}]") for i, t in enumerate(tables)]
    return rules, extends


def parse_rules(text: str, source: str = "<string>") -> tuple[list[Rule], bool]:
    """Parse a user's rules document into its rules and its ``extends_defaults`` flag."""
    return _parse_doc(_toml(text, source), source)


def _layer_order(rules: Iterable[Rule]) -> tuple[str, ...]:
    extra: list[str] = []
    for r in rules:
        if r.layer not in LAYERS and r.layer not in (IDLE, INHERIT) and r.layer not in extra:
            extra.append(r.layer)
    return (*LAYERS[:-1], *extra, OTHER)


@cache
def _default_rule_list() -> tuple[Rule, ...]:
    doc = {k: v for k, v in _packaged_doc().items() if k != "layer"}
    return tuple(_parse_doc(doc, _PACKAGED)[0])


def default_rules() -> RuleSet:
    """The packaged rules (a fresh set, so per-set caches never leak between uses)."""
    rules = _default_rule_list()
    return RuleSet(rules, _layer_order(rules), "<default>")


def rules_from_text(text: str, source: str = "<string>") -> RuleSet:
    """Build a rule set from a user document (before the defaults unless it opts out)."""
    user, extends = parse_rules(text, source)
    rules = tuple(user) + (_default_rule_list() if extends else ())
    return RuleSet(rules, _layer_order(rules), source)


def load_rules(path: Path | str | None = None) -> RuleSet:
    """Load ``--rules FILE`` (or the defaults when ``path`` is None)."""
    if path is None:
        return default_rules()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{p}: cannot read rules file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RulesError(f"{p}: rules file is not UTF-8: {exc}") from exc
    return rules_from_text(text, str(p))
