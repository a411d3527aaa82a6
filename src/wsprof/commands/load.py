"""``wsprof load``: drive any server on this machine and report what the client saw."""

from __future__ import annotations

import argparse

from wsprof.client import broadcast
from wsprof.client.base import LoadConfig
from wsprof.client.driver import run_load
from wsprof.errors import MeasurementError, WsprofError
from wsprof.payloads import get_payload
from wsprof.report.console import make_console
from wsprof.report.hgrm import write_hgrm
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.load import broadcast_document, load_document, print_broadcast, print_load


def run(args: argparse.Namespace) -> int:
    """Print the table and write the JSON even for a run with errors, then fail on them."""
    if args.workload == "broadcast":
        return run_broadcast(args)
    if args.workload in ("idle", "connect"):
        from wsprof.commands import load_connections

        return load_connections.run(args)
    if args.payload_file is None:
        get_payload(args.payload)
    if args.json is not None:
        check_json_target(args.json)
    if args.hgrm is not None:
        check_json_target(args.hgrm)
    # --connections unset: each workload's config has its own default.
    sized = {} if args.connections is None else {"connections": args.connections}
    config = LoadConfig(
        url=args.url,
        mode=args.mode,
        **sized,
        in_flight=args.in_flight,
        rate=args.rate,
        duration=args.duration,
        max_messages=args.messages,
        payload=args.payload,
        serializer=args.serializer,
        warmup=args.warmup,
        connect_timeout=args.connect_timeout,
        reply=args.reply,
        event=args.event,
        reply_event=args.reply_event,
        ack=args.ack,
        payload_file=args.payload_file,
    )
    result = run_load(config, client=args.client, workers=args.workers)
    print_load(make_console(), config, result)
    if args.json is not None:
        write_json(args.json, load_document(config, result))
    if args.hgrm is not None:
        write_hgrm(args.hgrm, result.histogram)
    if result.errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in result.errors.items())
        raise MeasurementError(f"the run had errors ({kinds}); figures above are partial")
    return 0


def run_broadcast(args: argparse.Namespace) -> int:
    """``--workload broadcast``: deliveries/s and send -> delivery latency to a room."""
    if args.workers != 1:
        raise WsprofError("--workload broadcast runs in one client process: drop --workers")
    if args.json is not None:
        check_json_target(args.json)
    if args.hgrm is not None:
        check_json_target(args.hgrm)
    config = broadcast.BroadcastConfig(
        url=args.url,
        mode=args.mode,
        serializer=args.serializer,
        recipients=args.recipients,
        senders=args.senders,
        in_flight=args.in_flight,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        payload_bytes=args.payload_bytes,
        drain_s=args.drain,
    )
    result = broadcast.run(config, client=args.client)
    print_broadcast(make_console(), config, result)
    if args.json is not None:
        write_json(args.json, broadcast_document(config, result))
    if args.hgrm is not None:
        write_hgrm(args.hgrm, result.histogram)
    lost = {"missing": result.missing, "duplicates": result.duplicates, **result.errors}
    problems = ", ".join(f"{k} x{n}" for k, n in lost.items() if n)
    if problems:
        raise MeasurementError(f"the broadcast run had errors ({problems}); figures are partial")
    return 0
