"""``wsprof report RESULT.json``: render report.html again from a scenario result file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.profiling.folded import Stack, read_folded
from wsprof.profiling.layers import load_rules
from wsprof.report.console import make_console
from wsprof.report.html import scenario_html
from wsprof.report.outputs import write_report

MAX_BYTES = 64 * 1024 * 1024
"""A result larger than this is not one wsprof wrote (and /dev/zero must not hang)."""
SCHEMA = "wsprof.scenario/1"


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise WsprofError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise WsprofError(f"{path}: is a directory, not a result file") from None
    except OSError as exc:
        raise WsprofError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise WsprofError(f"{path}: larger than {MAX_BYTES >> 20} MiB, not a wsprof result")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WsprofError(f"{path}: not JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise WsprofError(f"{path}: not a {SCHEMA} result")
    return doc


def _stacks(doc: dict[str, Any]) -> tuple[dict[str, list[Stack]], dict[str, str]]:
    """Each profiled variant's recording, read from beside the result; why, where one is gone."""
    stacks: dict[str, list[Stack]] = {}
    missing: dict[str, str] = {}
    for v in doc["variants"]:
        folded = (v.get("flamegraphs") or {}).get("folded")
        if v.get("status") != "ok" or not folded:
            continue
        try:
            stacks[v["name"]] = read_folded(folded)
        except WsprofError as exc:
            missing[v["name"]] = str(exc)
    return stacks, missing


def _default_output(source: Path, doc: dict[str, Any]) -> Path:
    """The run directory's report.html when that directory still exists, else beside the JSON."""
    out_dir = (doc.get("profiling") or {}).get("out_dir")
    if out_dir and Path(out_dir).is_dir():
        return Path(out_dir) / "report.html"
    return source.with_suffix(".html")


def run(args: argparse.Namespace) -> int:
    """Write the report; recordings that moved away are named in the page, not fatal."""
    doc = _load(args.result)
    rules_path = (doc.get("profiling") or {}).get("rules")
    rules = load_rules(args.rules or (None if rules_path in (None, "default") else rules_path))
    stacks, missing = _stacks(doc)
    try:
        text = scenario_html(doc, stacks, rules, missing)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WsprofError(f"{args.result}: not a complete {SCHEMA} result ({exc!r})") from None
    out = args.output or _default_output(args.result, doc)
    write_report(out, text)
    make_console().print(f"wrote {out}", markup=False, highlight=False)
    return 0
