"""Command line: parses arguments and calls one function per subcommand; nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wsprof import __version__
from wsprof.errors import WsprofError

DESCRIPTION = """\
wsprof: where do the microseconds of one real-time message go?

  wsprof micro                       isolate each cost layer (greenlet, asyncio, framing, json)
  wsprof scenario socketio-framing   drive real server stacks, A/B one layer, attribute the cost
  wsprof scenarios                   list the shipped scenarios
  wsprof load URL                    drive any WebSocket / Socket.IO server (yours too)
  wsprof client-bench                show the load client is not the bottleneck
  wsprof attribute FILE.folded       split a py-spy recording into cost layers
  wsprof diff A.folded B.folded      differential flamegraph, per message
  wsprof profile --pid PID           record and attribute a running server
"""


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsprof", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"wsprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    micro = sub.add_parser(
        "micro",
        help="microbenchmarks of each cost layer (pyperf workers, one process per variant)",
        description="Microbenchmarks that isolate each cost layer: greenlet switching "
        "(greenlet/eventlet/gevent), asyncio task switching (asyncio/uvloop), Socket.IO and "
        "Engine.IO framing (python-socketio), JSON encoding (json/orjson/msgpack). Every "
        "green-thread and event-loop variant runs in its own processes.",
    )
    micro.add_argument(
        "--layer",
        action="append",
        metavar="L",
        help="only this layer (repeatable): greenlet, asyncio, framing, json",
    )
    micro.add_argument(
        "--payload",
        action="append",
        metavar="P",
        help="only this payload (repeatable): small, medium, large, binary",
    )
    micro.add_argument(
        "--quick", action="store_true", help="rough and fast (fewer processes and values)"
    )
    micro.add_argument(
        "--json", type=Path, metavar="PATH", help="write results as wsprof.micro/1 JSON"
    )

    load = sub.add_parser(
        "load",
        help="drive a WebSocket or Socket.IO server with the fast client",
        description="Drive any WebSocket or Socket.IO server on this machine. Closed loop "
        "(--in-flight K per connection) measures capacity; open loop (--rate R msgs/s total) "
        "measures latency from each message's intended send time (no coordinated omission).",
    )
    load.add_argument(
        "url",
        help="ws://127.0.0.1:PORT/PATH (Socket.IO: ws://HOST:PORT/socket.io/?EIO=4&transport=websocket)",
    )
    load.add_argument(
        "--mode",
        choices=("raw", "socketio"),
        default="raw",
        help="raw WebSocket frames, or Engine.IO v4 + Socket.IO v5 events (default raw)",
    )
    load.add_argument("--connections", type=_positive_int, default=1, metavar="N", help="default 1")
    pace = load.add_mutually_exclusive_group()
    pace.add_argument(
        "--in-flight",
        type=_positive_int,
        default=1,
        metavar="K",
        help="closed loop: messages outstanding per connection (default 1)",
    )
    pace.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="open loop: total messages per second over all connections",
    )
    load.add_argument(
        "--duration",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="measurement window in seconds (default 10)",
    )
    load.add_argument(
        "--messages", type=_positive_int, metavar="M", help="stop after M round trips"
    )
    load.add_argument(
        "--warmup", type=float, default=1.0, metavar="S", help="unrecorded warm-up (default 1 s)"
    )
    load.add_argument(
        "--payload",
        default="small",
        metavar="P",
        help="a payload name from wsprof micro (default small)",
    )
    load.add_argument(
        "--serializer",
        choices=("json", "msgpack"),
        default="json",
        help="Socket.IO packet format the server uses (default json)",
    )
    load.add_argument(
        "--workers", type=_positive_int, default=1, metavar="W", help="client processes (default 1)"
    )
    load.add_argument(
        "--client",
        choices=("fast", "reference"),
        default="fast",
        help="fast: Cython epoll client; reference: pure-Python asyncio (default fast)",
    )
    load.add_argument("--connect-timeout", type=_positive_float, default=5.0, metavar="S")
    load.add_argument(
        "--json", type=Path, metavar="PATH", help="write the result as wsprof.load/1 JSON"
    )

    bench = sub.add_parser(
        "client-bench",
        help="measure both load clients against a native echo server and the kernel floor",
        description="Start a cheap Cython echo server on its own core, measure the loopback "
        "send+recv floor, then the fast and reference clients at 1 and 100 connections.",
    )
    bench.add_argument("--quick", action="store_true", help="short windows")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write wsprof.client-bench/1 JSON")

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
        "--out",
        type=Path,
        default=Path("flamegraphs"),
        metavar="DIR",
        help="where flamegraphs go (default ./flamegraphs)",
    )
    scenario.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy window and attribution"
    )
    scenario.add_argument(
        "--rate-hz",
        type=_positive_int,
        default=None,
        metavar="HZ",
        help="py-spy sampling rate (default from the scenario, else 500)",
    )
    scenario.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    scenario.add_argument(
        "--rules", type=Path, metavar="FILE", help="layer rules TOML overriding the defaults"
    )
    scenario.add_argument(
        "--repeats", type=_positive_int, metavar="N", help="measurement windows per variant"
    )

    sub.add_parser(
        "scenarios", help="list the shipped scenarios", description="List the shipped scenarios."
    )

    attribute = sub.add_parser(
        "attribute",
        help="split a py-spy raw (folded) file into cost layers",
        description="Charge every sample of a py-spy raw/folded file to one cost layer by its "
        "innermost frame, using ordered rules (built in, or --rules FILE).",
    )
    attribute.add_argument("folded", type=Path, help="py-spy record --format raw output")
    attribute.add_argument("--rules", type=Path, metavar="FILE", help="layer rules TOML")
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
    diff.add_argument("--messages-a", type=_positive_int, metavar="N")
    diff.add_argument("--messages-b", type=_positive_int, metavar="N")

    profile = sub.add_parser(
        "profile",
        help="record a running server with py-spy and attribute it",
        description="Record a running Python server (and its child processes) with py-spy "
        "and split its CPU by cost layer.",
    )
    profile.add_argument("--pid", type=int, required=True)
    profile.add_argument("--duration", type=_positive_float, default=10.0, metavar="S")
    profile.add_argument("--rate-hz", type=_positive_int, default=500, metavar="HZ")
    profile.add_argument("--native", action="store_true")
    profile.add_argument("--idle", action="store_true")
    profile.add_argument("--rules", type=Path, metavar="FILE")
    profile.add_argument("--out", type=Path, default=Path("flamegraphs"), metavar="DIR")
    profile.add_argument("--json", type=Path, metavar="PATH")

    compare = sub.add_parser(
        "compare",
        help="compare two results (scenario or micro JSON)",
        description="Compare two wsprof.scenario/1 results (µs/message and throughput per "
        "variant, flagging changes larger than both runs' spread) or two wsprof.micro/1 "
        "results (row by row).",
    )
    compare.add_argument("baseline", type=Path)
    compare.add_argument("candidate", type=Path)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "micro":
        from wsprof.micro.command import micro_command

        return micro_command(args.layer, args.payload, args.quick, args.json)
    if args.command == "load":
        from wsprof.client.command import load_command

        return load_command(args)
    if args.command == "client-bench":
        from wsprof.client.bench import client_bench_command

        return client_bench_command(args.json, args.quick)
    if args.command == "scenario":
        from wsprof.commands import scenario

        return scenario.run(args)
    if args.command == "scenarios":
        from wsprof.commands import scenario

        return scenario.run_list(args)
    if args.command == "attribute":
        from wsprof.profiling.commands import attribute_command

        return attribute_command(args.folded, args.rules, args.json, args.idle)
    if args.command == "diff":
        from wsprof.profiling.commands import diff_command

        return diff_command(args.a, args.b, args.output, args.messages_a, args.messages_b)
    if args.command == "profile":
        from wsprof.profiling.commands import profile_command

        return profile_command(
            args.pid,
            args.duration,
            args.rate_hz,
            args.native,
            args.idle,
            args.rules,
            args.out,
            args.json,
        )
    if args.command == "compare":
        from wsprof.report.compare import compare_command

        return compare_command(args.baseline, args.candidate)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return dispatch(args)
    except WsprofError as exc:
        print(f"wsprof: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wsprof: interrupted; nothing was written as complete", file=sys.stderr)
        return 130
