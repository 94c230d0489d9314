"""Markdown building blocks of the reports: escaped table cells and GitHub tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def escape(text: Any) -> str:
    """A table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table with escaped cells."""
    return tabulate(
        [[escape(c) for c in row] for row in rows],
        headers=[escape(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )
