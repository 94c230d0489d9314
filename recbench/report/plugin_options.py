"""``recbench show NAME``: one model, loss, dataset or metric in full.

It shows what ``recbench list`` shows (kind, id, aliases, summary, the distribution that
provides it), the class's documentation, and every option with its type, default and
help, set as ``-o NAME.KEY=VALUE``. An option's help is its dataclass field's
``metadata["help"]`` when it has one, else its entry in the options class's docstring
(or in a base class's: a model's options inherit the trainer's), numpydoc style::

    @dataclass(frozen=True)
    class Options:
        \"\"\"Options of ``foo``.

        neighbors:
            How many similar items vote.
        \"\"\"

        neighbors: int = 50
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any

from rich.console import Console

from recbench.config.options import defaults, option_fields
from recbench.errors import ConfigError, close_matches
from recbench.registry import PluginInfo, Registry

KINDS = ("model", "loss", "dataset", "metric")

#: An entry's first line: option names, a colon, maybe a type (``a, b:``, ``a : int``).
_ENTRY = re.compile(r"^([A-Za-z_][\w, ]*?)\s*:[^:]*$")


def add_parser(sub: Any) -> None:
    """Add the ``show`` sub-command to the CLI's sub-parsers."""
    show = sub.add_parser(
        "show",
        help="show one model, loss, dataset or metric: its documentation and every option "
        "(type, default, help)",
        description="Show a plugin's summary, documentation and options; set an option with "
        "-o NAME.KEY=VALUE.",
    )
    show.add_argument("name", metavar="NAME", help="an id or alias, as in 'recbench list'")
    show.add_argument("--kind", choices=KINDS, help="only this kind (when an id has several)")


def run(args: argparse.Namespace, registry: Registry | None, console: Console) -> int:
    """Print every plugin that ``args.name`` names; exit status 0."""
    assert registry is not None, "the CLI loads the plugins before 'recbench show'"
    for info in find(registry, args.name, [args.kind] if args.kind else KINDS):
        for line in [*describe(info), *options_lines(info), ""]:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def find(registry: Registry, name: str, kinds: typing.Sequence[str]) -> list[PluginInfo]:
    """The plugins of ``kinds`` registered as ``name`` (id or alias).

    Raises
    ------
    ConfigError
        When none is, with the close ids of those kinds.
    """
    found = []
    for kind in kinds:
        try:
            found.append(registry.get(kind, name))
        except ConfigError:
            continue
    if not found:
        known = [
            i for kind in kinds for info in registry.all(kind) for i in (info.id, *info.aliases)
        ]
        raise ConfigError(
            f"no {' or '.join(kinds)} is registered as '{name}'",
            where="recbench show",
            hint=close_matches(name, known) or "see 'recbench list'",
        )
    return found


def describe(info: PluginInfo) -> list[str]:
    """The heading lines: kind, id, aliases, summary, provider, then the documentation."""
    aliases = f" (also {', '.join(info.aliases)})" if info.aliases else ""
    lines = [
        f"{info.kind} {info.id}{aliases}: {info.summary}",
        f"from {info.distribution} {info.distribution_version}; version {info.version}",
    ]
    doc = inspect.cleandoc(info.cls.__doc__ or "")
    if doc:
        lines += ["", doc]
    return [*lines, ""]


def options_lines(info: PluginInfo) -> list[str]:
    """Every option of ``info``'s class as ``name: type = default`` and its help below,
    as ``--help`` shows flags (plain lines: readable in any width, and greppable)."""
    rows = option_rows(info.cls.Options)
    if not rows:
        return [f"{info.id} has no options."]
    lines = [f"Options (-o {info.id}.KEY=VALUE):"]
    for name, type_name, default, text in rows:
        lines += [f"  {name}: {type_name} = {default}"]
        if text:
            lines += [f"      {text}"]
    return lines


def option_rows(options_cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` of every option of ``options_cls``."""
    fields = option_fields(options_cls)
    values = defaults(options_cls)
    texts = option_help(options_cls)
    return [
        (
            name,
            type_text(annotation),
            repr(values[name]) if name in values else "(required)",
            texts.get(name, ""),
        )
        for name, annotation in fields.items()
    ]


def option_help(options_cls: type) -> dict[str, str]:
    """Option name -> help: field metadata ``help``, else the option's entry in the
    class's docstring or, failing that, in the nearest base class's that documents it."""
    names = set(option_fields(options_cls))
    texts: dict[str, str] = {}
    for klass in reversed(options_cls.__mro__):
        texts.update(documented_options(klass.__dict__.get("__doc__") or "", names))
    for f in dataclasses.fields(options_cls):
        if f.metadata.get("help"):
            texts[f.name] = str(f.metadata["help"])
    return texts


def documented_options(docstring: str, names: set[str]) -> dict[str, str]:
    """Name -> description of the entries of ``docstring`` that document ``names``.

    An entry is a line at the docstring's own indentation that holds option names and a
    colon (``neighbors:``, ``a, b:`` for both, numpydoc's ``name : int``), followed by
    its indented description, joined into one line.
    """
    entries: dict[str, str] = {}
    current: list[str] = []
    words: list[str] = []

    def flush() -> None:
        for name in current:
            entries[name] = " ".join(words)

    for line in inspect.cleandoc(docstring).splitlines():
        if line and not line[0].isspace():
            flush()
            match = _ENTRY.match(line.strip())
            listed = [n.strip() for n in match.group(1).split(",")] if match else []
            current = listed if listed and set(listed) <= names else []
            words = []
        elif line.strip() and current:
            words.append(line.strip())
    flush()
    return entries


def type_text(annotation: Any) -> str:
    """An option's type in words: ``int``, ``one of adam, adagrad``, ``int | None``..."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")
