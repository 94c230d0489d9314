"""What the tests of the sequence models share: the fit context of a training set, and the
checks of a model's one-step cell against its full forward pass."""

from __future__ import annotations

import functools
from typing import Any

import torch

from recbench.contracts import FitContext
from recbench.data.batches import SequenceBatch
from recbench.data.interactions import Sequences
from recbench.registry import Registry, discover


@functools.cache
def installed_registry() -> Registry:
    """The installed plugins (discovered once): where the trainer looks up losses."""
    return discover()


def fit_context(
    train: Sequences, device: str | torch.device = "cpu", seed: int = 0, **kwargs: Any
) -> FitContext:
    """The context of fitting on ``train``: its catalogue and item counts, ``device`` and
    ``seed``, the installed plugins as ``registry``; ``kwargs`` set the other fields
    (``validate``, ``registry``...)."""
    kwargs.setdefault("registry", installed_registry())
    return FitContext(
        n_items=train.n_items,
        device=torch.device(device),
        seed=seed,
        item_counts=train.item_counts(),
        **kwargs,
    )


def assert_cell_steps_to_the_scores(model: Any, rows: list[list[int]], n_items: int) -> Any:
    """Stepping ``model.cell()`` through each of ``rows`` gives ``model.score``'s scores
    after its last item, one row at a time and all rows at once (the batch axis is free);
    returns the cell."""
    width = max(map(len, rows))
    items = torch.tensor([[0] * (width - len(r)) + r for r in rows])  # left-padded
    lengths = torch.tensor([len(r) for r in rows])
    with torch.no_grad():
        scores = model.score(SequenceBatch(items=items, lengths=lengths))
    assert scores.shape == (len(rows), n_items + 1)
    cell = model.cell()
    for row, sequence in enumerate(rows):
        state = cell.initial_state(1)
        with torch.no_grad():
            for item in sequence:
                stepped, *state = cell(torch.tensor([item]), *state)
        assert torch.allclose(stepped[0], scores[row], rtol=1e-4, atol=1e-4), row
    # all rows at once, prefix by prefix
    state = cell.initial_state(len(rows))
    aligned = [r + [0] * (width - len(r)) for r in rows]
    with torch.no_grad():
        for t in range(width):
            stepped, *state = cell(torch.tensor([a[t] for a in aligned]), *state)
            for row, sequence in enumerate(rows):
                if t == len(sequence) - 1:
                    assert torch.allclose(stepped[row], scores[row], rtol=1e-4, atol=1e-4)
    assert len(state) == len(cell.state_names)
    return cell


def assert_cell_is_a_frozen_snapshot(model: Any, cell: Any) -> None:
    """Changing ``model``'s weights after ``cell = model.cell()`` leaves the cell as it
    was, and the cell's parameters need no gradient."""
    before = cell(torch.tensor([1]), *cell.initial_state(1))[0].detach().clone()
    with torch.no_grad():
        for parameter in model.network.parameters():
            parameter.add_(1.0)
    after = cell(torch.tensor([1]), *cell.initial_state(1))[0]
    assert torch.equal(before, after)
    assert not any(p.requires_grad for p in cell.parameters())
