"""The kit's check of a whole plugin module: it loads cleanly, then everything it
registers conforms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from recbench.testing.checker import ConformanceError, Settings
from recbench.testing.classes import check_class

if TYPE_CHECKING:
    from recbench.registry import PluginInfo, Registry


def check_module(module: Any, options: Mapping[str, Any], settings: Settings) -> None:
    """Register ``module`` beside every installed plugin (unless discovery found it), require
    a clean load and at least one hook, then check every class it registered."""
    from recbench.cli import build_parser
    from recbench.registry import HOOK_NAMES, discover

    registry = discover()
    name = registry.manager.get_name(module) if registry.manager.is_registered(module) else None
    if name is None:
        name = module.__name__
        distribution, version = _distribution_of(module)
        registry.add_plugin(name, module, distribution, version)
    hooks = registry.hooks_of(name)
    if "register_commands" in hooks:
        build_parser(registry)
    failures = list(dict.fromkeys(f.one_line() for f in registry.failures if f.plugin == name))
    if failures:
        raise ConformanceError(
            f"plugin module {module.__name__} does not load cleanly: " + "; ".join(failures)
        )
    if not hooks:
        raise ConformanceError(
            f"plugin module {module.__name__} implements no recbench hook: decorate functions "
            f"named {', '.join(HOOK_NAMES)} with @recbench.hookimpl"
        )
    registered = _registered(registry, name)
    unknown = sorted(set(options) - {info.id for info in registered})
    if unknown:
        raise ConformanceError(
            f"options for plugin module {module.__name__} are keyed by the id they apply to "
            f"({', '.join(info.id for info in registered)}); got {', '.join(unknown)}"
        )
    skipped: list[str] = []
    for info in registered:
        try:
            check_class(info.cls, info.kind, dict(options.get(info.id, {})), settings)
        except pytest.skip.Exception as exc:
            skipped.append(str(exc.msg))
    if skipped:
        pytest.skip("; ".join(skipped))


def _registered(registry: Registry, name: str) -> list[PluginInfo]:
    """What the plugin ``name`` registered, every kind."""
    from recbench.contracts import KINDS

    return [info for kind in KINDS for info in registry.all(kind) if info.plugin == name]


def _distribution_of(module: Any) -> tuple[str, str]:
    """The installed distribution that provides ``module`` (name, version), if any."""
    import importlib.metadata as metadata

    from recbench.registry import normalize_distribution

    top = module.__name__.partition(".")[0]
    for distribution in metadata.packages_distributions().get(top, []):
        try:
            return normalize_distribution(distribution), metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown", ""
