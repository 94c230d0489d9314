from __future__ import annotations

import io

from rich.console import Console

from recbench.progress import Progress


def test_nested_tasks_share_one_display_and_close_it():
    output = io.StringIO()
    progress = Progress(console=Console(file=output, force_terminal=True, width=100))
    with progress.task("Preparing data", total=2) as outer:
        with progress.task("Downloading ml-100k.zip", total=1000, bytes=True) as download:
            download.advance(500)
        outer.advance(2)
        progress.log("prepared [not markup]")
    assert progress._live is None
    assert "prepared [not markup]" in output.getvalue()


def test_quiet_prints_nothing():
    output = io.StringIO()
    progress = Progress(quiet=True, console=Console(file=output))
    with progress.task("Evaluating", total=3) as bar:
        bar.advance(3)
    progress.log("hidden")
    assert output.getvalue() == ""
