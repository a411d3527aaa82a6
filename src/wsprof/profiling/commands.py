"""What the CLI's ``attribute``, ``diff`` and ``profile`` subcommands do.

Each returns the process exit code: 0 on success, 2 on bad input (a
:class:`~wsprof.errors.WsprofError`), 1 when a run fails at runtime (a
:class:`~wsprof.errors.MeasurementError`). Errors are one line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wsprof.errors import MeasurementError, WsprofError
from wsprof.profiling.attribute import Attribution, attribute
from wsprof.profiling.flamegraph import write_diff_flamegraph, write_flamegraph
from wsprof.profiling.folded import read_folded
from wsprof.profiling.layers import load_rules
from wsprof.profiling.pyspy import record
from wsprof.profiling.speedscope import write_speedscope
from wsprof.report.attribution import attribution_table, diff_table
from wsprof.report.console import make_console


def _fail(exc: Exception) -> int:
    print(f"wsprof: error: {exc}", file=sys.stderr)
    return 1 if isinstance(exc, MeasurementError) else 2


def _write_json(attribution: Attribution, path: Path) -> None:
    try:
        path.write_text(json.dumps(attribution.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc


def attribute_command(folded: Path, rules: Path | None, json_path: Path | None, idle: bool) -> int:
    """Split a folded file by layer: print the table, optionally write the JSON."""
    try:
        rs = load_rules(rules)
        result = attribute(read_folded(folded), rs, idle=idle)
        make_console().print(attribution_table(result, title=f"layers of {folded}"))
        if json_path is not None:
            _write_json(result, json_path)
    except WsprofError as exc:
        return _fail(exc)
    return 0


def diff_command(
    a: Path, b: Path, out: Path | None, messages_a: int | None, messages_b: int | None
) -> int:
    """Write B-against-A differential SVG and print per-layer share deltas."""
    try:
        for name, n in (("messages-a", messages_a), ("messages-b", messages_b)):
            if n is not None and n <= 0:
                raise WsprofError(f"--{name} must be a positive message count, not {n}")
        stacks_a, stacks_b = read_folded(a), read_folded(b)
        target = out if out is not None else b.with_name(b.stem + ".diff.svg")
        try:
            write_diff_flamegraph(
                stacks_a,
                stacks_b,
                target,
                messages_a,
                messages_b,
                title=f"{b.name} against {a.name}",
            )
        except OSError as exc:
            raise WsprofError(f"cannot write {target}: {exc.strerror or exc}") from exc
        console = make_console()
        console.print(diff_table(attribute(stacks_a), attribute(stacks_b), title=f"A={a}  B={b}"))
        console.print(f"differential flamegraph: {target}")
    except WsprofError as exc:
        return _fail(exc)
    return 0


def profile_command(
    pid: int,
    duration: float,
    rate: int,
    native: bool,
    idle: bool,
    rules: Path | None,
    out_dir: Path,
    json_path: Path | None,
) -> int:
    """Record a running server, write folded/SVG/speedscope files and print its layers."""
    try:
        rs = load_rules(rules)
        out_dir.mkdir(parents=True, exist_ok=True)
        base = out_dir / f"pid{pid}"
        # --nonblocking: never pause a server someone depends on to read its stacks.
        rec = record(
            pid,
            base.with_suffix(".folded"),
            duration,
            rate=rate,
            native=native,
            idle=idle,
            nonblocking=True,
        )
        stacks = read_folded(rec.path)
        write_flamegraph(
            stacks,
            base.with_suffix(".svg"),
            rs,
            title=f"wsprof: PID {pid}, {duration:g} s at {rate} Hz",
        )
        write_speedscope(stacks, base.with_suffix(".speedscope.json"), name=f"PID {pid}")
        result = attribute(stacks, rs, idle=idle)
        console = make_console()
        console.print(attribution_table(result, title=f"layers of PID {pid}"))
        console.print(
            f"wrote {rec.path}, {base.with_suffix('.svg')}, {base.with_suffix('.speedscope.json')}"
        )
        if json_path is not None:
            _write_json(result, json_path)
    except WsprofError as exc:
        return _fail(exc)
    except OSError as exc:
        return _fail(
            MeasurementError(f"cannot write profile output in {out_dir}: {exc.strerror or exc}")
        )
    return 0
