"""Checked argument types: every number a user types is finite and of sane size.

argparse's own ``float`` accepts NaN and infinity, which would hang a load loop
or poison a JSON result; every numeric option of every command uses these.
"""

from __future__ import annotations

import argparse
import math

# No option takes a count above this: larger ones overflow C integers or exhaust memory.
# The commands check their own, tighter ranges (LoadConfig, the scenario plan, py-spy).
MAX_COUNT = 2**31 - 1
# Nor a number of seconds (or per second) above this: ten years.
MAX_NUMBER = 315_360_000.0


def finite_float(text: str) -> float:
    """A finite number of ordinary size: NaN and infinity would hang a run or poison JSON."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise argparse.ArgumentTypeError(
            f"must be a finite number no larger than {MAX_NUMBER:.0f}, not {text!r}"
        )
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, not {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_COUNT}, not {text!r}")
    return value
