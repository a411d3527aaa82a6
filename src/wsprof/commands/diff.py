"""``wsprof diff``: a differential flamegraph of B against A and the change per layer."""

from __future__ import annotations

import argparse

from wsprof.errors import WsprofError
from wsprof.profiling.attribute import attribute
from wsprof.profiling.flamegraph import write_diff_flamegraph
from wsprof.profiling.folded import read_folded, total_samples
from wsprof.report.attribution import diff_table
from wsprof.report.console import make_console


def run(args: argparse.Namespace) -> int:
    """Write the SVG (default: beside B) and print per-layer share deltas."""
    a, b = args.a, args.b
    stacks_a, stacks_b = read_folded(a), read_folded(b)
    for path, stacks in ((a, stacks_a), (b, stacks_b)):
        if total_samples(stacks) == 0:
            raise WsprofError(
                f"{path}: no samples (no stacks, or every count is 0); nothing to diff"
            )
    target = args.output if args.output is not None else b.with_name(b.stem + ".diff.svg")
    try:
        write_diff_flamegraph(
            stacks_a,
            stacks_b,
            target,
            args.messages_a,
            args.messages_b,
            title=f"{b.name} against {a.name}",
        )
    except OSError as exc:
        raise WsprofError(f"cannot write {target}: {exc.strerror or exc}") from exc
    console = make_console()
    console.print(diff_table(attribute(stacks_a), attribute(stacks_b), title=f"A={a}  B={b}"))
    console.print(f"differential flamegraph: {target}")
    return 0
