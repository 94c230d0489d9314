"""The one-step scoring cell: the unit of a neural model that is exported and timed.

A model with ``cell()`` returns a ``torch.nn.Module`` that reads one item per row and
scores every item, carrying its state from step to step:

``forward(item_ids [B] int64, *state) -> (scores [B, n_items + 1], *new_state)``

Column ``j`` of the scores is item id ``j``; column 0 (padding) is never recommended.
:mod:`recbench.serve.export` writes it to ONNX, checks the graph against torch and times
it; any module that follows this contract works. :class:`ScoringCell` is a base for the
common case, a network with a ``step`` and dot-product scores against item vectors.

Serving note
    An optional class attribute ``serving_note``: one sentence on how a step is computed
    that a reader of the latency table should know (a step that re-encodes a window,
    a cache that slides); the report prints it under the table.

The state
    ``initial_state(batch_size)`` returns the state before the first item: a tuple of
    tensors whose first axis is the batch (``[B, ...]``; every other axis has a fixed
    size, since the batch is the graph's only dynamic axis). ``state_names`` names each
    state tensor, in order: the exported graph's inputs are ``item_ids`` and these names,
    its outputs ``scores`` and ``new_<name>``. A cell without state has
    ``state_names = ()`` and ``initial_state`` returning ``()``.

State dtypes
    ``float32`` for continuous state (hidden and cell vectors); ``int64`` for discrete
    state (the last ``W`` item ids of a windowed attention cell, positions, counters).
    Both export, run in ONNX Runtime and are compared by the parity check (an ``int64``
    state is compared exactly, a ``float32`` one within the tolerance). Other dtypes
    (``float16``, ``bfloat16``, ``float64``, ``bool``) are not tested: keep the state in
    these two and convert inside ``forward``.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

#: The state a cell carries between steps: one ``[B, ...]`` tensor per state name.
State = tuple[Tensor, ...]


class ScoringCell(nn.Module):
    """One step of a trained network, for export and latency measurements.

    ``network`` is an ``nn.Module`` with ``step(items [B], state) -> (hidden [B, D],
    new_state)``, ``initial_state(batch_size) -> state`` and ``output_weights() ->
    (item vectors [n_items + 1, D], bias [n_items + 1])``.

    ``forward(item_ids [B], *state) -> (scores [B, n_items + 1], *new_state)``: the
    default calls ``network.step(item_ids, state)`` and scores the representation it
    returns with :meth:`scores` (``hidden @ item_matrix + item_bias``). Override
    ``forward`` (and :meth:`initial_state`) only when the one-step computation differs
    from the network's ``step``, e.g. to use a faster fused cell.

    The cell is a frozen snapshot: a copy of the network in eval mode (dropout off)
    without gradients, taken when the cell is built. The item vectors are kept as a
    contiguous ``[D, n_items + 1]`` copy, the fast layout for a batch-1 product.

    Subclasses set ``state_names``: one name per tensor of the state, in the order of
    :meth:`initial_state` (the exporter requires them; see the module's docstring for
    the allowed state dtypes).
    """

    #: One name per state tensor (``("h", "c")`` for an LSTM); ``()``: no state.
    state_names: ClassVar[tuple[str, ...]] = ()
    #: What a reader of a latency table should know about how a step is computed, one
    #: sentence (e.g. that it re-encodes a window); the run's report prints it.
    serving_note: ClassVar[str] = ""
    network: Any  # the copied network; Any: nn.Module's typing hides its own methods
    item_matrix: Tensor
    item_bias: Tensor

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = copy.deepcopy(network).eval()
        self.network.requires_grad_(False)
        weight, bias = self.network.output_weights()
        self.register_buffer("item_matrix", weight.detach().t().contiguous())
        self.register_buffer("item_bias", bias.detach().clone())

    def scores(self, hidden: Tensor) -> Tensor:
        """Scores ``[B, n_items + 1]`` of representations ``[B, D]``."""
        return torch.addmm(self.item_bias, hidden, self.item_matrix)

    def initial_state(self, batch_size: int) -> State:
        """The state before the first item: the network's ``initial_state``."""
        return tuple(self.network.initial_state(batch_size))

    def forward(self, item_ids: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        hidden, new_state = self.network.step(item_ids, state)
        return (self.scores(hidden), *new_state)
