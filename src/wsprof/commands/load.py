"""``wsprof load``: drive any server on this machine and report what the client saw."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from wsprof.client.base import LoadConfig
from wsprof.client.driver import run_load
from wsprof.errors import MeasurementError, WsprofError
from wsprof.payloads import get_payload
from wsprof.report.console import make_console
from wsprof.report.jsonout import write_json
from wsprof.report.load import load_document, print_load


def check_writable(path: Path) -> None:
    """Fail in one line now, not after the run, when ``path`` cannot be written.

    The path must not be a directory, and its nearest existing ancestor must be a
    directory in which a file can really be created (root passes ``os.access`` even
    on /proc, so a probe file is made and removed). Nothing is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise WsprofError(f"cannot write {path}: it is a directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise WsprofError(f"cannot write {path}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    except OSError as exc:
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def run(args: argparse.Namespace) -> int:
    """Print the table and write the JSON even for a run with errors, then fail on them."""
    get_payload(args.payload)
    if args.json is not None:
        check_writable(args.json)
    config = LoadConfig(
        url=args.url,
        mode=args.mode,
        connections=args.connections,
        in_flight=args.in_flight,
        rate=args.rate,
        duration=args.duration,
        max_messages=args.messages,
        payload=args.payload,
        serializer=args.serializer,
        warmup=args.warmup,
        connect_timeout=args.connect_timeout,
    )
    result = run_load(config, client=args.client, workers=args.workers)
    print_load(make_console(), config, result)
    if args.json is not None:
        write_json(args.json, load_document(config, result))
    if result.errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in result.errors.items())
        raise MeasurementError(f"the run had errors ({kinds}); figures above are partial")
    return 0
