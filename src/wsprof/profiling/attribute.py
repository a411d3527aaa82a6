"""Charge every sampled stack to exactly one cost layer (leaf attribution).

The walk goes from the leaf towards the root and stops at the first frame
that decides (see layers.toml's header): so the layer is the one of the
innermost Python frame, unless a native frame or a rule said otherwise.
Shares exclude idle samples unless asked: waiting is not cost per message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from wsprof.profiling.folded import Stack
from wsprof.profiling.layers import IDLE, INHERIT, OTHER, RuleSet, default_rules
from wsprof.significance import wilson_interval

SCHEMA = "wsprof.attribution/1"
KERNEL_IO = "kernel-io"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

APPORTIONED = "apportioned-from-proc"
NATIVE_SAMPLES = "native-samples"
UNMEASURED = "samples-only"

#: Why each kernel-io method, said beside the figures (table note and JSON).
KERNEL_IO_WHY = {
    APPORTIONED: (
        "kernel-io = the window's system-time share from /proc (utime/stime of every thread): "
        "without --native py-spy cannot see syscalls, which it charges to the Python frame "
        "that made them (on uvloop, event-loop); the other layers are scaled by the same "
        "factor so shares sum to 1, which assumes that system time is spread over them in "
        "proportion to their samples"
    ),
    NATIVE_SAMPLES: (
        "kernel-io from native samples (libc send/recv/epoll_wait... frames); "
        "the /proc system share is shown beside it as a check"
    ),
    UNMEASURED: (
        "kernel-io from samples only, no /proc split known: without --native, system time "
        "stays inside the layers whose frames made the syscalls"
    ),
}


@dataclass(frozen=True)
class LayerShare:
    """Samples charged to one layer, their share, and its 95% interval.

    The interval is the Wilson interval of samples out of the total (sampling error only);
    an apportioned share carries its scaled interval.
    """

    samples: int
    share: float
    ci95: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Attribution:
    """Per-layer samples and shares; ``total_samples`` excludes idle unless ``include_idle``."""

    total_samples: int
    layers: dict[str, LayerShare]
    idle_samples: int
    include_idle: bool
    kernel_io_method: str = UNMEASURED
    proc_system_share: float | None = None  # system / (user + system) over the same window

    def to_json(self) -> dict[str, Any]:
        """The ``wsprof.attribution/1`` document (every layer listed, zeros included)."""
        return {
            "schema": SCHEMA,
            "total_samples": self.total_samples,
            "layers": {
                name: {"samples": ls.samples, "share": ls.share, "share_ci95": list(ls.ci95)}
                for name, ls in self.layers.items()
            },
            "idle": {"samples": self.idle_samples, "included": self.include_idle},
            **kernel_io_json(self),
        }


def kernel_io_json(attribution: Attribution) -> dict[str, Any]:
    """``kernel_io_method``, its reason and the /proc share the method used or was checked by."""
    return {
        "kernel_io_method": attribution.kernel_io_method,
        "kernel_io_why": KERNEL_IO_WHY[attribution.kernel_io_method],
        "proc_system_share": attribution.proc_system_share,
    }


def _leaf_layer(line: str, start: int, end: int, decide: Callable[[str], str]) -> str:
    """The layer one stack is charged to (may be ``idle``), reading frames from the end only.

    The frames after the process roots are ``line[start:end]`` (start -1: there are none).
    """
    if start < 0:
        return OTHER
    pos = end
    while pos >= start:
        i = line.rfind(";", start, pos)
        layer = decide(line[(i + 1 if i >= 0 else start) : pos])
        if layer != INHERIT:
            return layer
        if i < 0:
            break
        pos = i
    return OTHER


def attribute(
    stacks: Iterable[Stack], rules: RuleSet | None = None, idle: bool = False
) -> Attribution:
    """Split samples by layer; with ``idle=False`` idle samples are counted apart, not shared."""
    rs = rules if rules is not None else default_rules()
    counts: dict[str, int] = dict.fromkeys(rs.layers, 0)
    decide = rs.decide
    for stack in stacks:
        layer = _leaf_layer(*stack.span(), decide)
        counts[layer] = counts.get(layer, 0) + stack.count
    idle_samples = counts.pop(IDLE, 0)
    if idle:
        counts[IDLE] = idle_samples
    total = sum(counts.values())
    layers = {
        name: LayerShare(n, n / total if total else 0.0, wilson_interval(n, total))
        for name, n in counts.items()
    }
    return Attribution(total, layers, idle_samples, idle)


def with_proc_split(
    attribution: Attribution, user_s: float, system_s: float, native: bool
) -> Attribution:
    """Make kernel-io agree with the kernel's own accounting of the same window.

    With native frames the samples see syscalls: they stay, the /proc share
    is kept beside them. Without, kernel-io is the measured system share
    and every other layer is scaled by ``(1 - system) / (1 - sampled kernel-io)``
    (see :data:`KERNEL_IO_WHY`). Idle shares (``--idle``) are left out of the
    apportioning: system time is CPU, idle is not. No ticks seen: unchanged.
    """
    total = user_s + system_s
    if total <= 0:
        return attribution
    system = system_s / total
    if native:
        return replace(attribution, kernel_io_method=NATIVE_SAMPLES, proc_system_share=system)
    if KERNEL_IO not in attribution.layers or attribution.total_samples == 0:
        return replace(attribution, proc_system_share=system)
    idle = attribution.layers[IDLE].share if attribution.include_idle else 0.0
    cpu = 1.0 - idle  # the part of the shares that is CPU time
    sampled = attribution.layers[KERNEL_IO].share
    rest = cpu - sampled
    scale = (1.0 - system) * cpu / rest if rest > 0 else 0.0
    # Ticks are a sample too (10 ms apart): the system share's interval is Wilson over them.
    ticks = round(total * _CLOCK_TICKS)
    lo, hi = wilson_interval(round(system * ticks), ticks)
    layers: dict[str, LayerShare] = {}
    for name, ls in attribution.layers.items():
        if name == KERNEL_IO:
            layers[name] = LayerShare(ls.samples, system * cpu, (lo * cpu, hi * cpu))
        elif name == IDLE and attribution.include_idle:
            layers[name] = ls
        else:
            layers[name] = LayerShare(
                ls.samples, ls.share * scale, (ls.ci95[0] * scale, min(1.0, ls.ci95[1] * scale))
            )
    return replace(
        attribution, layers=layers, kernel_io_method=APPORTIONED, proc_system_share=system
    )


def no_samples_reason(attribution: Attribution) -> str | None:
    """Why ``attribution`` has nothing to show (a table of zeros), or None when it has samples."""
    if attribution.total_samples > 0:
        return None
    if attribution.idle_samples > 0:
        return (
            f"all {attribution.idle_samples} samples are idle (waiting, not cost); "
            "--idle shows them"
        )
    return "no samples (no stacks, or every count is 0)"


def layer_us_per_msg(attribution: Attribution, cpu_us_per_msg: float) -> dict[str, float]:
    """Apply layer shares (from a profiled window) to the clean window's CPU µs/message.

    Shares come from the perturbed, profiled run; the absolute figure comes
    from the unprofiled run: sampling perturbs the server it samples (py-spy
    reads its memory and, unless non-blocking, pauses it), so the profiled
    window's own CPU figure is not the clean one.
    """
    return {name: ls.share * cpu_us_per_msg for name, ls in attribution.layers.items()}


def expected_samples(rate_hz: float, seconds: float, cpu_s: float, processes: int) -> float:
    """Samples py-spy should take of a server that used ``cpu_s`` of CPU over ``seconds``."""
    busy = cpu_s / seconds if seconds > 0 else 0.0
    return rate_hz * seconds * min(max(processes, 1), busy)


def sampling_check(
    expected: float, recorded: int, pyspy_samples: int | None, pyspy_errors: int | None
) -> dict[str, Any]:
    """py-spy's own misses: samples expected while the server ran vs what it took.

    py-spy keeps only samples of a running server (without --idle), so callers
    pass ``expected`` = rate x seconds x the cores the server kept busy (its
    CPU seconds over the window, at most one per process): an idle or half-busy
    server is not a profiler that missed samples. ``recorded`` is what the
    folded file holds; py-spy's summary line, when it prints one, counts the
    samples it took and the ones it failed to read.
    """
    taken = pyspy_samples if pyspy_samples is not None else recorded
    return {
        "expected_samples": round(expected),
        "recorded_samples": recorded,
        "pyspy_samples": pyspy_samples,
        "pyspy_errors": pyspy_errors,
        "missed_samples": max(0, round(expected) - taken),
        "missed_share": max(0.0, 1 - taken / expected) if expected > 0 else None,
    }


#: Below this many samples a layer's share moves by several points from run to run.
FEW_SAMPLES = 1000


def sampling_note(samples: int) -> str | None:
    """Say when the profiled window's layer shares cannot be trusted, instead of hiding it."""
    if samples == 0:
        return "py-spy recorded no samples in the profiled window: no layer figures"
    if samples < FEW_SAMPLES:
        return f"only {samples:,} samples (< {FEW_SAMPLES:,}): layer shares are rough"
    return None
