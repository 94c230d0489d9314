"""``recbench plugins``: the installed plugin distributions and what each provides.

For every plugin (an entry point of the group ``recbench``) it shows the distribution and
its version, the plugin API the plugin declares, the hooks it implements, the ids it
registered and the commands it added, and why it was skipped if it was. recbench's own
plugins are hidden unless ``--all`` is given; ``--hook NAME`` keeps the plugins that
implement that hook; ``--json`` prints a JSON list for scripts::

    [{"name": "recbench_foo", "distribution": "recbench-foo", "version": "1.0",
      "loaded": true, "plugin_api": 2, "hooks": ["register_models"], "registered": {"model": ["foo"]},
      "commands": [], "errors": []}]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from recbench.errors import ConfigError, close_matches
from recbench.registry import HOOK_NAMES, PluginRecord, Registry


def add_parser(sub: Any) -> None:
    """Add the ``plugins`` sub-command to the CLI's sub-parsers."""
    plugins = sub.add_parser(
        "plugins",
        help="list installed plugin distributions: version, hooks, what they registered",
        description="List the installed plugins: distribution and version, the hooks each "
        "implements and what it registered. recbench's own plugins are hidden unless --all.",
    )
    plugins.add_argument("--all", action="store_true", help="include recbench's own plugins")
    plugins.add_argument(
        "--hook",
        metavar="NAME",
        help="only plugins implementing this hook (" + ", ".join(HOOK_NAMES) + ")",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")


def select(registry: Registry, *, include_builtins: bool, hook: str | None) -> list[PluginRecord]:
    """The plugins to show: third-party ones (and recbench's own with
    ``include_builtins``), only those implementing ``hook`` when it is given."""
    if hook is not None and hook not in HOOK_NAMES:
        raise ConfigError(
            f"unknown hook '{hook}'", where="--hook", hint=close_matches(hook, HOOK_NAMES)
        )
    records = registry.records()
    if not include_builtins:
        records = [r for r in records if r.distribution != "recbench"]
    if hook is not None:
        records = [r for r in records if hook in r.hooks]
    return records


def run(args: argparse.Namespace, registry: Registry | None, console: Console) -> int:
    """Print the plugins that ``args`` ask for; exit status 0."""
    assert registry is not None, "the CLI loads the plugins before 'recbench plugins'"
    records = select(registry, include_builtins=args.all, hook=args.hook)
    if args.json:
        sys.stdout.write(json.dumps([r.as_dict() for r in records], indent=2) + "\n")
        return 0
    if not records:
        if args.hook:
            console.print(f"No installed plugin implements {args.hook}.", highlight=False)
        else:
            console.print(
                "No third-party plugins are installed ('recbench plugins --all' also shows "
                "recbench's own).",
                highlight=False,
            )
        return 0
    by_distribution: dict[tuple[str, str], list[PluginRecord]] = {}
    for record in records:
        key = (record.distribution, record.distribution_version)
        by_distribution.setdefault(key, []).append(record)
    lines: list[str] = []
    for (distribution, version), members in by_distribution.items():
        lines.append(f"{distribution} {version}".rstrip())
        for record in members:
            api = "" if record.plugin_api is None else f" (plugin API {_api(record.plugin_api)})"
            lines.append(f"  {record.name}{api}")
            lines.append(f"    hooks: {', '.join(record.hooks) or 'none'}")
            for kind, ids in record.registered.items():
                lines.append(f"    {kind}: {', '.join(ids)}")
            if record.commands:
                lines.append(f"    command: {', '.join(record.commands)}")
            lines += [f"    skipped: {error}" for error in record.errors]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def _api(declared: Any) -> str:
    if declared is None:
        return "-"
    if isinstance(declared, (tuple, list)):
        return ", ".join(str(v) for v in declared)
    return str(declared)
