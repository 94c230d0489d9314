"""Non-neural baselines: popularity, item-kNN, session-kNN (SKNN, V-SKNN), sequential
rules and a first-order Markov chain."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_models(register):
    from recbench_baselines.itemknn import ItemKNN
    from recbench_baselines.markov import Markov
    from recbench_baselines.popularity import Popularity
    from recbench_baselines.sknn import SKNN, VSKNN
    from recbench_baselines.sr import SequentialRules

    register(Popularity)
    register(ItemKNN)
    register(SKNN)
    register(VSKNN)
    register(SequentialRules)
    register(Markov)
