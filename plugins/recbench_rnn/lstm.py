"""LSTM over item embeddings, in the style of Spotlight's sequence models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recbench.plugin import PADDING_ITEM, ScoringCell
from recbench_rnn.base import (
    EMBEDDING_SPACE,
    EmbeddingOptions,
    RecurrentModel,
    RecurrentNetwork,
    State,
    training_space,
)
from recbench_rnn.recurrence import FUSED_LAYER_GROUP_ROWS, rnn_float32


@dataclass(frozen=True)
class LSTMOptions(EmbeddingOptions):
    """Options of ``lstm``: the trainer's (:class:`recbench.plugin.TrainingOptions`),
    plus the embedding size (also the LSTM's hidden size) and dropout rates on the input
    embeddings and on the LSTM's output."""

    embedding_dim: int = 120


class LSTMNetwork(RecurrentNetwork):
    """Item embeddings -> one LSTM layer -> ``h_t``; ``score = ⟨h_t, e_item⟩ + b_item``.

    The input and output embeddings are the same matrix ``e`` (Spotlight's choice):
    an item is read and predicted through one vector. Embeddings start from
    ``N(0, 1 / D)``, biases from 0; the LSTM is PyTorch's fused ``nn.LSTM``,
    run in float32 even under bf16 autocast (:func:`recbench_rnn.recurrence.rnn_float32`).
    """

    length_group_rows = FUSED_LAYER_GROUP_ROWS

    def __init__(self, n_items: int, options: LSTMOptions):
        super().__init__()
        dim = options.embedding_dim
        self.n_items = n_items
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=PADDING_ITEM)
        with torch.no_grad():
            self.items.weight.normal_(0.0, 1.0 / dim)
            self.items.weight[PADDING_ITEM].zero_()
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.dropout_embedding = nn.Dropout(options.dropout_embedding)
        self.dropout_hidden = nn.Dropout(options.dropout_hidden)

    def output_weights(self) -> tuple[Tensor, Tensor]:
        return self.items.weight, self.item_bias

    def encode(self, items: Tensor) -> Tensor:
        hidden, _ = rnn_float32(self.lstm, self.dropout_embedding(self.items(items)))
        return self.dropout_hidden(hidden)

    def initial_state(self, batch_size: int) -> State:
        zeros = self.items.weight.new_zeros(batch_size, self.lstm.hidden_size)
        return zeros, zeros.clone()

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        x = self.dropout_embedding(self.items(items)).unsqueeze(1)
        out, (h, c) = rnn_float32(self.lstm, x, (h.unsqueeze(0), c.unsqueeze(0)))
        return self.dropout_hidden(out.squeeze(1)), (h.squeeze(0), c.squeeze(0))

    def encode_from(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        x = self.dropout_embedding(self.items(items))
        hidden, (h, c) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        return self.dropout_hidden(hidden), (h.squeeze(0), c.squeeze(0))

    def cell(self) -> LSTMCell:
        return LSTMCell(self)


class LSTMCell(ScoringCell):
    """One ``lstm`` step: ``(item_ids [B], h [B, D], c [B, D]) -> (scores, h, c)``,
    an ``nn.LSTMCell`` holding the trained LSTM's weights."""

    state_names = ("h", "c")
    embedding: nn.Embedding

    def __init__(self, network: LSTMNetwork):
        super().__init__(network)
        lstm = network.lstm
        self.step_cell = nn.LSTMCell(lstm.input_size, lstm.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.step_cell, name).copy_(getattr(lstm, f"{name}_l0"))
        self.step_cell.requires_grad_(False)
        self.embedding = network_items(self.network)
        del self.network.lstm  # the cell's copy replaces it

    def initial_state(self, batch_size: int) -> State:
        zeros = self.item_matrix.new_zeros(batch_size, self.step_cell.hidden_size)
        return zeros, zeros.clone()

    def forward(self, item_ids: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h, c = self.step_cell(self.embedding(item_ids), (h, c))
        return self.scores(h), h, c


def network_items(network: nn.Module) -> nn.Embedding:
    items = network.items
    assert isinstance(items, nn.Embedding)
    return items


class LSTMModel(RecurrentModel):
    """LSTM sequence model (Spotlight's ``lstm`` representation).

    Item embeddings feed one LSTM layer; the hidden state ``h_t`` after reading an item
    is the user representation, and an item's score is ``⟨h_t, e_item⟩ + b_item``. The
    **input and output embeddings are shared** (one matrix ``e``), as in Spotlight.
    Defaults are the mLSTM article's tuned values for MovieLens 1M (adaptive hinge loss,
    Adam, learning rate 1.5e-2, batch 224, embedding 120, L2 6e-6, up to 40 epochs),
    with early stopping on the validation users.

    References
    ----------
    Hochreiter, Schmidhuber. Long short-term memory. Neural Computation 9(8), 1997.
    Kula. Spotlight: deep recommender models in PyTorch (2017).
    Wilhelm. Multiplicative LSTM for sequence-based recommenders (2018, the LSTM
    baseline of its experiments).
    """

    id = "lstm"
    summary = "LSTM over shared item embeddings (Spotlight-style), dot-product scores"
    version = "1"
    Options = LSTMOptions
    search_space: ClassVar[dict[str, Any]] = {**training_space(), **EMBEDDING_SPACE}

    def build_network(self, n_items: int) -> LSTMNetwork:
        return LSTMNetwork(n_items, self.options)
