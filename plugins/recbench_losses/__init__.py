"""Training losses for sequence models (all with one signature, see ``losses``)."""

from __future__ import annotations

from recbench.plugin import hookimpl

#: The plugin API these hooks are written for (see recbench.plugin).
RECBENCH_PLUGIN_API = 2


@hookimpl
def register_losses(register):
    from recbench_losses.losses import LOSSES

    for loss in LOSSES:
        register(loss)
