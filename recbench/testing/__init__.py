"""The conformance kit for recbench plugins, shipped as a pytest plugin.

recbench registers this package as a pytest plugin (entry point ``pytest11``), so the tests
of any environment where recbench is installed get its fixtures without an import:

``recbench_tiny_data``
    A small structured dataset, split and ready (:class:`TinyData`); ``.ratings`` holds
    the same events split for the rating track.
``recbench_registry``
    A fresh, empty :class:`recbench.registry.Registry`: ``add_plugin(name, module,
    distribution, version)`` registers a plugin module through the real validation.
``recbench_plugin_manager``
    The pluggy plugin manager of that registry (recbench's hookspecs, no plugin).
``recbench_installed_registry``
    Every plugin installed in the environment, discovered as ``recbench`` does it, once
    per session (read it only).
``recbench_data_context``
    A :class:`recbench.data.prepare.DataContext` on empty temporary folders, offline.
``recbench_fake_distribution``
    ``install(name, version, {entry_point_name: module, source or object})``: a fake
    installed distribution with ``recbench`` entry points, for this test only
    (:class:`~recbench.testing.distributions.FakeDistributions`).

and :func:`assert_conforms` checks a plugin class (or a whole plugin module) against its
contract, raising :class:`ConformanceError` with a message that says what is wrong::

    from recbench.testing import assert_conforms
    from recbench_foo import FooModel

    def test_foo_conforms():
        assert_conforms(FooModel)

This package is imported by every pytest session in such an environment, so it imports
nothing heavy (no torch, no plugin) until a fixture or a function is used. Disable it with
``pytest -p no:recbench``.

Its modules follow the kit's sections: :mod:`~recbench.testing.data` (the tiny data),
:mod:`~recbench.testing.conformance` (:func:`assert_conforms`), which dispatches through
:mod:`~recbench.testing.classes` to :mod:`~recbench.testing.models` (with
:mod:`~recbench.testing.cell_export`), :mod:`~recbench.testing.losses`,
:mod:`~recbench.testing.metrics`, :mod:`~recbench.testing.rating` and
:mod:`~recbench.testing.datasets`, or to :mod:`~recbench.testing.modules` for a plugin
module; :mod:`~recbench.testing.checker` and :mod:`~recbench.testing.options` hold what
the checks share; :mod:`~recbench.testing.fixtures` the fixtures and
:mod:`~recbench.testing.distributions` the fake distributions.
"""

from __future__ import annotations

from recbench.testing.checker import EPOCH_OPTIONS, SCORE_TOLERANCE, ConformanceError
from recbench.testing.conformance import assert_conforms
from recbench.testing.data import (
    LEARNING_CUTOFF,
    LEARNING_METRIC,
    LEARNING_PROTOCOL,
    TINY_DATA_OPTIONS,
    TinyData,
    tiny_data,
)
from recbench.testing.distributions import FakeDistributions
from recbench.testing.fixtures import (
    recbench_data_context,
    recbench_fake_distribution,
    recbench_installed_registry,
    recbench_plugin_manager,
    recbench_registry,
    recbench_tiny_data,
)
from recbench.testing.rating import RATING_TOLERANCE

__all__ = [
    "EPOCH_OPTIONS",
    "LEARNING_CUTOFF",
    "LEARNING_METRIC",
    "LEARNING_PROTOCOL",
    "RATING_TOLERANCE",
    "SCORE_TOLERANCE",
    "TINY_DATA_OPTIONS",
    "ConformanceError",
    "FakeDistributions",
    "TinyData",
    "assert_conforms",
    "recbench_data_context",
    "recbench_fake_distribution",
    "recbench_installed_registry",
    "recbench_plugin_manager",
    "recbench_registry",
    "recbench_tiny_data",
    "tiny_data",
]
