"""Progress on stderr for long commands: a bar on a terminal, one line in a log.

Measuring code never imports rich: it takes an ``on_progress(what, done, total)``
callback (:data:`wsprof.progress.OnProgress`) and the command wires this bar to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wsprof.progress import OnProgress
from wsprof.report.console import make_console


@contextmanager
def progress_bar(label: str, plain: str) -> Iterator[OnProgress]:
    """Yield the callback that draws a transient bar labelled ``label``.

    A log file gets ``plain`` once and a callback that draws nothing: a redraw
    per step would fill it with bars.
    """
    err = make_console(stderr=True)
    if not err.is_terminal:
        err.print(plain)
        yield lambda what, done, total: None
        return
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        yield on_progress
