"""recbench: benchmark sequence-based recommenders against strong baselines.

``import recbench`` is cheap: plugins (and torch-heavy modules) load on first use.
Plugins import recbench through :mod:`recbench.plugin`, the declared plugin API;
:data:`hookimpl` is also here, for ``from recbench import hookimpl``.
"""

from __future__ import annotations

from typing import Any

from recbench.hookspecs import PLUGIN_API_VERSION, hookimpl
from recbench.version import __version__

__all__ = ["PLUGIN_API_VERSION", "__version__", "hookimpl", "load_results", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "load_results"):
        from recbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'recbench' has no attribute {name!r}")
