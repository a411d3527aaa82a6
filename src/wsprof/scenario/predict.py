"""Measure the closure check's micro predictions (pyperf processes) for the runner.

Kept apart from :mod:`wsprof.scenario.closure`, which only models and compares:
this module starts processes, so only the runner calls it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wsprof.micro.catalog import Row as MicroRow
from wsprof.micro.harness import CLOSURE, run_rows
from wsprof.scenario.closure import Row


def measure_predictions(rows: list[Row], quick: bool = False) -> list[dict[str, Any]]:
    """Run the needed micro rows, one at a time, with the servers already stopped."""
    if not rows:
        return []
    settings = replace(CLOSURE, processes=1) if quick else CLOSURE
    return run_rows([MicroRow(*row) for row in rows], settings)
