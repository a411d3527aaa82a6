"""``wsprof micro``: check the filters, run the rows with progress, print, write the JSON."""

from __future__ import annotations

import argparse
import time

from wsprof.micro.catalog import Row, not_applicable, select_rows
from wsprof.micro.harness import FULL, QUICK, run_rows
from wsprof.report.console import make_console
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.micro import micro_document, print_micro
from wsprof.report.progress import progress_bar


def run(args: argparse.Namespace) -> int:
    """Run the micro rows; the JSON file appears only once every row has a result."""
    rows = select_rows(args.layer, args.payload)
    if args.json is not None:
        check_json_target(args.json)
    notes = not_applicable(args.layer, args.payload)
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    total = len(rows) * settings.rounds
    done: list[str] = []
    with progress_bar(
        "micro", f"wsprof micro: measuring {len(rows)} rows ({settings.mode} mode)"
    ) as on_progress:

        def row_done(row: Row) -> None:
            done.append(row.id)
            on_progress(f"{row.id} done", len(done), total)

        results = run_rows(rows, settings, row_done)
    wall_s = time.monotonic() - started
    harness = {**settings.as_dict(), "wall_s": round(wall_s, 2)}
    if args.json is not None:
        write_json(args.json, micro_document(results, notes, harness))
    print_micro(make_console(), results, notes, harness, wall_s)
    return 0
