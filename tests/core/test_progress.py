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


def test_without_a_terminal_messages_are_plain_unwrapped_lines():
    output = io.StringIO()  # stderr redirected to a file: not a terminal, 80 columns
    progress = Progress(console=Console(file=output))
    line = "epoch 1: loss 0.1234, valid mrr@20 0.2345 " + "x" * 100
    for _ in range(2):
        with progress.task("Training lstm", total=3) as bar:
            bar.advance(3)
            progress.log(line, style="dim")
    assert output.getvalue() == f"{line}\n{line}\n"  # no wrapping, no blank lines, no bars


def test_on_a_terminal_long_messages_are_not_wrapped_by_rich():
    output = io.StringIO()
    progress = Progress(console=Console(file=output, force_terminal=True, width=40))
    progress.log("a" * 100)
    assert "a" * 100 in output.getvalue()
