"""Errors that a user can fix.

Every mistake a user can make (an unknown name, a bad option, a malformed file, missing
data while offline) raises a :class:`RecbenchError`. The command line prints it as one
line -- what went wrong, where, and what to do -- and exits with status 2, never with a
traceback. Anything else that escapes is a bug in recbench or in a plugin.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RecbenchError(Exception):
    """A problem the user can fix: says what is wrong, where, and what to do.

    Parameters
    ----------
    what:
        What is wrong, e.g. ``"unknown model 'lstn'"``.
    where:
        Where it was found: a file and line, an option key, a command-line flag.
    hint:
        What to do about it, e.g. ``"did you mean 'lstm'?"``.
    """

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.what
        if self.where:
            text += f" (in {self.where})"
        if self.hint:
            text += f": {self.hint}"
        return text.replace("\n", " ")


class ConfigError(RecbenchError):
    """Unknown names, bad option values, contradictory settings."""


class DataError(RecbenchError):
    """Missing, malformed or unusable data files."""


class PluginError(RecbenchError):
    """A plugin that cannot be loaded or does not honour the plugin contract."""


def close_matches(name: str, choices: Iterable[str]) -> str:
    """A hint naming the closest valid choices, or listing all of them when none is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if not choices:
        return "none are available"
    shown = ", ".join(choices[:25]) + (", ..." if len(choices) > 25 else "")
    return f"choose from {shown}"
