"""Microbenchmarks that isolate each cost layer (``wsprof micro``), run under pyperf.

Public API for scenarios: ``LAYERS``, ``rows_for`` (what a run measures),
``read_results`` (from a ``--json`` file), ``lookup`` and ``predict_ns``
(read predictions back).
Loaded lazily: every pyperf worker imports this package, and its start-up
time is paid once per worker process.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LAYERS": "wsprof.micro.catalog",
    "rows_for": "wsprof.micro.catalog",
    "read_results": "wsprof.micro.harness",
    "lookup": "wsprof.micro.harness",
    "predict_ns": "wsprof.micro.harness",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'wsprof.micro' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
