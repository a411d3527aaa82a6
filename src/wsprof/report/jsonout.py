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
