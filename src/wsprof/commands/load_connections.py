"""``wsprof load --workload idle|connect``: hold connections open, or open them in a loop."""

from __future__ import annotations

import argparse

from wsprof.client.connections import (
    DEFAULT_CONNECT_CONCURRENCY,
    DEFAULT_OPEN_CONCURRENCY,
    ConnectConfig,
    IdleConfig,
    run_connect,
    run_idle,
)
from wsprof.errors import MeasurementError
from wsprof.report.console import make_console
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.load_connections import (
    connect_document,
    idle_document,
    print_connect,
    print_idle,
)


def run(args: argparse.Namespace) -> int:
    """Print the table and write the JSON even for a run with errors, then fail on them."""
    if args.json is not None:
        check_json_target(args.json)
    console = make_console()
    if args.workload == "idle":
        idle = IdleConfig(
            url=args.url,
            mode=args.mode,
            serializer=args.serializer,
            **({} if args.connections is None else {"connections": args.connections}),
            duration=args.idle_window,
            open_concurrency=args.concurrency or DEFAULT_OPEN_CONCURRENCY,
        )
        result = run_idle(idle, client=args.client)
        print_idle(console, idle, result)
        document = idle_document(idle, result, args.client)
        errors = dict(result.errors)
        if result.failed:
            errors["failed"] = result.failed
    else:
        connect = ConnectConfig(
            url=args.url,
            mode=args.mode,
            serializer=args.serializer,
            concurrency=args.concurrency or DEFAULT_CONNECT_CONCURRENCY,
            duration=args.duration,
            warmup=args.warmup,
        )
        outcome = run_connect(connect, client=args.client)
        print_connect(console, connect, outcome)
        document = connect_document(connect, outcome, args.client)
        errors = outcome.errors
    if args.json is not None:
        write_json(args.json, document)
    if errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in errors.items())
        raise MeasurementError(f"the run had errors ({kinds}); figures above are partial")
    return 0
