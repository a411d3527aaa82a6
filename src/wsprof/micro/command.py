"""``wsprof micro``: validate filters, run the rows with a progress display, print, write JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wsprof.env import environment
from wsprof.micro.catalog import Row, not_applicable, select_rows
from wsprof.micro.harness import FULL, QUICK, SCHEMA_ID, run_rows
from wsprof.report.console import make_console
from wsprof.report.jsonout import write_json
from wsprof.report.micro import print_micro


def micro_command(
    layers: list[str] | None, payloads: list[str] | None, quick: bool, json_path: Path | None
) -> int:
    """Run the micro rows; the JSON file appears only once every row has a result."""
    rows = select_rows(layers, payloads)
    notes = not_applicable(layers, payloads)
    settings = QUICK if quick else FULL
    err = Console(stderr=True)
    started = time.monotonic()
    if err.is_terminal:
        with Progress(
            TextColumn("[bold]micro"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(rows[0].id, total=len(rows) * settings.rounds)

            def advance(row: Row) -> None:
                bar.update(task, advance=1, description=f"{row.id} done")

            results = run_rows(rows, settings, advance)
    else:
        # A log file gets one line, not a redraw per row.
        err.print(f"wsprof micro: measuring {len(rows)} rows ({settings.mode} mode)")
        results = run_rows(rows, settings)
    wall_s = time.monotonic() - started
    harness = {**settings.as_dict(), "wall_s": round(wall_s, 2)}
    if json_path is not None:
        document: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "env": environment(harness=harness),
            "results": results,
            "notes": notes,
        }
        write_json(json_path, document)
    print_micro(make_console(), results, notes, harness, wall_s)
    return 0
