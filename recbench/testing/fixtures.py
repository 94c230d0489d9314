"""The pytest fixtures of the kit (``recbench.testing`` re-exports them, and pytest finds
them there through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from recbench.testing.data import TinyData, data_context, tiny_data
from recbench.testing.distributions import FakeDistributions

if TYPE_CHECKING:
    from recbench.data.prepare import DataContext
    from recbench.registry import Registry


@pytest.fixture(scope="session")
def recbench_tiny_data() -> TinyData:
    """A small structured dataset, preprocessed and split (:class:`TinyData`)."""
    return tiny_data()


@pytest.fixture
def recbench_registry() -> Registry:
    """A fresh, empty plugin registry; ``add_plugin(name, module, distribution, version)``
    registers a plugin module through recbench's validation."""
    from recbench.registry import Registry

    return Registry()


@pytest.fixture
def recbench_plugin_manager(recbench_registry: Registry) -> Any:
    """The pluggy plugin manager of ``recbench_registry``: recbench's hookspecs, no plugin."""
    return recbench_registry.manager


@pytest.fixture(scope="session")
def recbench_installed_registry() -> Registry:
    """Every plugin installed in this environment, discovered as the CLI does it, once per
    test session: shared by every test, so read it only (take ``recbench_registry``, or
    call :func:`recbench.registry.discover`, for a registry to add plugins to)."""
    from recbench.registry import discover

    return discover()


@pytest.fixture
def recbench_data_context(tmp_path: Path) -> DataContext:
    """A data context on empty temporary folders, offline."""
    return data_context(tmp_path)


@pytest.fixture
def recbench_fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeDistributions]:
    """``install(name, version="1.0", entry_points=None)``: installs a fake distribution
    with ``recbench`` entry points for this test, found by discovery as a distribution
    installed with pip would be (:class:`recbench.testing.distributions.FakeDistributions`).
    ``entry_points`` maps each entry point's name to a module, to the source code of a new
    module (imported when discovery loads it) or to an object with hook implementations::

        def test_a_duplicate_id_is_refused(recbench_fake_distribution):
            recbench_fake_distribution("recbench-copy", "2.0", {"recbench_copy": SOURCE})
            [failure] = discover().failures
            assert failure.distribution == "recbench-copy"
    """
    install = FakeDistributions(tmp_path / "fake-distributions", monkeypatch)
    yield install
    install.forget_modules()
