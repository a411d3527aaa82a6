"""``wsprof profile``: record a running server with py-spy and split its CPU by layer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wsprof.env import environment
from wsprof.errors import MeasurementError
from wsprof.profiling.attribute import (
    attribute,
    expected_samples,
    no_samples_reason,
    sampling_check,
    with_proc_split,
)
from wsprof.profiling.folded import processes, read_folded, total_samples
from wsprof.profiling.layers import load_rules
from wsprof.profiling.pyspy import (
    DEFAULT_RATE_HZ,
    NATIVE_RATE_HZ,
    Recorder,
    Recording,
    check_target,
    native_window_s,
)
from wsprof.report.attribution import attribution_table, kernel_io_note, printable, sampling_line
from wsprof.report.console import make_console, note
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.outputs import write_profile_artifacts, write_profile_report
from wsprof.servers.launcher import tree_cpu_split

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


def _record_with_split(
    args: argparse.Namespace, out: Path, rate: int, duration: float
) -> tuple[Recording, tuple[float, float]]:
    """py-spy's recording and the tree's (user, system) seconds over the same window."""
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    # --nonblocking: never pause a server someone depends on to read its stacks; py-spy reads
    # native stacks only by pausing, so --native records in blocking mode at a low rate.
    recorder = Recorder(
        args.pid,
        out,
        duration,
        rate=rate,
        native=args.native,
        idle=args.idle,
        nonblocking=not args.native,
    )
    try:
        recorder.start()
        user0, system0 = tree_cpu_split(args.pid, seen)
        rec = recorder.wait()
        user1, system1 = tree_cpu_split(args.pid, seen)
    finally:
        recorder.stop()
    return rec, (user1 - user0, system1 - system0)


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
    rec, (user_s, system_s) = _record_with_split(
        args, args.out / f"pid{args.pid}.folded", rate, duration
    )
    stacks = read_folded(rec.path)
    procs = _profiled(args.pid, processes(stacks))
    result = attribute(stacks, rules, idle=args.idle)
    check = sampling_check(
        expected_samples(rate, duration, user_s + system_s, len(procs)),
        total_samples(stacks),
        rec.samples,
        rec.errors,
    )
    if (reason := no_samples_reason(result)) is not None:
        raise MeasurementError(
            f"PID {args.pid}: {reason} in {duration:g} s (recording kept in {rec.path}); "
            "is the server under load?"
        )
    result = with_proc_split(result, user_s, system_s, native=args.native)
    mode = ", native (blocking)" if args.native else ""
    title = f"wsprof: PID {args.pid}, {duration:g} s at {rate} Hz{mode}"
    files = write_profile_artifacts(stacks, rec.path, title=title, rules=rules)
    page = write_profile_report(
        {**result.to_json(), "env": environment()}, stacks, rec.path, title=title, rules=rules
    )
    console = make_console()
    console.print(_describe(args.pid, procs), markup=False, highlight=False)
    console.print(attribution_table(result, title=f"layers of PID {args.pid}"))
    console.print(kernel_io_note(result), markup=False, highlight=False)
    console.print(
        sampling_line(check, user_s, system_s, result.total_samples),
        markup=False,
        highlight=False,
    )
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
            "server_user_s": user_s,
            "server_system_s": system_s,
        }
        write_json(
            args.json,
            {**result.to_json(), "sampling": check, "target": target, "env": environment()},
        )
    return 0
