"""Terminal tables for layer attribution (the ``attribute``/``profile``/``diff`` commands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from wsprof.profiling.attribute import (
    APPORTIONED,
    NATIVE_SAMPLES,
    UNMEASURED,
    Attribution,
    LayerShare,
    sampling_note,
)


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a terminal: control characters escaped (no raw ESC), cut at ``limit``."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def share_text(share: float, ci95: tuple[float, float] | list[float] | None) -> str:
    """``41.2% ±1.3``: the share and half its 95% interval's width, in points."""
    if ci95 is None:
        return f"{share:.1%}"
    return f"{share:.1%} ±{(ci95[1] - ci95[0]) * 50:.1f}"


def _share(ls: LayerShare) -> str:
    return share_text(ls.share, ls.ci95)


_SHORT_WHY = {
    APPORTIONED: "without --native py-spy cannot see syscalls (they sit under the Python frame "
    "that made them), so kernel-io = the /proc system share and the other layers are scaled "
    "to fit (assumes system time spreads over them by their samples)",
    NATIVE_SAMPLES: "native frames see the syscalls; the /proc share is the check",
    UNMEASURED: "samples only, no /proc split known: without --native, system time stays in "
    "the layers whose frames made the syscalls",
}


def kernel_io_note(attribution: Attribution) -> str:
    """One line saying how kernel-io was found, why, and the /proc share beside it."""
    proc = attribution.proc_system_share
    shown = "" if proc is None else f", /proc system share {proc:.1%}"
    return f"kernel-io: {attribution.kernel_io_method}{shown}: {_SHORT_WHY[attribution.kernel_io_method]}"


def sampling_line(check: Mapping[str, Any], user_s: float, system_s: float, samples: int) -> str:
    """py-spy's samples vs expected, its errors, the /proc split, and a warning when few."""
    parts = [
        f"py-spy: {check['recorded_samples']:,} samples recorded, "
        f"~{check['expected_samples']:,} expected while the server ran (rate x seconds x busy cores)"
    ]
    if check["pyspy_samples"] is not None:
        parts.append(f"py-spy took {check['pyspy_samples']:,}, errors {check['pyspy_errors']:,}")
    if check["missed_share"]:
        parts.append(f"missed {check['missed_share']:.1%}")
    total = user_s + system_s
    if total > 0:
        parts.append(
            f"/proc: user {user_s:.2f} s, system {system_s:.2f} s ({system_s / total:.1%} system)"
        )
    line = "; ".join(parts)
    note = sampling_note(samples)
    return line if note is None else f"{line}\nwarning: {note}"


def attribution_table(
    attribution: Attribution,
    us_per_msg: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Table:
    """Layer, samples, share ±95% interval (and µs/message when a clean CPU figure is known)."""
    table = Table(title=escape(title) if title else None, title_justify="left")
    table.add_column("layer")
    table.add_column("samples", justify="right")
    table.add_column("share ±95%", justify="right")
    if us_per_msg is not None:
        table.add_column("µs/msg", justify="right")
    for name, ls in attribution.layers.items():
        row = [name, str(ls.samples), _share(ls)]
        if us_per_msg is not None:
            row.append(f"{us_per_msg.get(name, 0.0):.2f}")
        table.add_row(*row, style="dim" if ls.samples == 0 else None)
    total_row = [
        "total",
        str(attribution.total_samples),
        "100.0%" if attribution.total_samples else "-",
    ]
    if us_per_msg is not None:
        total_row.append(f"{sum(us_per_msg.values()):.2f}")
    table.add_section()
    table.add_row(*total_row, style="bold")
    if not attribution.include_idle:
        table.add_row(
            "idle (excluded)",
            str(attribution.idle_samples),
            "",
            *([""] if us_per_msg is not None else []),
            style="italic",
        )
    return table


def diff_table(a: Attribution, b: Attribution, title: str | None = None) -> Table:
    """Per-layer shares of A and B and the change in percentage points."""
    table = Table(title=escape(title) if title else None, title_justify="left")
    for col, just in (
        ("layer", "left"),
        ("A share", "right"),
        ("B share", "right"),
        ("delta", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    names = list(a.layers) + [n for n in b.layers if n not in a.layers]
    for name in names:
        sa = a.layers[name].share if name in a.layers else 0.0
        sb = b.layers[name].share if name in b.layers else 0.0
        d = (sb - sa) * 100
        style = "red" if d > 0.05 else "blue" if d < -0.05 else None
        table.add_row(name, f"{sa:.1%}", f"{sb:.1%}", f"{d:+.1f} pp", style=style)
    table.add_section()
    table.add_row("samples", str(a.total_samples), str(b.total_samples), "", style="bold")
    return table
