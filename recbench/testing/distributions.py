"""Fake installed distributions, to test how plugins are discovered.

:class:`FakeDistributions` writes real distribution metadata (a ``.dist-info`` folder with
``METADATA``, ``entry_points.txt`` and ``top_level.txt``) into a folder that it puts first on
``sys.path``, so ``importlib.metadata`` (and with it :func:`recbench.registry.discover`, the
``recbench`` command and the kit) finds them exactly as it finds a distribution installed
with pip. The ``recbench_fake_distribution`` fixture gives one to a test and removes it
afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
import textwrap
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

#: The entry-point group recbench discovers plugins in (``recbench.registry.ENTRY_POINT_GROUP``;
#: written here so that importing the kit imports no registry).
ENTRY_POINT_GROUP = "recbench"
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*$")


class FakeDistributions:
    """Installs fake distributions with ``recbench`` entry points for the length of a test.

    Call it as ``install(name, version, entry_points)``:

    name:
        The distribution's name (``recbench-foo``), as discovery and ``recbench plugins``
        report it.
    version:
        Its version (``"1.0"`` unless given).
    entry_points:
        ``{entry_point_name: target}``, each entry point of the ``recbench`` group (the
        entry point's name is the plugin's name). A target is

        - a **module** (your plugin module, already imported): the entry point names it;
        - a **string**: the source code of a new module named after the entry point
          (dedented), written beside the distribution and imported only when discovery
          loads the entry point, so a module that fails to import is discovery's to
          report (``"raise ImportError('needs libfoo')"``);
        - any **other object** (a class or an object whose functions are decorated with
          ``@recbench.hookimpl``): the entry point loads that very object.

    It returns the installed :class:`importlib.metadata.Distribution`. Installing two
    distributions of one name in a test is refused. Everything is undone when the test
    ends: the folder leaves ``sys.path`` and the modules written from sources leave
    ``sys.modules``.

    Discovery reads the entry points each time it runs: call
    :func:`recbench.registry.discover` after installing (``recbench_installed_registry``
    was discovered once, at the start of the session, without them).
    """

    def __init__(self, site: Path, monkeypatch: pytest.MonkeyPatch):
        self._site = site
        self._monkeypatch = monkeypatch
        self._written: list[str] = []
        self._holders = 0
        site.mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(site))

    def __call__(
        self,
        name: str,
        version: str = "1.0",
        entry_points: Mapping[str, Any] | None = None,
    ) -> importlib.metadata.Distribution:
        info = self._site / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        if any(self._site.glob(f"{re.sub(r'[-_.]+', '_', name)}-*.dist-info")):
            raise ValueError(f"a fake distribution named {name!r} is already installed")
        targets = {
            entry: self._target(entry, target) for entry, target in (entry_points or {}).items()
        }
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{entry} = {value}\n" for entry, value in targets.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
        sources = [e for e, t in (entry_points or {}).items() if isinstance(t, str)]
        (info / "top_level.txt").write_text("".join(f"{module}\n" for module in sources))
        importlib.invalidate_caches()
        return importlib.metadata.PathDistribution(info)

    def _target(self, entry: str, target: Any) -> str:
        """The entry point's value (``module`` or ``module:attribute``) for ``target``."""
        if isinstance(target, types.ModuleType):
            return target.__name__
        if isinstance(target, str):
            if not _MODULE_NAME.match(entry) or entry in sys.modules:
                raise ValueError(
                    f"the entry point {entry!r} names the module written from its source: "
                    "give it a module name that is not imported yet"
                )
            path = self._site / f"{entry}.py"
            if path.exists():
                raise ValueError(f"a fake distribution already provides the module {entry!r}")
            path.write_text(textwrap.dedent(target))
            self._written.append(entry)
            return entry
        self._holders += 1
        holder = types.ModuleType(f"_recbench_fake_entry_points_{self._holders}")
        holder.target = target  # type: ignore[attr-defined]
        self._monkeypatch.setitem(sys.modules, holder.__name__, holder)
        return f"{holder.__name__}:target"

    def forget_modules(self) -> None:
        """Remove the modules written from sources (and their submodules) from
        ``sys.modules``."""
        for module in list(sys.modules):
            if module.partition(".")[0] in self._written:
                del sys.modules[module]
