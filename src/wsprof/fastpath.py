"""Access to the Cython extensions, with one clear message when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from wsprof.errors import FastPathUnavailable


def load(name: str) -> ModuleType:
    """Import ``wsprof.<name>`` (a compiled extension) or explain how to get it."""
    try:
        return importlib.import_module(f"wsprof.{name}")
    except ImportError as exc:
        raise FastPathUnavailable(
            f"the Cython extension wsprof.{name} is not built ({exc}); reinstall with a C "
            "compiler and WSPROF_BUILD_EXT=required (pip install .), or use the reference path"
        ) from None


def available(name: str) -> bool:
    try:
        load(name)
    except FastPathUnavailable:
        return False
    return True
