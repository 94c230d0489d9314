"""The hooks a recbench plugin implements.

Each hook receives a ``register`` callback and calls it once per object it provides; it
returns nothing. The core validates every object against its contract
(:mod:`recbench.contracts`), records the distribution that owns it and rejects duplicate
ids, naming both owners. Plugins import what they need from :mod:`recbench.plugin`, the
declared plugin API. Example::

    from recbench.plugin import hookimpl

    RECBENCH_PLUGIN_API = 2  # the plugin API this module is written for (optional)

    @hookimpl
    def register_models(register):
        register(MyModel)

``docs/plugins.md`` documents every hook and contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

#: Version of the plugin API: these hooks, the contracts of :mod:`recbench.contracts` and
#: the names of :mod:`recbench.plugin`; enters every result's cache key. It goes up only
#: when a change would break existing plugins (a hook or a contract method changes its
#: signature or meaning, a name leaves :mod:`recbench.plugin`); additions keep it.
#: Version 2: plugins import recbench only through :mod:`recbench.plugin`.
PLUGIN_API_VERSION = 2

#: The module attribute in which a plugin declares the plugin API it is written for: an
#: integer, or a tuple of the integers it supports (``RECBENCH_PLUGIN_API = 2``). A plugin
#: declaring none is assumed to be compatible; one declaring another version is refused
#: with a message naming both versions, before any of its hooks is called.
PLUGIN_API_ATTRIBUTE = "RECBENCH_PLUGIN_API"

hookspec = pluggy.HookspecMarker("recbench")
hookimpl = pluggy.HookimplMarker("recbench")

Register = Callable[[type], None]


@hookspec
def register_models(register: Register) -> None:
    """Register model classes (see :class:`recbench.contracts.Model`)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register loss classes (see :class:`recbench.contracts.Loss`)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset classes (see :class:`recbench.contracts.Dataset`)."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register metric classes (see :class:`recbench.contracts.Metric`)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands: ``cli`` is the argparse sub-parsers object of ``recbench``."""
