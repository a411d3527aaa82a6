"""Where a scenario run writes: checked before any work, one directory per run."""

from __future__ import annotations

import os
from pathlib import Path

from wsprof.errors import WsprofError
from wsprof.scenario.files import printable


def check_out_dir(out: Path) -> None:
    """``--out`` must be a directory wsprof can write in (or one it can create), before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WsprofError(f"--out {printable(str(out))} is not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WsprofError(
            f"--out {printable(str(out))}: {printable(str(existing))} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WsprofError(
            f"--out {printable(str(out))}: cannot write in {printable(str(existing))}"
        )


def claim_run_dir(parent: Path, run_id: str) -> Path:
    """A new directory ``parent/run_id`` (``run_id-2``, ``-3``... if taken): never shared.

    mkdir without exist_ok is atomic, so two runs started in the same second
    (same --out, same scenario) always get directories of their own.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = parent / (run_id if n == 1 else f"{run_id}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    except OSError as exc:
        raise WsprofError(
            f"cannot create a run directory in {printable(str(parent))}: {exc.strerror or exc}"
        ) from exc
    raise WsprofError(f"{printable(str(parent))}: no free run directory for {run_id}")
