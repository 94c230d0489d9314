"""Non-neural baselines: popularity (and, later, neighbourhood and rule methods)."""

from __future__ import annotations

from recbench import hookimpl


@hookimpl
def register_models(register):
    from recbench_baselines.popularity import Popularity

    register(Popularity)
