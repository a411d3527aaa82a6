"""Sweeps: one load parameter over several points, and the fitted cost growth (pure).

A scenario's ``[sweep]`` names exactly one [load] key and its points; every
variant is measured at every point and the result states how the server's
cost grows: least squares of a per-unit cost against the parameter, as
"µs per added connection / recipient / KB".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The parameters a sweep may vary, with the unit its growth is stated in.
SWEEP_PARAMETERS = {"connections": "connection", "recipients": "recipient", "payload_bytes": "KB"}


@dataclass(frozen=True)
class Sweep:
    """``parameter`` = one of SWEEP_PARAMETERS; ``points`` its values, in run order."""

    parameter: str
    points: tuple[int, ...]

    @property
    def unit(self) -> str:
        return SWEEP_PARAMETERS[self.parameter]

    def x(self, point: float) -> float:
        """The point on the axis the growth is stated against (KB for payload sizes)."""
        return point / 1024.0 if self.parameter == "payload_bytes" else float(point)


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | None]:
    """Least squares y = intercept + slope * x with its r²; slope None below two distinct x."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return {"slope": None, "intercept": ys[0] if ys else None, "r2": None}
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - ss_res / ss_tot if ss_tot else 1.0}


#: What growth is fitted for each workload: the variant-entry key and what it measures.
GROWTH_METRIC = {
    "echo": ("server_cpu_us_per_msg", "server CPU µs per message"),
    # per broadcast: its slope is what one more recipient costs (per delivery only amortises)
    "broadcast": ("server_cpu_us_per_broadcast", "server CPU µs per broadcast"),
    "connect": ("server_cpu_us_per_msg", "server CPU µs per connection"),
    "idle": ("server_rss_kb", "server RSS KB"),
}


def growth(sweep: Sweep, workload: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fitted growth of one variant's finished rows: ``per_unit`` per added ``unit``."""
    key, metric = GROWTH_METRIC[workload]
    done = [r for r in rows if r["status"] == "ok" and r.get(key) is not None]
    fit = fit_line([sweep.x(r["point"]) for r in done], [float(r[key]) for r in done])
    return {
        "metric": metric,
        "key": key,
        "per_unit": fit["slope"],
        "intercept": fit["intercept"],
        "unit": sweep.unit,
        "r2": fit["r2"],
        "points": len(done),
    }


def growth_text(g: dict[str, Any]) -> str:
    """ "+0.012 server CPU µs per message per added connection (r² 0.98)", or why there is none."""
    if g["per_unit"] is None:
        return f"no growth: {g['points']} finished point(s)"
    r2 = "" if g["r2"] is None else f" (r² {g['r2']:.2f})"
    return f"{g['per_unit']:+.4g} {g['metric']} per added {g['unit']}{r2}"
