"""Progress on stderr for long commands: a bar on a terminal, one line in a log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wsprof.report.console import make_console


@contextmanager
def progress_bar(
    label: str, total: int, first: str, plain: str
) -> Iterator[Callable[[str], None] | None]:
    """Yield a callback that advances a transient bar by one step and shows its text.

    A log file gets ``plain`` once and no callback (None): a redraw per step
    would fill it with bars.
    """
    err = make_console(stderr=True)
    if not err.is_terminal:
        err.print(plain)
        yield None
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
        task = bar.add_task(first, total=total)
        yield lambda text: bar.update(task, advance=1, description=text)
