"""``wsprof attribute``: split a py-spy folded file into cost layers."""

from __future__ import annotations

import argparse

from wsprof.profiling.attribute import attribute
from wsprof.profiling.folded import read_folded
from wsprof.profiling.layers import load_rules
from wsprof.report.attribution import attribution_table
from wsprof.report.console import make_console, note
from wsprof.report.jsonout import write_json


def run(args: argparse.Namespace) -> int:
    """Print the layer table; write the wsprof.attribution/1 JSON when asked."""
    rules = load_rules(args.rules)
    if notice := rules.new_layers_notice():
        note(notice)
    result = attribute(read_folded(args.folded), rules, idle=args.idle)
    make_console().print(attribution_table(result, title=f"layers of {args.folded}"))
    if args.json is not None:
        write_json(args.json, result.to_json())
    return 0
