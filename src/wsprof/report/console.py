"""One console policy for every command: full width in a terminal, wide when piped."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 160  # a log file or CI output: wide tables beat wrapped 80-column cells


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)
