"""The catalogue of micro rows: which (layer, case, variant, payload) combinations exist.

Kept free of heavy imports: the orchestrator reads it to validate the user's
filters and plan the run, and must never import eventlet, gevent or uvloop;
and every pyperf worker imports it, so even the payloads load lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from wsprof.errors import WsprofError
from wsprof.micro import (
    asyncio_bench,
    framing_bench,
    greenlet_bench,
    json_bench,
    serializer_bench,
)

LAYERS: tuple[str, ...] = ("greenlet", "asyncio", "framing", "json")

_MODULES = {
    "greenlet": greenlet_bench,
    "asyncio": asyncio_bench,
    "framing": framing_bench,
    "json": json_bench,
    # Measured by `wsprof tune serialization` on the user's samples, never listed by `wsprof micro`.
    "serializer": serializer_bench,
}

# The variant each other variant of a (layer, case) is compared with. Cases
# absent here have a single variant (or no common baseline) and show no ratio.
BASELINES: dict[tuple[str, str], str] = {
    ("greenlet", "yield"): "eventlet",
    ("greenlet", "handoff"): "eventlet",
    ("asyncio", "yield"): "asyncio",
    ("asyncio", "handoff"): "asyncio",
    ("json", "dumps"): "json",
    ("json", "loads"): "json",
    ("serializer", "dumps"): "json",
    ("serializer", "loads"): "json",
}

NO_PAYLOAD = "-"


@dataclass(frozen=True)
class Row:
    """One measurement: a worker process tree runs exactly this and nothing else."""

    layer: str
    case: str
    variant: str
    payload: str | None

    @property
    def id(self) -> str:
        return f"{self.layer}/{self.case}/{self.variant}/{self.payload or NO_PAYLOAD}"

    @classmethod
    def parse(cls, text: str) -> Row:
        """Inverse of ``id``; raises WsprofError for a layer, case or variant the catalogue lacks.

        The payload name is checked when the row's timer loads it, which keeps
        the payload file out of workers that have no payload.
        """
        parts = text.split("/")
        if len(parts) != 4:
            raise WsprofError(f"malformed micro row {text!r} (expected layer/case/variant/payload)")
        layer, case, variant, payload = parts
        if layer not in _MODULES or variant not in cases(layer).get(case, ()):
            raise WsprofError(f"unknown micro row {text!r}")
        if (payload == NO_PAYLOAD) != (not payload_kinds(layer)):
            raise WsprofError(
                f"micro row {text!r}: layer {layer} takes "
                + ("a payload" if payload_kinds(layer) else "no payload")
            )
        return cls(layer, case, variant, None if payload == NO_PAYLOAD else payload)

    def as_tuple(self) -> tuple[str, str, str, str | None]:
        return (self.layer, self.case, self.variant, self.payload)


def payload_kinds(layer: str) -> tuple[str, ...]:
    """Payload kinds a layer takes; empty for layers that move no data (greenlet, asyncio)."""
    return tuple(_MODULES[layer].PAYLOAD_KINDS)


def cases(layer: str) -> dict[str, tuple[str, ...]]:
    return dict(_MODULES[layer].CASES)


def _layer_payloads(layer: str) -> list[str | None]:
    from wsprof.payloads import all_payloads

    kinds = payload_kinds(layer)
    if not kinds:
        return [None]
    return [p.name for p in all_payloads().values() if p.kind in kinds]


def _layer_rows(layer: str) -> list[Row]:
    # Ordered case -> payload -> variant so that rows compared by a ratio sit together.
    return [
        Row(layer, case, variant, payload)
        for case, variants in cases(layer).items()
        for payload in _layer_payloads(layer)
        for variant in variants
    ]


def all_rows() -> list[Row]:
    return [row for layer in LAYERS for row in _layer_rows(layer)]


def validate(layers: Sequence[str] | None, payloads: Sequence[str] | None) -> None:
    """Reject unknown names with the list of valid ones (the CLI exits 2 on WsprofError)."""
    from wsprof.payloads import payload_names

    for layer in layers or ():
        if layer not in LAYERS:
            raise WsprofError(f"unknown layer {layer!r} (valid: {', '.join(LAYERS)})")
    valid_payloads = payload_names()
    for payload in payloads or ():
        if payload not in valid_payloads:
            raise WsprofError(f"unknown payload {payload!r} (valid: {', '.join(valid_payloads)})")


def select_rows(
    layers: Sequence[str] | None = None, payloads: Sequence[str] | None = None
) -> list[Row]:
    """Rows for the filters, in display order.

    A payload filter narrows only the layers that take a payload; greenlet and
    asyncio rows stay unless the layer filter drops them.
    """
    validate(layers, payloads)
    wanted_layers = set(layers or LAYERS)
    rows = [
        row
        for row in all_rows()
        if row.layer in wanted_layers
        and (row.payload is None or payloads is None or row.payload in payloads)
    ]
    if not rows:
        raise WsprofError("no micro rows match: " + "; ".join(not_applicable(layers, payloads)))
    return rows


def rows_for(
    layers: Sequence[str] | None = None, payloads: Sequence[str] | None = None
) -> list[tuple[str, str, str, str | None]]:
    """The (layer, case, variant, payload) rows a run with these filters measures."""
    return [row.as_tuple() for row in select_rows(layers, payloads)]


def not_applicable(layers: Sequence[str] | None, payloads: Sequence[str] | None) -> list[str]:
    """Human lines naming (layer, payload) pairs that were asked for but cannot be measured."""
    from wsprof.payloads import all_payloads, payload_names

    notes = []
    wanted_payloads = list(payloads or payload_names())
    for layer in layers or LAYERS:
        kinds = payload_kinds(layer)
        if not kinds:
            continue
        skipped = [p for p in wanted_payloads if all_payloads()[p].kind not in kinds]
        if skipped:
            notes.append(
                f"{layer} x {', '.join(skipped)}: not applicable "
                f"({getattr(_MODULES[layer], 'NOT_APPLICABLE_REASON', 'not measured')})"
            )
    return notes


def baseline_variant(layer: str, case: str) -> str | None:
    return BASELINES.get((layer, case))


def bench_module(layer: str) -> ModuleType:
    return _MODULES[layer]
