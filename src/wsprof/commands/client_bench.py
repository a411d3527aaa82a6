"""`wsprof client-bench`: measure (client/bench.py), then present (report/client_bench.py)."""

from __future__ import annotations

import argparse

from wsprof.client.bench import run_bench
from wsprof.errors import MeasurementError
from wsprof.report.client_bench import render_client_bench
from wsprof.report.console import make_console
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.progress import progress_bar


def run(args: argparse.Namespace) -> int:
    """Run the bench (``args.quick``), print it, write ``args.json`` if given."""
    if args.json is not None:
        check_json_target(args.json)
    try:
        with progress_bar("client-bench", "wsprof client-bench: measuring") as on_progress:
            document = run_bench(args.quick, on_progress)
    except OSError as exc:
        raise MeasurementError(str(exc)) from None
    console = make_console()
    render_client_bench(document, console)
    if args.json is not None:
        write_json(args.json, document)
        console.print(f"wrote {args.json}")
    return 0
