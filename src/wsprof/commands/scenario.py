"""`wsprof scenario NAME` and `wsprof scenarios`: load -> record -> analyse -> outputs -> render."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from wsprof.errors import WsprofError
from wsprof.profiling.folded import Stack, read_folded
from wsprof.profiling.layers import load_rules
from wsprof.report.console import make_console, note
from wsprof.report.hgrm import check_hgrm_dir, write_scenario_hgrm
from wsprof.report.jsonout import check_json_target
from wsprof.report.outputs import write_scenario_outputs
from wsprof.report.progress import progress_bar
from wsprof.report.scenario import render_scenario
from wsprof.scenario.analysis import analyse, profiled_runs
from wsprof.scenario.files import (
    NAME_RE,
    Scenario,
    app_variant,
    application_globs,
    load_scenario,
    printable,
    shipped_scenarios,
)
from wsprof.scenario.record import ScenarioRecord
from wsprof.scenario.runner import ScenarioRunner, check_out_dir
from wsprof.servers.appcmd import AppSpecError
from wsprof.servers.stacks import parse_option_pairs


def _stacks(record: ScenarioRecord) -> dict[str, list[Stack]]:
    """The parsed recording of every variant analysis attributes."""
    return {
        run.variant.name: read_folded(run.folded)
        for run in profiled_runs(record)
        if run.folded is not None
    }


def with_app(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with ``--app NAME=MODULE:ATTR`` added, or replacing variant NAME."""
    if args.app is None:
        return scenario
    name, sep, target = args.app.partition("=")
    if not sep or not NAME_RE.fullmatch(name):
        raise WsprofError(f"--app must be NAME=MODULE:ATTR with a simple NAME, not {args.app!r}")
    values = {
        "app": target,
        "server": args.server,
        "worker": args.worker,
        "workers": args.workers,
        "path": args.path,
        "mode": args.mode,
        "options": parse_option_pairs(args.app_opt),
    }
    directory = Path(args.app_dir).resolve()
    if not directory.is_dir():
        raise WsprofError(f"--app-dir {printable(str(args.app_dir))} is not a directory")
    try:
        variant = app_variant(name, values, str(directory))
    except AppSpecError as exc:
        flag = str(exc).removeprefix("key '").split("'", 1)[0].split(".")[0]
        flag = {"app": "app", "options": "app-opt"}.get(flag, flag)
        raise WsprofError(f"--{flag}: {str(exc).split(': ', 1)[-1]}") from None
    kept = tuple(v for v in scenario.variants if v.name != name)
    return replace(scenario, variants=(*kept, variant))


def run(args: argparse.Namespace) -> int:
    """Run one scenario; 1 when a variant failed (each failure on stderr), else 0."""
    scenario = with_app(load_scenario(args.name), args)
    # A bad rules file fails now, not after the measuring; the user's app code is `application`.
    rules = load_rules(args.rules).with_application_files(application_globs(scenario.variants))
    # Where the results go is checked before any server starts, not after the run.
    check_out_dir(args.out)
    if args.json is not None:
        check_json_target(args.json)
    if args.hgrm is not None:
        check_hgrm_dir(args.hgrm)
    runner = ScenarioRunner(
        scenario,
        quick=args.quick,
        out_dir=args.out,
        profile=not args.no_profile,
        rate_hz=args.rate_hz,
        native=args.native,
        rules=args.rules,
        repeats=args.repeats,
    )
    runner.preflight()
    if notice := rules.new_layers_notice():
        note(notice)
    with progress_bar(scenario.name, f"wsprof scenario: running {scenario.name}") as on_progress:
        runner.on_progress = on_progress
        record = runner.run()
    for warning in record.env.get("warnings", []):
        note(f"warning: {warning}")
    stacks = _stacks(record)
    result = analyse(record, stacks, rules)
    write_scenario_outputs(result, stacks, rules=rules, json_path=args.json)
    if args.hgrm is not None:
        write_scenario_hgrm(args.hgrm, record)
    console = make_console()
    render_scenario(result, console)
    if args.json is not None:
        console.print(f"wrote {args.json}")
    failed = [v for v in result["variants"] if v["status"] != "ok"]
    for v in failed:  # one line each, whatever a server wrote to its stderr
        error = printable(" ".join(str(v["error"]).split()))
        print(f"wsprof: error: variant {v['name']}: {error}", file=sys.stderr)
    return 1 if failed else 0


def run_list(args: argparse.Namespace) -> int:
    """List the shipped scenarios with their variants."""
    table = Table(title="wsprof scenarios (run: wsprof scenario NAME)")
    table.add_column("name", style="bold")
    table.add_column("variants")
    table.add_column("description")
    for name, path in shipped_scenarios().items():
        scenario = load_scenario(str(path))
        table.add_row(name, ", ".join(v.name for v in scenario.variants), scenario.description)
    make_console().print(table)
    return 0
