"""Serializer rows for ``wsprof tune serialization``: ns per message over a set of samples.

Rows are ``serializer/{dumps,loads}/<codec>/samples``; the worker is given the
samples file (``--samples``) and calls :func:`use_samples` before any timer
runs. One timed loop walks every sample the codec can round-trip, and the
time function returns the time per message (elapsed / messages), so pyperf's
value is the mean cost of one message of the user's mix. These rows are not
part of ``wsprof micro``'s catalogue listing: they need a samples file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from wsprof.micro.serializers import CODECS, encode_input

CASES: dict[str, tuple[str, ...]] = {
    "dumps": tuple(CODECS),
    "loads": tuple(CODECS),
}
PAYLOAD_KINDS: tuple[str, ...] = ("samples",)
INNER_LOOPS: dict[tuple[str, str], int] = {}
SAMPLES_PAYLOAD = "samples"

TimeFunc = Callable[[int], float]

_samples_file: Path | None = None


def use_samples(path: Path) -> None:
    """Set the samples file this worker process times (the worker calls it from ``--samples``)."""
    global _samples_file
    _samples_file = Path(path)


def _values() -> list[Any]:
    from wsprof.micro.samples import load_samples

    if _samples_file is None:
        raise RuntimeError("serializer rows need the worker's --samples FILE")
    return [s.value for s in load_samples(_samples_file)]


def round_trippable(variant: str, values: list[Any]) -> tuple[list[Any], list[Any]]:
    """(dumps inputs, wire messages) of the samples ``variant`` encodes and decodes without raising."""
    codec = CODECS[variant]
    dumps, loads = codec.build()
    inputs, wires = [], []
    for value in values:
        data = encode_input(codec, value)
        try:
            wire = dumps(data)
            loads(wire)
        except Exception:  # a sample the serializer rejects is not timed
            continue
        inputs.append(data)
        wires.append(wire)
    return inputs, wires


def _per_message(call: Callable[[Any], Any], args: list[Any]) -> TimeFunc:
    count = len(args)

    def time_func(loops: int) -> float:
        t0 = perf_counter()
        for _ in range(loops):
            for arg in args:
                call(arg)
        return (perf_counter() - t0) / count

    return time_func


def timer(case: str, variant: str, payload: str | None) -> TimeFunc:
    """pyperf time function: one ``case`` call per sample, time per message."""
    if payload != SAMPLES_PAYLOAD or case not in CASES:
        raise KeyError((case, variant, payload))
    inputs, wires = round_trippable(variant, _values())
    if not inputs:
        raise ValueError(f"{variant} round-trips none of the samples")
    dumps, loads = CODECS[variant].build()
    return _per_message(dumps, inputs) if case == "dumps" else _per_message(loads, wires)
