"""``wsprof profile``: record a running server with py-spy and split its CPU by layer."""

from __future__ import annotations

import argparse
from typing import Any

from wsprof.env import environment
from wsprof.errors import MeasurementError
from wsprof.profiling.attribute import attribute, no_samples_reason
from wsprof.profiling.folded import processes, read_folded
from wsprof.profiling.layers import load_rules
from wsprof.profiling.pyspy import (
    DEFAULT_RATE_HZ,
    NATIVE_RATE_HZ,
    check_target,
    native_window_s,
    record,
)
from wsprof.report.attribution import attribution_table, printable
from wsprof.report.console import make_console, note
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.outputs import write_profile_artifacts, write_profile_report

_CMDLINE_SHOWN = 120


def _profiled(pid: int, found: dict[int, tuple[str, int]]) -> list[dict[str, Any]]:
    """The processes py-spy sampled: the target and its children, never anything else."""
    if not found:  # py-spy without process roots: only the target itself was sampled
        return [{"pid": pid, "cmdline": None, "samples": None}]
    return [
        {"pid": p, "cmdline": cmd, "samples": n}
        for p, (cmd, n) in sorted(found.items(), key=lambda kv: (kv[0] != pid, kv[0]))
    ]


def _describe(pid: int, procs: list[dict[str, Any]]) -> str:
    others = len(procs) - 1
    lines = [f"profiled PID {pid}" + (f" and {others} child process(es)" if others > 0 else "")]
    for p in procs:
        cmd = printable(p["cmdline"] or "", _CMDLINE_SHOWN)
        samples = "" if p["samples"] is None else f"  ({p['samples']:,} samples)"
        lines.append(f"  PID {p['pid']}  {cmd}{samples}")
    return "\n".join(lines)


def _rate_and_window(args: argparse.Namespace) -> tuple[int, float]:
    """The rate and duration asked for, else the defaults of the mode (native: low and long)."""
    if not args.native:
        return args.rate_hz or DEFAULT_RATE_HZ, args.duration or 10.0
    rate = args.rate_hz or NATIVE_RATE_HZ
    return rate, args.duration or native_window_s(rate)


def run(args: argparse.Namespace) -> int:
    """Write folded, SVG and speedscope files under ``--out``, print the layers, maybe JSON."""
    check_target(args.pid)
    rules = load_rules(args.rules)
    if notice := rules.new_layers_notice():
        note(notice)
    if args.json is not None:
        check_json_target(args.json)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeasurementError(
            f"cannot write profile output in {args.out}: {exc.strerror or exc}"
        ) from exc
    rate, duration = _rate_and_window(args)
    # --nonblocking: never pause a server someone depends on to read its stacks; py-spy reads
    # native stacks only by pausing, so --native records in blocking mode at a low rate.
    rec = record(
        args.pid,
        args.out / f"pid{args.pid}.folded",
        duration,
        rate=rate,
        native=args.native,
        idle=args.idle,
        nonblocking=not args.native,
    )
    stacks = read_folded(rec.path)
    procs = _profiled(args.pid, processes(stacks))
    result = attribute(stacks, rules, idle=args.idle)
    if (reason := no_samples_reason(result)) is not None:
        raise MeasurementError(
            f"PID {args.pid}: {reason} in {duration:g} s (recording kept in {rec.path}); "
            "is the server under load?"
        )
    mode = ", native (blocking)" if args.native else ""
    title = f"wsprof: PID {args.pid}, {duration:g} s at {rate} Hz{mode}"
    files = write_profile_artifacts(stacks, rec.path, title=title, rules=rules)
    page = write_profile_report(
        {**result.to_json(), "env": environment()}, stacks, rec.path, title=title, rules=rules
    )
    console = make_console()
    console.print(_describe(args.pid, procs), markup=False, highlight=False)
    console.print(attribution_table(result, title=f"layers of PID {args.pid}"))
    console.print(
        f"wrote {files.folded}, {files.svg}, {files.speedscope}, {page}",
        markup=False,
        highlight=False,
    )
    if args.json is not None:
        target = {
            "pid": args.pid,
            "duration_s": duration,
            "rate_hz": rate,
            "native": args.native,
            "processes": procs,
        }
        write_json(args.json, {**result.to_json(), "target": target, "env": environment()})
    return 0
