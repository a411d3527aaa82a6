"""pyperf entry point: ``python -m wsprof.micro.worker --rows L/C/V/P,... -o FILE ...``.

This process is pyperf's manager: it runs no benchmark code itself. For each
row pyperf re-runs this module as fresh worker processes (``program_args``
plus ``--rows`` via ``add_cmdline_args``, and its own ``--worker-task``), so
calibration, warm-up and values never share an interpreter with another row,
and an eventlet or gevent hub dies with its process. One manager for many
rows saves a Python start-up per row; the timers are built lazily, only in
the worker that runs them. The orchestrator (``wsprof.micro.harness``) passes
pyperf's own options (``--processes``, ``--values``, ``--min-time``, ``-o``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import pyperf

from wsprof.errors import WsprofError
from wsprof.micro import serializer_bench
from wsprof.micro.catalog import Row, bench_module


class _LazyTimer:
    """Builds the row's timer on first call, so only the worker that runs a row imports for it."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self._time_func: Callable[[int], float] | None = None

    def __call__(self, loops: int) -> float:
        if self._time_func is None:
            module = bench_module(self.row.layer)
            self._time_func = module.timer(self.row.case, self.row.variant, self.row.payload)
        return self._time_func(loops)


def _add_rows(cmd: list[str], args: argparse.Namespace) -> None:
    cmd.extend(("--rows", args.rows))
    if args.samples:
        cmd.extend(("--samples", args.samples))


def main() -> int:
    runner = pyperf.Runner(program_args=("-m", "wsprof.micro.worker"), add_cmdline_args=_add_rows)
    runner.argparser.add_argument(
        "--rows", required=True, help="comma-separated layer/case/variant/payload"
    )
    runner.argparser.add_argument("--samples", help="samples file of the serializer rows")
    args = runner.parse_args()
    if args.samples:
        serializer_bench.use_samples(args.samples)
    try:
        rows = [Row.parse(text) for text in args.rows.split(",")]
    except WsprofError as exc:
        print(f"WsprofError: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        inner_loops = bench_module(row.layer).INNER_LOOPS.get((row.case, row.variant), 1)
        runner.bench_time_func(
            row.id, _LazyTimer(row), inner_loops=inner_loops, metadata={"wsprof_row": row.id}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
