"""The environment block every wsprof result carries, so figures can be compared honestly."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import wsprof
from wsprof import fastpath

PACKAGES = (
    "python-socketio",
    "python-engineio",
    "eventlet",
    "gevent",
    "greenlet",
    "uvloop",
    "uvicorn",
    "starlette",
    "websockets",
    "wsproto",
    "orjson",
    "msgpack",
    "pyperf",
    "py-spy",
    "Cython",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(**extra: Any) -> dict[str, Any]:
    """Python, platform, CPUs and package versions; ``extra`` adds run-specific facts (pinning)."""
    return {
        "wsprof": wsprof.__version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "fast_path": fastpath.available("_histogram"),
        "packages": package_versions(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
