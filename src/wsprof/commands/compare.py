"""``wsprof compare``: two results side by side; exit 1 when the candidate regressed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.report.compare import (
    check_document,
    check_pair,
    compare_micro,
    compare_scenarios,
    micro_table,
    regressions,
    scenario_table,
)
from wsprof.report.console import make_console


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WsprofError(f"{path}: no such file") from None
    except OSError as exc:
        raise WsprofError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise WsprofError(f"{path}: not JSON ({exc})") from None
    return check_document(doc, str(path))


def run(args: argparse.Namespace) -> int:
    """Micro results print row by row (exit 0); scenario results exit 1 on a regression."""
    a, b = _load(args.baseline), _load(args.candidate)
    check_pair(a, b)
    console = make_console()
    if a["schema"] == "wsprof.micro/1":
        title = f"wsprof micro: {args.baseline} → {args.candidate}"
        console.print(micro_table(compare_micro(a, b), title))
        return 0
    changes = compare_scenarios(a, b)
    console.print(scenario_table(changes, f"{a['scenario']}: {args.baseline} → {args.candidate}"))
    return 1 if regressions(changes) else 0
