"""Write result documents atomically, so a crash never leaves half a result behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_json_target(path: Path) -> None:
    """Fail now, in one line, if ``path`` cannot be written: before a run, not after it.

    The check is the real thing: a temporary file is created (and removed) in
    the directory the result will go to, exactly as :func:`write_json` will.
    """
    path = Path(path)
    if path.is_dir():
        raise WsprofError(f"cannot write {path}: it is a directory")
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WsprofError(f"cannot write {path}: {existing} is not a directory")
    if existing != parent:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise WsprofError(f"cannot write {path}: cannot create directories in {existing}")
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    except OSError as exc:
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` whole or not at all; a failure is one WsprofError line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        # mkstemp makes 0600; a result gets the mode of every other file wsprof writes.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2, sort_keys=False, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # NaN or infinity: not JSON, and never a figure to publish
        Path(tmp).unlink(missing_ok=True)
        raise WsprofError(f"cannot write {path}: {exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
