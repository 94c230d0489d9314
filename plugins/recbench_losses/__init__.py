"""Training losses for sequence models (all with one signature, see ``losses``)."""

from __future__ import annotations

from recbench import hookimpl


@hookimpl
def register_losses(register):
    from recbench_losses.losses import LOSSES

    for loss in LOSSES:
        register(loss)
