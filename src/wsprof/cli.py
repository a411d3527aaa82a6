"""Command line: builds the parser, dispatches through a table, turns errors into exit codes.

Choices, defaults and the names listed in help come from the code's own
tables (load modes, serializers and clients, payloads, micro layers, the
layer list in layers.toml), so the CLI never re-lists them. Command modules
are imported only when their command runs: ``import wsprof.cli`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from wsprof import __version__
from wsprof.argtypes import non_negative_float, positive_float, positive_int
from wsprof.cli_load import add_load
from wsprof.errors import WsprofError

COMMANDS: dict[str, tuple[str, str]] = {
    "micro": ("wsprof.commands.micro", "run"),
    "scenario": ("wsprof.commands.scenario", "run"),
    "scenarios": ("wsprof.commands.scenario", "run_list"),
    "load": ("wsprof.commands.load", "run"),
    "client-bench": ("wsprof.commands.client_bench", "run"),
    "attribute": ("wsprof.commands.attribute", "run"),
    "diff": ("wsprof.commands.diff", "run"),
    "profile": ("wsprof.commands.profile", "run"),
    "compare": ("wsprof.commands.compare", "run"),
    "tune": ("wsprof.commands.tune", "run"),
    "report": ("wsprof.commands.report", "run"),
}
"""Subcommand -> (module, function taking the parsed arguments and returning the exit code)."""

DEFAULT_OUT = Path("flamegraphs")
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT

_SUMMARY = """\
wsprof: where do the microseconds of one real-time message go?

  wsprof micro                       isolate each cost layer ({micro_layers})
  wsprof scenario socketio-framing   drive real server stacks, A/B one layer, attribute the cost
  wsprof scenarios                   list the shipped scenarios
  wsprof load URL                    drive any WebSocket / Socket.IO server (yours too)
  wsprof client-bench                show the load client is not the bottleneck
  wsprof attribute FILE.folded       split a py-spy recording into cost layers
  wsprof diff A.folded B.folded      differential flamegraph, per message
  wsprof profile --pid PID           record and attribute a running server
  wsprof compare A.json B.json       compare two scenario or micro results
  wsprof tune serialization          pick python-socketio's serializer on your own messages
  wsprof report RESULT.json          render a scenario result's report.html again
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors follow the one error policy: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"wsprof: error: {one_line(message)} (see {self.prog} --help)\n")


def _rules_help() -> str:
    from wsprof.profiling.layers import LAYERS

    return (
        "layer rules TOML, tried before the packaged rules (format: wsprof/profiling/layers.toml;"
        f" layers: {', '.join(LAYERS)}; a rule may name a new layer)"
    )


def _layer_list() -> str:
    from wsprof.profiling.layers import LAYER_INFO

    width = max(len(layer.name) for layer in LAYER_INFO)
    lines = [f"  {layer.name:<{width}}  {layer.description}" for layer in LAYER_INFO]
    return "layers, in the order reports list them:\n" + "\n".join(lines)


def _add_micro(sub: Any) -> None:
    from wsprof.micro.catalog import LAYERS as MICRO_LAYERS
    from wsprof.payloads import payload_names

    micro = sub.add_parser(
        "micro",
        help="microbenchmarks of each cost layer (pyperf workers, one process per variant)",
        description="Microbenchmarks that isolate each cost layer: greenlet switching "
        "(greenlet/eventlet/gevent), asyncio task switching (asyncio/uvloop), Socket.IO and "
        "Engine.IO framing (python-socketio), JSON encoding (json/orjson/msgpack). Every "
        "green-thread and event-loop variant runs in its own processes.",
    )
    # No argparse choices: the catalogue rejects an unknown name in one line that lists the valid.
    micro.add_argument(
        "--layer",
        action="append",
        metavar="L",
        help=f"only this layer (repeatable): {', '.join(MICRO_LAYERS)}",
    )
    micro.add_argument(
        "--payload",
        action="append",
        metavar="P",
        help=f"only this payload (repeatable): {', '.join(payload_names())}",
    )
    micro.add_argument(
        "--quick", action="store_true", help="rough and fast (fewer processes and values)"
    )
    micro.add_argument(
        "--json", type=Path, metavar="PATH", help="write results as wsprof.micro/1 JSON"
    )


def _add_client_bench(sub: Any) -> None:
    bench = sub.add_parser(
        "client-bench",
        help="measure both load clients against a native echo server and the kernel floor",
        description="Start a cheap Cython echo server on its own core, measure the loopback "
        "send+recv floor, then the fast and reference clients at 1 and 100 connections.",
    )
    bench.add_argument("--quick", action="store_true", help="short windows")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write wsprof.client-bench/1 JSON")


def _add_scenarios(sub: Any) -> None:
    from wsprof.profiling.pyspy import DEFAULT_RATE_HZ, NATIVE_RATE_HZ

    scenario = sub.add_parser(
        "scenario",
        help="run a scenario (an A/B experiment on real server stacks)",
        description="Run a scenario: each variant is a real server stack started on 127.0.0.1, "
        "driven by the fast client through a capacity window (closed loop) and a latency "
        "window (open loop at one offered rate for every variant), then profiled with py-spy "
        "in a separate window and attributed to cost layers.",
    )
    scenario.add_argument(
        "name", help="a shipped scenario name (see `wsprof scenarios`) or a path to a .toml file"
    )
    scenario.add_argument("--quick", action="store_true", help="short windows, one repeat")
    scenario.add_argument("--json", type=Path, metavar="PATH", help="write wsprof.scenario/1 JSON")
    scenario.add_argument(
        "--hgrm",
        type=Path,
        metavar="DIR",
        help="write latency histograms in HdrHistogram's percentile-distribution format "
        "(milliseconds) into DIR: VARIANT.hgrm (open loop) and VARIANT-capacity.hgrm per variant",
    )
    scenario.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where flamegraphs go (default ./%(default)s)",
    )
    scenario.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy window and attribution"
    )
    scenario.add_argument(
        "--rate-hz",
        type=positive_int,
        default=None,
        metavar="HZ",
        help=f"py-spy sampling rate (default from the scenario, else {DEFAULT_RATE_HZ}; "
        f"with --native {NATIVE_RATE_HZ})",
    )
    scenario.add_argument("--native", action="store_true", help=_native_help("profiled window"))
    scenario.add_argument("--rules", type=Path, metavar="FILE", help=_rules_help())
    scenario.add_argument(
        "--repeats", type=positive_int, metavar="N", help="measurement windows per variant"
    )
    _add_app_flags(scenario)
    sub.add_parser(
        "scenarios", help="list the shipped scenarios", description="List the shipped scenarios."
    )


_APP_EXAMPLE = """\
your own app, as a variant beside the scenario's (or replacing the one of that name):
  wsprof scenario socketio-framing --app mine=chat.main:app --server uvicorn --path /ws
  wsprof scenario stack-matrix --app mine=chat.app:app --server flask-socketio --quick
  wsprof scenario socketio-framing --app mine=chat.main:app --server gunicorn \\
      --worker uvicorn --workers 2 --path /ws
MODULE:ATTR is imported from the current directory (--app-dir), by the real server program."""


def _add_app_flags(scenario: Any) -> None:
    """``--app`` and its keys: a scenario file's app variant, from the command line."""
    from wsprof.servers.appcmd import GUNICORN_WORKERS, SERVERS

    scenario.epilog = _APP_EXAMPLE
    scenario.formatter_class = argparse.RawDescriptionHelpFormatter
    scenario.description = textwrap.fill(scenario.description or "", 80)
    app = scenario.add_argument_group("your own app (a variant like a scenario file's `app = ...`)")
    app.add_argument("--app", metavar="NAME=MODULE:ATTR", help="add (or replace) variant NAME")
    app.add_argument("--server", choices=SERVERS, default="uvicorn", help="default %(default)s")
    app.add_argument("--worker", choices=list(GUNICORN_WORKERS), help="gunicorn's worker class")
    app.add_argument("--workers", type=positive_int, default=1, metavar="N", help="server workers")
    app.add_argument("--path", help="WebSocket (or socket.io) path (default /ws, /socket.io/)")
    app.add_argument("--mode", choices=("raw", "socketio"), help="default: from the path")
    app.add_argument(
        "--app-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server option, e.g. loop=uvloop (becomes --loop uvloop)",
    )
    app.add_argument(
        "--app-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where MODULE is imported from (default: the current directory)",
    )


def _add_profiling(sub: Any) -> None:
    from wsprof.profiling.pyspy import DEFAULT_RATE_HZ, NATIVE_RATE_HZ, native_window_s

    attribute = sub.add_parser(
        "attribute",
        help="split a py-spy raw (folded) file into cost layers",
        description="Charge every sample of a py-spy raw/folded file to one cost layer by its "
        "innermost frame, using ordered rules (built in, or --rules FILE).",
        epilog=_layer_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    attribute.add_argument("folded", type=Path, help="py-spy record --format raw output")
    attribute.add_argument("--rules", type=Path, metavar="FILE", help=_rules_help())
    attribute.add_argument("--idle", action="store_true", help="keep idle samples in the shares")
    attribute.add_argument(
        "--json", type=Path, metavar="PATH", help="write wsprof.attribution/1 JSON"
    )

    diff = sub.add_parser(
        "diff",
        help="differential flamegraph of B against A, per message",
        description="Write a differential flamegraph: red where B spends more per message than "
        "A, blue where less. Without message counts, samples are normalised by their totals.",
    )
    diff.add_argument("a", type=Path)
    diff.add_argument("b", type=Path)
    diff.add_argument("-o", "--output", type=Path, metavar="FILE.svg")
    diff.add_argument("--messages-a", type=positive_int, metavar="N")
    diff.add_argument("--messages-b", type=positive_int, metavar="N")

    profile = sub.add_parser(
        "profile",
        help="record a running server with py-spy and attribute it",
        description="Record a running Python server (and its child processes) with py-spy "
        "and split its CPU by cost layer.",
        epilog=_layer_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    profile.add_argument("--pid", type=int, required=True)
    profile.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="S",
        help=f"default 10 s; with --native {native_window_s(NATIVE_RATE_HZ):g} s",
    )
    profile.add_argument(
        "--rate-hz",
        type=positive_int,
        default=None,
        metavar="HZ",
        help=f"py-spy sampling rate (default {DEFAULT_RATE_HZ}; with --native {NATIVE_RATE_HZ})",
    )
    profile.add_argument("--native", action="store_true", help=_native_help("recording"))
    profile.add_argument("--idle", action="store_true", help="keep idle samples in the shares")
    profile.add_argument("--rules", type=Path, metavar="FILE", help=_rules_help())
    profile.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help="default ./%(default)s"
    )
    profile.add_argument(
        "--json", type=Path, metavar="PATH", help="write wsprof.attribution/1 JSON"
    )


def _native_help(what: str) -> str:
    """--native's help: what the mode costs and how rate and window follow from it."""
    from wsprof.profiling.pyspy import (
        NATIVE_MIN_SAMPLES,
        NATIVE_RATE_HZ,
        NATIVE_WINDOW_MARGIN_S,
        native_window_s,
    )

    return (
        "sample C frames too (py-spy --native): kernel calls, uvloop, the C json encoder. py-spy "
        "reads native stacks only by pausing the server (blocking mode, ~2 ms per sample: "
        f"~20%% of its throughput at 100 Hz, <= 5%% at {NATIVE_RATE_HZ} Hz), so the default rate "
        f"drops to {NATIVE_RATE_HZ} Hz, py-spy runs on the server's CPUs, and the {what} grows to "
        f"ceil({NATIVE_MIN_SAMPLES} / rate) s + {NATIVE_WINDOW_MARGIN_S:g} s "
        f"({native_window_s(NATIVE_RATE_HZ):g} s) for >= {NATIVE_MIN_SAMPLES:,} samples of a "
        "busy server (py-spy keeps only samples where the server runs: a scenario divides the "
        "window by the busy share of the variant's last clean window)"
    )


def _add_compare(sub: Any) -> None:
    compare = sub.add_parser(
        "compare",
        help="compare two results (scenario or micro JSON)",
        description="Compare two wsprof.scenario/1 results (server CPU µs/message per "
        "variant with an exact Mann-Whitney test over the measurement windows; each layer's "
        "share with a two-proportion test over the profiled samples, Holm-corrected; "
        "'not significant' within noise, p < 0.05 otherwise) or two wsprof.micro/1 results "
        "(row by row). Results from different environments (Python, packages, CPUs, pinning) "
        "are refused unless --force. Exit status: 0 no significant regression, 1 a "
        "regression, 2 bad input or different environments, 3 undecided (too few windows: "
        "one, or fewer than 4+4, cannot reach p < 0.05).",
    )
    compare.add_argument("baseline", type=Path)
    compare.add_argument("candidate", type=Path)
    compare.add_argument(
        "--fail-above",
        type=non_negative_float,
        metavar="PCT",
        help="exit 1 only for a variant significantly slower by more than PCT %% of server "
        "CPU per message (a CI gate); default: any significant slowdown",
    )
    compare.add_argument(
        "--force",
        action="store_true",
        help="compare results from different environments (the differences are noted)",
    )


def _add_tune(sub: Any) -> None:
    tune = sub.add_parser(
        "tune",
        help="measure a configuration choice on your own messages",
        description="wsprof tune serialization: dumps and loads ns per message, bytes on the "
        "wire and round-trip fidelity of each serializer python-socketio can use, on your "
        "messages; then the configuration of the best compatible one.",
    )
    what = tune.add_subparsers(dest="choice", metavar="CHOICE", required=True)
    serialization = what.add_parser(
        "serialization",
        help="json, a reused encoder, orjson, msgspec, ujson, msgpack",
        description="Time each serializer as python-socketio calls it (pyperf workers), check "
        "that every sample round-trips unchanged, and print the python-socketio configuration "
        "of the fastest compatible one.",
    )
    serialization.add_argument(
        "--samples",
        type=Path,
        metavar="FILE",
        help="your messages: one JSON array, or JSON lines (default: the shipped JSON payloads)",
    )
    serialization.add_argument(
        "--scenario-result",
        type=Path,
        metavar="JSON",
        help="a wsprof.scenario/1 result: project the server CPU saving from its json layer",
    )
    serialization.add_argument(
        "--quick", action="store_true", help="rough and fast (fewer processes and values)"
    )
    serialization.add_argument(
        "--json", type=Path, metavar="PATH", help="write results as wsprof.tune/1 JSON"
    )


def _add_report(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="render a scenario result's report.html again",
        description="Render the self-contained HTML report (results, latency curves, layers, "
        "interactive flamegraphs, budget, closure, environment) from a wsprof.scenario/1 "
        "result; flamegraphs come from the folded recordings the result names.",
    )
    report.add_argument("result", type=Path, help="a wsprof.scenario/1 JSON file")
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="default: report.html in the run directory, else RESULT.html",
    )
    report.add_argument("--rules", type=Path, metavar="FILE", help=_rules_help())


def _adders() -> dict[str, Callable[[Any], None]]:
    """Subcommand -> the function that adds it (some add two or three related commands)."""
    return {
        "micro": _add_micro,
        "load": add_load,
        "client-bench": _add_client_bench,
        "scenario": _add_scenarios,
        "scenarios": _add_scenarios,
        "attribute": _add_profiling,
        "diff": _add_profiling,
        "profile": _add_profiling,
        "compare": _add_compare,
        "tune": _add_tune,
        "report": _add_report,
    }


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` just that subcommand's part.

    Its subcommands are exactly the keys of :data:`COMMANDS`. ``main`` builds
    only the command it runs: every other command's help pulls in its own
    imports, a quarter of a second that `wsprof attribute` on a big file
    should not pay.
    """
    parser = _Parser(prog="wsprof", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wsprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    adders = _adders()
    if only is not None:
        adders[only](sub)
        return parser
    from wsprof.micro.catalog import LAYERS as MICRO_LAYERS

    parser.description = _SUMMARY.format(micro_layers=", ".join(MICRO_LAYERS))
    for add in dict.fromkeys(adders.values()):
        add(sub)
    return parser


def one_line(text: str) -> str:
    """An error message as one line, whatever a library put in it."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def command_function(name: str) -> Callable[[argparse.Namespace], int]:
    """Import the module that runs ``name`` and return its function."""
    module, function = COMMANDS[name]
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, and apply the one error policy: one line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return command_function(args.command)(args)
    except WsprofError as exc:
        print(f"wsprof: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wsprof: interrupted; nothing was written as complete", file=sys.stderr)
        return INTERRUPTED
