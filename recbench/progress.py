"""Progress bars for long work (downloads, parsing, training, evaluation).

Library code receives a :class:`Progress` and never talks to the terminal itself; the CLI
decides whether bars are shown (``--quiet`` hides them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress


class Task:
    """Handle of one bar: ``advance`` it, or change its description."""

    def __init__(self, bar: RichProgress | None, task_id: Any):
        self._bar = bar
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._id, amount)

    def update(self, *, description: str | None = None, total: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=description, total=total)


class Progress:
    """Shows progress bars on a console, or nothing when ``quiet``.

    Use :meth:`task` as a context manager::

        with progress.task("Evaluating lstm", total=n_queries) as bar:
            ...
            bar.advance(len(batch))
    """

    def __init__(self, *, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)

    @classmethod
    def silent(cls) -> Progress:
        return cls(quiet=True)

    @contextmanager
    def task(
        self, description: str, total: float | None = None, *, bytes: bool = False
    ) -> Iterator[Task]:
        if self.quiet:
            yield Task(None, None)
            return
        if bytes:
            columns: tuple[Any, ...] = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
        else:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
        with RichProgress(*columns, console=self.console, transient=True) as bar:
            yield Task(bar, bar.add_task(description, total=total))

    def log(self, message: str, *, style: str | None = None) -> None:
        """A one-line status message, printed as plain text (hidden when quiet)."""
        if not self.quiet:
            self.console.print(message, style=style, markup=False, highlight=False)
