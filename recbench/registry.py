"""Plugin discovery and the registry of models, losses, datasets and metrics.

Plugins are found through the entry-point group ``recbench``; recbench's own plugins are
declared there exactly as a third-party distribution declares its own. Each entry point
is loaded on its own, so one that fails to import is reported (distribution and reason)
and skipped while the others keep working. Hooks are then called one implementation at a
time with a ``register`` callback that validates each object against its contract,
records the owning distribution and rejects duplicate ids naming both owners.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from recbench import hookspecs
from recbench.contracts import KINDS, REQUIRED_ATTRIBUTES, REQUIRED_METHODS
from recbench.errors import ConfigError, PluginError, close_matches

ENTRY_POINT_GROUP = "recbench"
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_HOOK_OF_KIND = {
    "model": "register_models",
    "loss": "register_losses",
    "dataset": "register_datasets",
    "metric": "register_metrics",
}


def normalize_distribution(name: str) -> str:
    """PEP 503 normalised distribution name (``Recbench_Foo`` -> ``recbench-foo``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginInfo:
    """A registered object and where it came from."""

    kind: str
    id: str
    cls: Any  # the registered class; its attributes are checked by _validate
    plugin: str
    distribution: str
    distribution_version: str

    @property
    def summary(self) -> str:
        return str(self.cls.summary)

    @property
    def version(self) -> str:
        return str(self.cls.version)

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(getattr(self.cls, "aliases", ()))


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    distribution: str
    plugin: str
    reason: str

    def one_line(self) -> str:
        return f"plugin '{self.plugin}' from {self.distribution} was skipped: {self.reason}"


@dataclass
class _Source:
    name: str
    distribution: str
    version: str
    load: Any  # callable returning the plugin module/object


@dataclass
class Registry:
    """The plugin registry. Build with :func:`discover`, or directly for tests."""

    plugins: dict[str, dict[str, PluginInfo]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginFailure] = field(default_factory=list)
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin -> (dist, ver)
    manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())

    # -- loading -----------------------------------------------------------------------
    def add_plugin(self, name: str, plugin: Any, distribution: str, version: str) -> bool:
        """Register one plugin object (a module with hook implementations) and call its
        ``register_*`` hooks. Returns False (and records why) when it is skipped."""
        if self.manager.has_plugin(name):
            owner = self.distributions[name][0]
            self.failures.append(
                PluginFailure(distribution, name, f"the plugin name is already used by {owner}")
            )
            return False
        try:
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except Exception as exc:  # a misspelled hook, a bad hook signature
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            self.failures.append(PluginFailure(distribution, name, _reason(exc)))
            return False
        self.distributions[name] = (distribution, version)
        for kind, hook_name in _HOOK_OF_KIND.items():
            hook = getattr(self.manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name == name:
                    self._call_register_hook(kind, impl)
        return True

    def _call_register_hook(self, kind: str, impl: Any) -> None:
        distribution, version = self.distributions[impl.plugin_name]
        added: list[PluginInfo] = []

        def register(obj: type) -> None:
            info = self._validate(kind, obj, impl.plugin_name, distribution, version)
            self._insert(info)
            added.append(info)

        try:
            impl.function(register=register)
        except Exception as exc:
            for info in added:  # roll back what this hook registered before it failed
                self._remove(info)
            self.failures.append(PluginFailure(distribution, impl.plugin_name, _reason(exc)))

    def _validate(
        self, kind: str, obj: Any, plugin: str, distribution: str, version: str
    ) -> PluginInfo:
        what = f"{kind} {getattr(obj, 'id', obj)!r} from {distribution}"
        if not isinstance(obj, type):
            raise PluginError(f"{what}: register() takes a class, got {type(obj).__name__}")
        object_id = getattr(obj, "id", None)
        if not isinstance(object_id, str) or not _ID_PATTERN.match(object_id):
            raise PluginError(f"{what}: 'id' must be a lower-case string like 'my-model'")
        for attr in ("summary", "version"):
            value = getattr(obj, attr, None)
            if not isinstance(value, str) or not value or "\n" in value:
                raise PluginError(f"{what}: '{attr}' must be a one-line string")
        options = getattr(obj, "Options", None)
        if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
            raise PluginError(f"{what}: 'Options' must be a dataclass (with defaults)")
        try:
            options()
        except TypeError as exc:
            raise PluginError(f"{what}: every option needs a default ({exc})") from None
        for method in REQUIRED_METHODS[kind]:
            if not callable(getattr(obj, method, None)):
                raise PluginError(f"{what}: missing method '{method}'")
        for attr in REQUIRED_ATTRIBUTES[kind]:
            if not hasattr(obj, attr):
                raise PluginError(f"{what}: missing attribute '{attr}'")
        return PluginInfo(kind, object_id, obj, plugin, distribution, version)

    def _insert(self, info: PluginInfo) -> None:
        for name in (info.id, *info.aliases):
            existing = self._find(info.kind, name)
            if existing is not None:
                raise PluginError(
                    f"duplicate {info.kind} id '{name}': registered by {existing.distribution} "
                    f"and again by {info.distribution}"
                )
        self.plugins[info.kind][info.id] = info
        for alias in info.aliases:
            self.aliases[info.kind][alias] = info.id

    def _remove(self, info: PluginInfo) -> None:
        self.plugins[info.kind].pop(info.id, None)
        for alias in info.aliases:
            self.aliases[info.kind].pop(alias, None)

    def _find(self, kind: str, name: str) -> PluginInfo | None:
        name = self.aliases[kind].get(name, name)
        return self.plugins[kind].get(name)

    # -- lookup ------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> PluginInfo:
        """The plugin registered as ``name`` (id or alias); unknown names list close ones."""
        found = self._find(kind, name)
        if found is None:
            known = list(self.plugins[kind]) + list(self.aliases[kind])
            raise ConfigError(f"unknown {kind} '{name}'", hint=close_matches(name, known))
        return found

    def all(self, kind: str) -> list[PluginInfo]:
        """Every plugin of ``kind``, in registration order (recbench's own first)."""
        return list(self.plugins[kind].values())

    def add_commands(self, cli: Any) -> None:
        """Let plugins add sub-commands to the CLI's argparse sub-parsers."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            distribution = self.distributions.get(impl.plugin_name, ("?", ""))[0]
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self.failures.append(PluginFailure(distribution, impl.plugin_name, _reason(exc)))


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("recbench")
    manager.add_hookspecs(hookspecs)
    return manager


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _entry_point_sources() -> Iterable[_Source]:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = normalize_distribution(dist.metadata["Name"]) if dist is not None else "unknown"
        dist_version = dist.version if dist is not None else ""
        yield _Source(ep.name, dist_name, dist_version, ep.load)


def discover(
    *, allow: Iterable[str] | None = None, deny: Iterable[str] = (), require_builtins: bool = True
) -> Registry:
    """Load every plugin of the ``recbench`` entry-point group.

    Parameters
    ----------
    allow:
        If given, only these distributions are loaded (``RECBENCH_LOAD_PLUGINS``);
        recbench's own distribution is always loaded.
    deny:
        Distributions not to load (``RECBENCH_DISABLE_PLUGINS``).
    require_builtins:
        Fail fast when recbench's own plugins cannot be found (a broken install).
    """
    allowed = None if allow is None else {normalize_distribution(a) for a in allow} | {"recbench"}
    denied = {normalize_distribution(d) for d in deny}
    registry = Registry()
    seen_builtins = False
    # Sorted so that the first owner of a duplicate id does not depend on install order.
    for source in sorted(
        _entry_point_sources(), key=lambda s: (s.distribution != "recbench", s.distribution, s.name)
    ):
        if source.distribution == "recbench":
            seen_builtins = True
        if source.distribution in denied or (
            allowed is not None and source.distribution not in allowed
        ):
            continue
        try:
            plugin = source.load()
        except Exception as exc:
            registry.failures.append(PluginFailure(source.distribution, source.name, _reason(exc)))
            continue
        registry.add_plugin(source.name, plugin, source.distribution, source.version)
    if require_builtins and not seen_builtins:
        raise PluginError(
            "recbench's built-in plugins were not found",
            hint="the installation is incomplete; reinstall it with 'pip install -e .' "
            "(entry points change only on reinstall)",
        )
    return registry
