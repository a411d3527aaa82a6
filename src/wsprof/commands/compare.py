"""``wsprof compare``: two results side by side; exit 1 when the candidate regressed.

Exit status for scenario results: 0 no variant significantly slower (with
``--fail-above PCT``: none significantly slower by more than PCT %), 1 a
regression, 3 undecided (a comparable variant has too few windows in either
run for the test to reach significance), 2 unusable input, or results from
different environments without ``--force``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.report.compare import (
    ONE_WINDOW_NOTE,
    check_document,
    check_pair,
    compare_layers,
    compare_micro,
    compare_scenarios,
    env_differences,
    layer_table,
    micro_table,
    regressions,
    scenario_table,
    undecided,
)
from wsprof.report.console import make_console, note

MAX_BYTES = 64 * 1024 * 1024
"""A result larger than this is not one wsprof wrote (and /dev/zero must not hang)."""
UNDECIDED_EXIT = 3
LAYER_TITLE = (
    "layers: share of the one profiled window's samples, A → B (binomial test: it sees "
    "sampling noise, not run-to-run noise, so a layer verdict never sets the exit status)"
)


def _load(path: Path) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as f:
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
    except UnicodeDecodeError:
        raise WsprofError(f"{path}: not JSON (not UTF-8 text)") from None
    except ValueError as exc:  # JSONDecodeError
        raise WsprofError(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise WsprofError(f"{path}: not a wsprof result (nested too deeply)") from None
    return check_document(doc, str(path))


def _check_environments(a: dict[str, Any], b: dict[str, Any], force: bool) -> None:
    """Refuse results measured on different software or hardware unless forced; say what."""
    diffs = env_differences(a, b)
    if not diffs:
        return
    what = "; ".join(diffs)
    if not force:
        raise WsprofError(
            f"the results come from different environments ({what}); --force compares anyway"
        )
    note(f"comparing results from different environments (--force): {what}")


def _note_contention(doc: dict[str, Any], path: Path) -> None:
    """A run that shared the machine says so; its windows are noisier, its verdicts weaker."""
    contention = doc.get("contention")
    if isinstance(contention, dict) and contention.get("detected"):
        names = contention.get("variants")
        which = ", ".join(map(str, names)) if isinstance(names, list) else "some variants"
        note(f"{path}: other processes shared the machine during {which}")


def run(args: argparse.Namespace) -> int:
    """Micro results print row by row (exit 0); scenario results exit 1 on a regression."""
    a, b = _load(args.baseline), _load(args.candidate)
    check_pair(a, b)
    _check_environments(a, b, args.force)
    console = make_console()
    if a["schema"] == "wsprof.micro/1":
        title = f"wsprof micro: {args.baseline} → {args.candidate}"
        console.print(micro_table(compare_micro(a, b), title))
        return 0
    changes = compare_scenarios(a, b)
    console.print(scenario_table(changes, f"{a['scenario']}: {args.baseline} → {args.candidate}"))
    layers = compare_layers(changes)
    if layers:
        console.print(layer_table(layers, LAYER_TITLE))
    for doc, path in ((a, args.baseline), (b, args.candidate)):
        _note_contention(doc, path)
    if undecided(changes):
        note(ONE_WINDOW_NOTE)
    if regressions(changes, args.fail_above):
        return 1
    return UNDECIDED_EXIT if undecided(changes) else 0
