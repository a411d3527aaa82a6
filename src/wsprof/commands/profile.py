"""``wsprof profile``: record a running server with py-spy and split its CPU by layer."""

from __future__ import annotations

import argparse

from wsprof.errors import MeasurementError
from wsprof.profiling.attribute import attribute
from wsprof.profiling.folded import read_folded
from wsprof.profiling.layers import load_rules
from wsprof.profiling.pyspy import record
from wsprof.report.attribution import attribution_table
from wsprof.report.console import make_console, note
from wsprof.report.jsonout import write_json
from wsprof.report.outputs import write_profile_artifacts


def run(args: argparse.Namespace) -> int:
    """Write folded, SVG and speedscope files under ``--out``, print the layers, maybe JSON."""
    rules = load_rules(args.rules)
    if notice := rules.new_layers_notice():
        note(notice)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeasurementError(
            f"cannot write profile output in {args.out}: {exc.strerror or exc}"
        ) from exc
    # --nonblocking: never pause a server someone depends on to read its stacks.
    rec = record(
        args.pid,
        args.out / f"pid{args.pid}.folded",
        args.duration,
        rate=args.rate_hz,
        native=args.native,
        idle=args.idle,
        nonblocking=True,
    )
    stacks = read_folded(rec.path)
    files = write_profile_artifacts(
        stacks,
        rec.path,
        title=f"wsprof: PID {args.pid}, {args.duration:g} s at {args.rate_hz} Hz",
        rules=rules,
    )
    result = attribute(stacks, rules, idle=args.idle)
    console = make_console()
    console.print(attribution_table(result, title=f"layers of PID {args.pid}"))
    console.print(f"wrote {files.folded}, {files.svg}, {files.speedscope}")
    if args.json is not None:
        write_json(args.json, result.to_json())
    return 0
