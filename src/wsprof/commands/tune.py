"""``wsprof tune serialization``: read the samples, measure, print, write the JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.micro.harness import FULL, QUICK
from wsprof.micro.samples import load_samples, shipped_samples
from wsprof.report.console import make_console
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.progress import progress_bar
from wsprof.report.tune import print_tune
from wsprof.tune.serialization import document, measure

MAX_RESULT_BYTES = 64 * 1024 * 1024
SCENARIO_SCHEMA = "wsprof.scenario/1"


def _scenario(path: Path) -> dict[str, Any]:
    """A scenario result to project onto; checked before anything is measured."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_RESULT_BYTES + 1)
        if len(data) > MAX_RESULT_BYTES:
            raise WsprofError(f"{path}: larger than any scenario result")
        doc = json.loads(data)
    except (OSError, ValueError) as exc:
        raise WsprofError(f"cannot read scenario result {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCENARIO_SCHEMA:
        raise WsprofError(f"{path} is not a {SCENARIO_SCHEMA} result")
    if not isinstance(doc.get("variants"), list):
        raise WsprofError(f"{path}: a {SCENARIO_SCHEMA} result without variants")
    return doc


def run(args: argparse.Namespace) -> int:
    """Only ``serialization`` exists today; the subcommand leaves room for other choices."""
    if args.samples is not None:
        samples, source = load_samples(args.samples), str(args.samples)
    else:
        samples, source = shipped_samples(), "the shipped payloads"
    scenario = _scenario(args.scenario_result) if args.scenario_result is not None else None
    if args.json is not None:
        check_json_target(args.json)
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    with progress_bar(
        "tune", f"wsprof tune serialization: {len(samples)} samples ({settings.mode} mode)"
    ) as on_progress:
        results = measure(samples, settings, on_progress)
    harness = {**settings.as_dict(), "wall_s": round(time.monotonic() - started, 2)}
    doc = document(results, source, samples, harness, scenario)
    if args.json is not None:
        write_json(args.json, doc)
    print_tune(make_console(), doc)
    return 0
