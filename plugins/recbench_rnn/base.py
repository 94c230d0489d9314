"""What the recurrent models share: the model class the runner sees and the network
interface the trainer and the one-step cells (:class:`recbench.plugin.ScoringCell`) see."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recbench.plugin import (
    Choice,
    FitContext,
    FloatRange,
    IntRange,
    Queries,
    ScoringCell,
    SequenceBatch,
    Sequences,
    TrainingHistory,
    TrainingOptions,
    fit_network,
    last_positions,
    linear_scores,
    scores_of_rows,
    start_aligned,
)
from recbench_rnn.recurrence import release_workspace

State = tuple[Tensor, ...]

#: The epochs cap of a tuning trial (early stopping usually ends it sooner).
TUNING_EPOCHS = 25
#: Sampled losses the recurrent models' search spaces try (they read ``negatives``).
SAMPLED_LOSSES = ("adaptive_hinge", "bpr", "sampled_softmax")


def training_space(
    *,
    losses: tuple[str, ...] = (*SAMPLED_LOSSES, "cce"),
    sampled: tuple[str, ...] = SAMPLED_LOSSES,
    negatives: tuple[int, int] = (4, 256),
    epochs: int = TUNING_EPOCHS,
) -> dict[str, Any]:
    """The search space of the shared trainer's options: learning rate (log), L2,
    batch size, the epochs cap, and -- when ``losses`` are given -- the loss, with the
    number of ``negatives`` tried for the ``sampled`` ones."""
    space: dict[str, Any] = {
        "learning_rate": FloatRange(1e-4, 5e-2, log=True),
        "l2": Choice((0.0, 1e-7, 1e-6, 1e-5, 1e-4)),
        "batch_size": Choice((64, 128, 256, 512)),
        "epochs": Choice((epochs,)),
    }
    if losses:
        space["loss"] = Choice(losses)
        tried = tuple(loss for loss in losses if loss in sampled)
        if tried:
            space["negatives"] = IntRange(*negatives, log=True, when={"loss": tried})
    return space


#: The item embedding and dropout of :class:`EmbeddingOptions`.
EMBEDDING_SPACE: dict[str, Any] = {
    "embedding_dim": IntRange(32, 256, step=32),
    "dropout_embedding": FloatRange(0.0, 0.5),
    "dropout_hidden": FloatRange(0.0, 0.5),
}


@dataclass(frozen=True)
class EmbeddingOptions(TrainingOptions):
    """The trainer's options plus what every recurrent model here has: the item
    embedding size and dropout on the input embeddings and on the recurrent output; the
    loss is ``adaptive_hinge`` unless a model's options say otherwise."""

    loss: str = "adaptive_hinge"
    embedding_dim: int = 120
    dropout_embedding: float = 0.0
    dropout_hidden: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        for name in ("dropout_embedding", "dropout_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")


class RecurrentNetwork(nn.Module):
    """A network the trainer can train (:class:`recbench.plugin.SequenceNetwork`).

    Subclasses define ``encode``, ``step``, ``initial_state``, ``output_weights`` and
    ``cell``; scores are dot products with the item output vectors plus an item bias.
    ``step`` is also what a :class:`~recbench.plugin.ScoringCell` runs by default.
    """

    n_items: int
    #: Rows per encoder call when the trainer encodes a batch by length on a CPU
    #: (``SequenceNetwork``); ``None``: one call per batch.
    length_group_rows: int | None = None

    def output_weights(self) -> tuple[Tensor, Tensor]:
        """The item output matrix ``[n_items + 1, D]`` and bias ``[n_items + 1]``."""
        raise NotImplementedError

    def encode(self, items: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def initial_state(self, batch_size: int) -> State:
        raise NotImplementedError

    def cell(self) -> ScoringCell:
        raise NotImplementedError

    def score(self, hidden: Tensor, candidates: Tensor | None) -> Tensor:
        weight, bias = self.output_weights()
        return linear_scores(hidden, candidates, weight, bias)

    def encode_from(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        """Read ``items`` ``[B, W]`` from ``state``: the outputs ``[B, W, ...]`` (what
        ``encode`` gives) and the state after the last column. By default ``step`` column
        by column; a network with a fused recurrence that takes an initial state runs it
        on the whole chunk instead."""
        outputs = []
        for column in items.unbind(1):
            output, state = self.step(column, state)
            outputs.append(output)
        return torch.stack(outputs, 1), state

    def ranking_scores(self, hidden: Tensor) -> Tensor:
        """The scores the model ranks with, of every item, for outputs ``[G, R, H]``:
        ``[G, R, n_items + 1]`` (by default ``score`` over every item)."""
        return self.score(hidden, None)


class RecurrentModel:
    """A next-item model around a :class:`RecurrentNetwork`, trained by
    :func:`recbench.plugin.fit_network`. Subclasses set the metadata and
    :meth:`build_network`."""

    id: ClassVar[str]
    summary: ClassVar[str]
    version: ClassVar[str]
    Options: ClassVar[type[TrainingOptions]]

    def __init__(self, options: Any = None):
        self.options: Any = options if options is not None else self.Options()
        self.network: RecurrentNetwork | None = None
        self.history: TrainingHistory | None = None

    @property
    def max_length(self) -> int | None:
        return int(self.options.max_length)

    def build_network(self, n_items: int) -> RecurrentNetwork:
        raise NotImplementedError

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        torch.manual_seed(ctx.seed)
        self.network = self.build_network(train.n_items).to(ctx.device)
        try:
            self.history = fit_network(self, self.network, train, ctx, self.options, name=self.id)
        finally:
            release_workspace()  # the buffers the fused recurrences reuse while training

    def _trained(self) -> RecurrentNetwork:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__}: score() or cell() called before fit()")
        return self.network

    def score(self, batch: SequenceBatch) -> Tensor:
        network = self._trained()
        hidden = network.encode(start_aligned(batch.items, batch.lengths))
        last = last_positions(hidden, batch.lengths)
        return network.score(last.unsqueeze(0), None).squeeze(0)

    def score_prefixes(
        self, items: Tensor, lengths: Tensor, steps: int, rows: Tensor | None = None
    ) -> Iterator[Tensor]:
        """The scores after every prefix of whole sequences, in one pass (the optional
        one-pass method of :class:`recbench.plugin.Model`).

        ``items`` int64 ``[B, T]``, right-padded; yields ``[B, w, n_items + 1]`` for
        each chunk of ``steps`` columns, the state carried from chunk to chunk from
        ``initial_state``: the whole history, as the exported cell reads it. Padding
        columns are read too; their rows are the caller's to ignore. Only the rows
        marked in ``rows`` (bool ``[B, T]``; ``None``: all) are scored.
        """
        network = self._trained()
        state = network.initial_state(int(items.shape[0]))
        for first in range(0, int(items.shape[1]), steps):
            hidden, state = network.encode_from(items[:, first : first + steps], state)
            wanted = None if rows is None else rows[:, first : first + steps]
            yield scores_of_rows(network.ranking_scores, hidden, wanted)

    def cell(self) -> ScoringCell:
        """The one-step module (a :class:`~recbench.plugin.ScoringCell`)."""
        return self._trained().cell()


def uniform_(tensor: Tensor, bound: float) -> Tensor:
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)
