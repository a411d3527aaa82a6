"""``wsprof attribute``: split a py-spy folded file into cost layers."""

from __future__ import annotations

import argparse

from wsprof.env import environment
from wsprof.errors import WsprofError
from wsprof.profiling.attribute import attribute, no_samples_reason
from wsprof.profiling.folded import read_folded
from wsprof.profiling.layers import load_rules
from wsprof.report.attribution import attribution_table, kernel_io_note
from wsprof.report.console import make_console, note
from wsprof.report.jsonout import write_json


def run(args: argparse.Namespace) -> int:
    """Print the layer table; write the wsprof.attribution/1 JSON (with ``env``) when asked."""
    rules = load_rules(args.rules)
    if notice := rules.new_layers_notice():
        note(notice)
    result = attribute(read_folded(args.folded), rules, idle=args.idle)
    if (reason := no_samples_reason(result)) is not None:
        raise WsprofError(f"{args.folded}: {reason}; nothing to attribute")
    console = make_console()
    console.print(attribution_table(result, title=f"layers of {args.folded}"))
    console.print(kernel_io_note(result), markup=False, highlight=False)
    if args.json is not None:
        write_json(
            args.json, {**result.to_json(), "source": str(args.folded), "env": environment()}
        )
    return 0
