"""One console policy for every command: full width in a terminal, wide when piped."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 160  # a log file or CI output: wide tables beat wrapped 80-column cells


def make_console(stderr: bool = False) -> Console:
    """A console on stdout or stderr: the terminal's width, or PIPED_WIDTH when piped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


def note(text: str) -> None:
    """One ``wsprof: note:`` line on stderr: worth reading, not an error."""
    err = make_console(stderr=True)
    err.print(f"wsprof: note: {text}", markup=False, highlight=False, soft_wrap=True)
