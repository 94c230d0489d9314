"""Progress bars for long work (downloads, parsing, training, evaluation).

Library code receives a :class:`Progress` and never talks to the terminal itself; the CLI
decides whether bars are shown (``--quiet`` hides them). Tasks may nest (a download inside
a dataset preparation, an evaluation inside a training epoch): they share one live display.
When the console is not a terminal (stderr redirected to a file or a pipe) there are no
bars, and every message is one plain line: never wrapped, no blank lines between them.
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
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.text import Text


class _AmountColumn(ProgressColumn):
    """``12/340`` for counted work, ``1.2/4.9 MB  3.1 MB/s`` for bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._count = MofNCompleteColumn()
        self._bytes = DownloadColumn()
        self._speed = TransferSpeedColumn()

    def render(self, task: RichTask) -> Text:
        if task.fields.get("bytes"):
            return Text.assemble(self._bytes.render(task), " ", self._speed.render(task))
        return self._count.render(task)


class ProgressBar:
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
        self._live: RichProgress | None = None
        self._open_tasks = 0

    @classmethod
    def silent(cls) -> Progress:
        return cls(quiet=True)

    @contextmanager
    def task(
        self, description: str, total: float | None = None, *, bytes: bool = False
    ) -> Iterator[ProgressBar]:
        """A bar for one piece of work; ``bytes`` shows sizes and speed instead of counts
        (drawn on a terminal only: a live display written to a file leaves blank lines)."""
        if self.quiet or not self.console.is_terminal:
            yield ProgressBar(None, None)
            return
        if self._live is None:
            self._live = RichProgress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                _AmountColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._live.start()
        live = self._live
        task_id = live.add_task(description, total=total, bytes=bytes)
        self._open_tasks += 1
        try:
            yield ProgressBar(live, task_id)
        finally:
            live.remove_task(task_id)
            self._open_tasks -= 1
            if self._open_tasks == 0:
                live.stop()
                self._live = None

    def log(self, message: str, *, style: str | None = None) -> None:
        """A one-line status message, printed as plain text and never wrapped by rich
        (hidden when quiet)."""
        if not self.quiet:
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
