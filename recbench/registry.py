"""Plugin discovery and the registry of models, losses, datasets and metrics.

Plugins are found through the entry-point group ``recbench``; recbench's own plugins are
declared there exactly as a third-party distribution declares its own. Each entry point
is loaded on its own, so one that fails to import is reported (distribution and reason)
and skipped while the others keep working. Hooks are then called one implementation at a
time with a ``register`` callback that validates each object against its contract,
records the owning distribution and rejects duplicate ids naming both owners.

A plugin module may declare the plugin API it is written for
(``RECBENCH_PLUGIN_API = 2``, see :data:`recbench.hookspecs.PLUGIN_API_ATTRIBUTE`); one
written for another API is refused before any of its hooks is called. A plugin that fails
to import a recbench module or name (one written for an older API, before plugins
imported only :mod:`recbench.plugin`) is skipped with one line saying so. The registry
also records, per plugin, the hooks it implements, what it registered and the commands it
added, for ``recbench plugins``; and what was skipped, so that an unknown id can say which
skipped plugin may have provided it.

Each class is validated once, at registration (:func:`validate_class`): its metadata,
methods and option declarations; its optional attributes are read then, into
:class:`PluginInfo`, which the rest of the core reads instead of the class.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from recbench import hookspecs
from recbench.config.options import declaration_problem
from recbench.config.search_space import SpaceEntry, space_problem
from recbench.contracts import (
    AGGREGATIONS,
    KINDS,
    LOSS_CANDIDATES,
    LOSS_INPUTS,
    OPTIONAL_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    SCORE_PREFIXES,
    TASK_KINDS,
    TASKS,
    required_methods,
    task_of,
)
from recbench.errors import ConfigError, PluginError, RecbenchError, close_matches
from recbench.version import __version__

ENTRY_POINT_GROUP = "recbench"
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_HOOK_OF_KIND = {
    "model": "register_models",
    "loss": "register_losses",
    "dataset": "register_datasets",
    "metric": "register_metrics",
}


#: The hooks a plugin may implement (every hookspec of :mod:`recbench.hookspecs`).
HOOK_NAMES: tuple[str, ...] = (*_HOOK_OF_KIND.values(), "register_commands")


def normalize_distribution(name: str) -> str:
    """PEP 503 normalised distribution name (``Recbench_Foo`` -> ``recbench-foo``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginInfo:
    """A registered class, where it came from, and its metadata.

    Built by :func:`validate_class`, which reads the class's metadata once: an optional
    attribute the class does not define holds its default
    (:data:`recbench.contracts.OPTIONAL_ATTRIBUTES`), and one that does not apply to the
    kind keeps the default below. The core reads these fields, not the class.
    """

    kind: str
    id: str
    cls: Any  # the registered class, validated by validate_class
    plugin: str = ""
    distribution: str = ""
    distribution_version: str = ""
    #: The class's one-line ``summary`` and its ``version`` (a result cache key).
    summary: str = ""
    version: str = ""
    #: Other ids that select it.
    aliases: tuple[str, ...] = ()
    #: ``"ranking"`` or ``"rating"`` for a model or metric; ``None`` for other kinds.
    task: str | None = None
    #: A model that is a simple reference (the report compares with the best one).
    baseline: bool = False
    #: A model with a one-step ``cell()``: a sequence model, exported and timed.
    has_cell: bool = False
    #: A ranking model with the one-pass ``score_prefixes`` (the evaluator reads every
    #: prefix of a user's sequence in one pass, :class:`recbench.contracts.Model`).
    has_score_prefixes: bool = False
    #: What a loss receives as negatives: ``"sampled"`` or ``"all"``.
    candidates: str = "sampled"
    #: What else a loss asks the trainer for (names from ``LOSS_INPUTS``).
    extra_inputs: tuple[str, ...] = ()
    #: The dataset option that ``--dataset id:ARG`` sets (``None``: it takes none).
    argument_option: str | None = None
    #: How a rating metric's per-event values are aggregated: ``"mean"`` or ``"root_mean"``.
    aggregation: str = "mean"
    #: A rating metric whose values are in rating units (also reported in stars).
    rating_units: bool = True
    #: A metric's rank among the report's headline metrics (``None``: not one).
    headline: int | None = None
    #: A metric whose values are counts (shown without decimals).
    count: bool = False
    #: A model's search space: option name -> range or choice
    #: (:mod:`recbench.config.search_space`); ``None``: it declares none.
    search_space: Mapping[str, SpaceEntry] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or registered, and why.

    ``kind`` is the kind whose register hook failed (``"command"`` for
    ``register_commands``), ``None`` when the whole plugin was skipped; ``ids`` are the
    ids that the failed hook tried to register (rolled back), where they are known.
    """

    distribution: str
    plugin: str
    reason: str
    kind: str | None = None
    ids: tuple[str, ...] = ()

    def one_line(self) -> str:
        return f"plugin '{self.plugin}' from {self.distribution} was skipped: {self.reason}"


@dataclass(frozen=True)
class PluginRecord:
    """One plugin (an entry point) as ``recbench plugins`` shows it.

    ``loaded`` is false for a plugin that was skipped as a whole; ``registered`` maps a
    kind to the ids it registered; ``errors`` holds why it (or one of its hooks) was
    skipped; ``plugin_api`` is what it declared (``None``: nothing).
    """

    name: str
    distribution: str
    distribution_version: str
    loaded: bool
    plugin_api: Any
    hooks: tuple[str, ...]
    registered: dict[str, tuple[str, ...]]
    commands: tuple[str, ...]
    errors: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        api = self.plugin_api
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.distribution_version,
            "loaded": self.loaded,
            "plugin_api": list(api) if isinstance(api, (tuple, list)) else api,
            "hooks": list(self.hooks),
            "registered": {kind: list(ids) for kind, ids in self.registered.items()},
            "commands": list(self.commands),
            "errors": list(self.errors),
        }


def plugin_api_problem(plugin: Any) -> str | None:
    """Why ``plugin`` cannot be loaded by this recbench's plugin API, or ``None``.

    A plugin declares the API it is written for in ``RECBENCH_PLUGIN_API`` (an integer,
    or a tuple of integers it supports); one that declares nothing is assumed compatible.
    """
    declared = getattr(plugin, hookspecs.PLUGIN_API_ATTRIBUTE, None)
    if declared is None:
        return None
    versions = declared if isinstance(declared, (tuple, list)) else (declared,)
    if not versions or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
        return (
            f"{hookspecs.PLUGIN_API_ATTRIBUTE} must be an integer (or a tuple of integers), "
            f"got {declared!r}"
        )
    if hookspecs.PLUGIN_API_VERSION in versions:
        return None
    needs = " or ".join(str(v) for v in versions)
    return (
        f"it is written for recbench plugin API {needs}, but this recbench ({__version__}) "
        f"provides plugin API {hookspecs.PLUGIN_API_VERSION}: install a release of the "
        f"plugin written for API {hookspecs.PLUGIN_API_VERSION}, or a recbench that provides "
        f"API {needs}"
    )


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
    plugin_apis: dict[str, Any] = field(default_factory=dict)  # plugin -> RECBENCH_PLUGIN_API
    commands: dict[str, list[str]] = field(default_factory=dict)  # plugin -> commands it added
    # distribution -> version, for every distribution tried (loaded or not)
    distribution_versions: dict[str, str] = field(default_factory=dict)

    # -- loading -----------------------------------------------------------------------
    def add_plugin(self, name: str, plugin: Any, distribution: str, version: str) -> bool:
        """Register one plugin object (a module with hook implementations) and call its
        ``register_*`` hooks. Returns False (and records why) when it is skipped."""
        self.distribution_versions[distribution] = version
        if self.manager.has_plugin(name):
            owner = self.distributions[name][0]
            self.failures.append(
                PluginFailure(distribution, name, f"the plugin name is already used by {owner}")
            )
            return False
        problem = plugin_api_problem(plugin)
        if problem is not None:
            self.failures.append(PluginFailure(distribution, name, problem))
            return False
        try:
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except Exception as exc:  # a misspelled hook, a bad hook signature
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            self.failures.append(
                PluginFailure(distribution, name, failure_reason(exc, distribution))
            )
            return False
        self.distributions[name] = (distribution, version)
        self.plugin_apis[name] = getattr(plugin, hookspecs.PLUGIN_API_ATTRIBUTE, None)
        for kind, hook_name in _HOOK_OF_KIND.items():
            hook = getattr(self.manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name == name:
                    self._call_register_hook(kind, impl)
        return True

    def _call_register_hook(self, kind: str, impl: Any) -> None:
        distribution, version = self.distributions[impl.plugin_name]
        added: list[PluginInfo] = []
        tried: list[str] = []  # the ids the hook registered or tried to

        def register(obj: type) -> None:
            object_id = getattr(obj, "id", None)
            if isinstance(object_id, str):
                tried.append(object_id)
            info = validate_class(kind, obj, impl.plugin_name, distribution, version)
            self._insert(info)
            added.append(info)

        try:
            impl.function(register=register)
        except Exception as exc:
            for info in added:  # roll back what this hook registered before it failed
                self._remove(info)
            reason = failure_reason(exc, distribution)
            self.failures.append(
                PluginFailure(distribution, impl.plugin_name, reason, kind, tuple(tried))
            )

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
        """The plugin registered as ``name`` (id or alias).

        Raises
        ------
        ConfigError
            For an unknown name: it was skipped with its plugin (and why), or it is
            unknown, with the close names and the plugins that were skipped and may have
            provided it.
        """
        found = self._find(kind, name)
        if found is not None:
            return found
        for failure in self.failures:
            if failure.kind == kind and name in failure.ids:
                raise ConfigError(
                    f"{kind} '{name}' was skipped with its plugin '{failure.plugin}' from "
                    f"{failure.distribution}: {failure.reason}"
                )
        known = list(self.plugins[kind]) + list(self.aliases[kind])
        hint = close_matches(name, known)
        skipped = [f.one_line() for f in self.failures if self._may_have_provided(f, kind)]
        if skipped:
            hint += "; note: " + "; ".join(skipped)
        raise ConfigError(f"unknown {kind} '{name}'", hint=hint)

    def _may_have_provided(self, failure: PluginFailure, kind: str) -> bool:
        """Whether the skipped ``failure`` may have provided an unknown ``kind`` id: the
        plugin was skipped as a whole, or its ``kind`` hook failed, and it registered no
        ``kind``."""
        if failure.kind not in (None, kind):
            return False
        return not any(
            (info.plugin, info.distribution) == (failure.plugin, failure.distribution)
            for info in self.plugins[kind].values()
        )

    def all(self, kind: str) -> list[PluginInfo]:
        """Every plugin of ``kind``, in registration order (recbench's own first)."""
        return list(self.plugins[kind].values())

    def add_commands(self, cli: Any) -> None:
        """Let plugins add sub-commands to the CLI's argparse sub-parsers."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            distribution = self.distributions.get(impl.plugin_name, ("?", ""))[0]
            before = set(getattr(cli, "choices", None) or ())
            try:
                impl.function(cli=cli)
            except Exception as exc:
                reason = failure_reason(exc, distribution)
                self.failures.append(
                    PluginFailure(distribution, impl.plugin_name, reason, kind="command")
                )
            added = [c for c in getattr(cli, "choices", None) or () if c not in before]
            self.commands[impl.plugin_name] = added

    # -- what each plugin did ----------------------------------------------------------
    def hooks_of(self, name: str) -> tuple[str, ...]:
        """The recbench hooks that the plugin ``name`` implements, sorted."""
        plugin = self.manager.get_plugin(name)
        if plugin is None:
            return ()
        callers = self.manager.get_hookcallers(plugin) or []
        return tuple(sorted(caller.name for caller in callers))

    def registered_by(self, name: str) -> dict[str, tuple[str, ...]]:
        """Kind -> the ids that the plugin ``name`` registered (kinds with none left out)."""
        found: dict[str, tuple[str, ...]] = {}
        for kind in KINDS:
            ids = tuple(info.id for info in self.plugins[kind].values() if info.plugin == name)
            if ids:
                found[kind] = ids
        return found

    def records(self) -> list[PluginRecord]:
        """Every plugin that was loaded or tried, recbench's own first, then by
        distribution and name; plugins that failed to load have no hooks."""
        keys: dict[tuple[str, str], str] = {}  # (distribution, plugin) -> version
        for name, (distribution, version) in self.distributions.items():
            keys[(distribution, name)] = version
        errors: dict[tuple[str, str], list[str]] = {}
        for failure in self.failures:
            key = (failure.distribution, failure.plugin)
            keys.setdefault(key, self.distribution_versions.get(failure.distribution, ""))
            errors.setdefault(key, []).append(failure.reason)
        records = []
        for (distribution, name), version in keys.items():
            loaded = self.distributions.get(name, (None, ""))[0] == distribution
            records.append(
                PluginRecord(
                    name=name,
                    distribution=distribution,
                    distribution_version=version,
                    loaded=loaded,
                    plugin_api=self.plugin_apis.get(name) if loaded else None,
                    hooks=self.hooks_of(name) if loaded else (),
                    registered=self.registered_by(name) if loaded else {},
                    commands=tuple(self.commands.get(name, ())) if loaded else (),
                    errors=tuple(errors.get((distribution, name), ())),
                )
            )
        return sorted(records, key=lambda r: (r.distribution != "recbench", r.distribution, r.name))


def validate_class(
    kind: str, obj: Any, plugin: str = "", distribution: str = "", version: str = ""
) -> PluginInfo:
    """Check ``obj`` against what a ``kind`` plugin must have, and read its metadata.

    Checks the metadata (``id``, ``summary``, ``version``), the ``Options`` declaration
    (a dataclass whose options all have a supported type and a default of that type,
    :func:`recbench.config.options.declaration_problem`), the methods and attributes of
    the kind's contract, and the optional attributes
    (:data:`recbench.contracts.OPTIONAL_ATTRIBUTES`), which it reads into the returned
    :class:`PluginInfo` with their defaults.

    Raises
    ------
    PluginError
        Saying what is missing or wrong.
    """
    what = f"{kind} {getattr(obj, 'id', obj)!r}" + (f" from {distribution}" if distribution else "")
    if not isinstance(obj, type):
        raise PluginError(f"{what}: register() takes a class, got {type(obj).__name__}")
    object_id = getattr(obj, "id", None)
    if not isinstance(object_id, str) or not _ID_PATTERN.match(object_id):
        raise PluginError(f"{what}: 'id' must be a lower-case string like 'my-model'")
    texts: dict[str, str] = {}
    for attr in ("summary", "version"):
        value = getattr(obj, attr, None)
        if not isinstance(value, str) or not value or "\n" in value:
            raise PluginError(f"{what}: '{attr}' must be a one-line string")
        texts[attr] = value
    options = getattr(obj, "Options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise PluginError(f"{what}: 'Options' must be a dataclass (with defaults)")
    try:
        options()
    except TypeError as exc:
        raise PluginError(f"{what}: every option needs a default ({exc})") from None
    problem = declaration_problem(options)
    if problem is not None:
        raise PluginError(f"{what}: {problem}")
    task = task_of(obj) if kind in TASK_KINDS else "ranking"
    if task not in TASKS:
        raise PluginError(
            f"{what}: 'task' must be one of {', '.join(repr(t) for t in TASKS)}, got {task!r}"
        )
    for method in required_methods(kind, task):
        if not callable(getattr(obj, method, None)):
            raise PluginError(
                f"{what}: missing method '{method}'"
                + (f" (a {task} {kind})" if task != "ranking" else "")
            )
    for attr in REQUIRED_ATTRIBUTES[kind]:
        if not hasattr(obj, attr):
            raise PluginError(f"{what}: missing attribute '{attr}'")
    return PluginInfo(
        kind=kind,
        id=object_id,
        cls=obj,
        plugin=plugin,
        distribution=distribution,
        distribution_version=version,
        summary=texts["summary"],
        version=texts["version"],
        has_cell=kind == "model" and callable(getattr(obj, "cell", None)),
        has_score_prefixes=kind == "model"
        and task == "ranking"
        and callable(getattr(obj, SCORE_PREFIXES, None)),
        **_optional_attributes(kind, task, obj, options, what),
    )


def _optional_attributes(
    kind: str, task: str, cls: type, options: type, what: str
) -> dict[str, Any]:
    """The optional attributes of a ``kind`` class, checked, with their defaults."""
    values = {
        name: getattr(cls, name, default) for name, default in OPTIONAL_ATTRIBUTES[kind].items()
    }
    aliases = values["aliases"]
    if not isinstance(aliases, (tuple, list)) or not all(
        isinstance(alias, str) and _ID_PATTERN.match(alias) for alias in aliases
    ):
        raise PluginError(f"{what}: 'aliases' must be a tuple of lower-case ids, got {aliases!r}")
    values["aliases"] = tuple(aliases)
    if "task" in values:
        values["task"] = task
    headline = values.get("headline")
    if headline is not None and (
        isinstance(headline, bool) or not isinstance(headline, int) or headline < 0
    ):
        raise PluginError(f"{what}: 'headline' must be None or an integer >= 0, got {headline!r}")
    for flag in ("baseline", "rating_units", "count"):
        if flag in values and not isinstance(values[flag], bool):
            raise PluginError(f"{what}: '{flag}' must be True or False, got {values[flag]!r}")
    for name, choices in (("candidates", LOSS_CANDIDATES), ("aggregation", AGGREGATIONS)):
        if name in values and values[name] not in choices:
            raise PluginError(
                f"{what}: '{name}' must be one of {', '.join(map(repr, choices))}, "
                f"got {values[name]!r}"
            )
    if "extra_inputs" in values:
        wanted = values["extra_inputs"]
        if not isinstance(wanted, (tuple, list)) or any(n not in LOSS_INPUTS for n in wanted):
            raise PluginError(
                f"{what}: 'extra_inputs' must be a tuple of {', '.join(map(repr, LOSS_INPUTS))}, "
                f"got {wanted!r}"
            )
        values["extra_inputs"] = tuple(wanted)
    if values.get("search_space") is not None:
        problem = space_problem(values["search_space"], options)
        if problem is not None:
            raise PluginError(f"{what}: {problem}")
        values["search_space"] = dict(values["search_space"])
    option = values.get("argument_option")
    if option is not None and option not in {f.name for f in dataclasses.fields(options)}:
        raise PluginError(f"{what}: 'argument_option' {option!r} is not one of its options")
    return values


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("recbench")
    manager.add_hookspecs(hookspecs)
    return manager


def failure_reason(exc: BaseException, distribution: str) -> str:
    """Why a plugin of ``distribution`` that raised ``exc`` was skipped, in one line.

    A plugin that imports a recbench module or name that does not exist was written for
    an older plugin API (before plugins imported only :mod:`recbench.plugin`), or for a
    newer one when the missing name is one of :mod:`recbench.plugin`'s: say so, and what
    to do, instead of the bare import error.
    """
    missing = _missing_recbench_import(exc)
    api = hookspecs.PLUGIN_API_VERSION
    this = f"this recbench ({__version__}, plugin API {api})"
    if missing is not None and missing[1] == "recbench.plugin":
        return (
            f"it targets a newer recbench plugin API: it imports {missing[0]}, which {this} "
            f"does not provide; upgrade recbench, or install a release of {distribution} "
            f"written for plugin API {api}"
        )
    if missing is not None:
        return (
            f"it targets an older recbench plugin API: it imports {missing[0]}, which {this} "
            f"does not have; install a release of {distribution} written for plugin API "
            f"{api} (plugins import only recbench.plugin), or disable it with "
            f"RECBENCH_DISABLE_PLUGINS={distribution}"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RecbenchError):
        return text  # written for the user already
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing_recbench_import(exc: BaseException) -> tuple[str, str] | None:
    """(what is missing, in words; the recbench module it was looked up in) when ``exc``
    is a failed import of a recbench module or of a name from one, else ``None``."""
    module = getattr(exc, "name", None)
    if isinstance(exc, ModuleNotFoundError):
        if isinstance(module, str) and module.startswith("recbench."):
            return module, module
        return None
    if isinstance(exc, ImportError) and isinstance(module, str):
        if module != "recbench" and not module.startswith("recbench."):
            return None
        name = re.match(r"cannot import name '([^']+)'", str(exc.msg))
        return (f"'{name.group(1)}' from {module}" if name else module), module
    return None


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
        registry.distribution_versions[source.distribution] = source.version
        try:
            plugin = source.load()
        except Exception as exc:
            reason = failure_reason(exc, source.distribution)
            registry.failures.append(PluginFailure(source.distribution, source.name, reason))
            continue
        registry.add_plugin(source.name, plugin, source.distribution, source.version)
    if require_builtins and not seen_builtins:
        raise PluginError(
            "recbench's built-in plugins were not found",
            hint="the installation is incomplete; reinstall it with 'pip install -e .' "
            "(entry points change only on reinstall)",
        )
    return registry
