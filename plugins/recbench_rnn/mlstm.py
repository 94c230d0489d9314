"""The multiplicative LSTM (Krause et al.) as a sequence recommender."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
    uniform_,
)
from recbench_rnn.recurrence import mlstm_fused, mlstm_loop, mlstm_step


@dataclass(frozen=True)
class MLSTMOptions(EmbeddingOptions):
    """Options of ``mlstm``: the trainer's, plus

    embedding_dim:
        Item embedding size, also the hidden size.
    representation:
        ``h``: the user representation is the hidden state ``h_t`` (default);
        ``c``: the cell state ``c_t``, as the public mlstm4reco code returns.
    implementation:
        ``fused`` (the recurrence with a hand-written backward pass) or ``loop``
        (autograd over a Python loop; the reference, and what ``compile=true`` compiles
        best).
    dropout_embedding, dropout_hidden:
        Dropout on the input embeddings and on the representation.
    """

    embedding_dim: int = 120
    representation: Literal["h", "c"] = "h"
    implementation: Literal["fused", "loop"] = "fused"


class MLSTMNetwork(RecurrentNetwork):
    """Item embeddings -> one mLSTM layer -> ``h_t`` (or ``c_t``); dot-product scores
    with the same item embeddings, plus an item bias.

    The input projections of all steps (``W_mx x_t + b_mx`` and ``W_gx x_t + b_g``) are
    two matrix products over the whole batch before the recurrence; only
    ``W_mh h_{t-1}`` and ``W_gm m_t`` run step by step
    (:mod:`recbench_rnn.recurrence`).
    """

    def __init__(self, n_items: int, options: MLSTMOptions):
        super().__init__()
        dim = options.embedding_dim
        self.n_items = n_items
        self.dim = dim
        self.representation = options.representation
        self.implementation = options.implementation
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=PADDING_ITEM)
        with torch.no_grad():
            self.items.weight.normal_(0.0, 1.0 / dim)
            self.items.weight[PADDING_ITEM].zero_()
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))
        bound = 1.0 / math.sqrt(dim)  # nn.LSTMCell's initialisation
        self.input_m = nn.Linear(dim, dim)  # W_mx x + b_mx
        self.input_gates = nn.Linear(dim, 4 * dim)  # W_gx x + b_g, gates [i, f, o, g]
        self.w_mh = nn.Parameter(uniform_(torch.empty(dim, dim), bound))
        self.b_mh = nn.Parameter(uniform_(torch.empty(dim), bound))
        self.w_gm = nn.Parameter(uniform_(torch.empty(4 * dim, dim), bound))
        for parameter in (*self.input_m.parameters(), *self.input_gates.parameters()):
            uniform_(parameter, bound)
        self.dropout_embedding = nn.Dropout(options.dropout_embedding)
        self.dropout_hidden = nn.Dropout(options.dropout_hidden)

    def output_weights(self) -> tuple[Tensor, Tensor]:
        return self.items.weight, self.item_bias

    def encode(self, items: Tensor) -> Tensor:
        x = self.dropout_embedding(self.items(items.t()))  # time-major [T, B, D]
        xm, xg = self.input_m(x), self.input_gates(x)
        h0 = x.new_zeros(items.shape[0], self.dim)
        recurrence = mlstm_fused if self.implementation == "fused" else mlstm_loop
        out = recurrence(xm, xg, h0, h0, self.w_mh, self.b_mh, self.w_gm, self.representation)
        return self.dropout_hidden(out.transpose(0, 1))

    def initial_state(self, batch_size: int) -> State:
        zeros = self.items.weight.new_zeros(batch_size, self.dim)
        return zeros, zeros.clone()

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        x = self.dropout_embedding(self.items(items))
        h, c = mlstm_step(
            self.input_m(x), self.input_gates(x), h, c, self.w_mh, self.b_mh, self.w_gm
        )
        out = h if self.representation == "h" else c
        return self.dropout_hidden(out), (h, c)

    def encode_from(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        x = self.dropout_embedding(self.items(items.t()))  # time-major [W, B, D]
        outputs = []
        for xm, xg in zip(self.input_m(x).unbind(0), self.input_gates(x).unbind(0), strict=True):
            h, c = mlstm_step(xm, xg, h, c, self.w_mh, self.b_mh, self.w_gm)
            outputs.append(h if self.representation == "h" else c)
        return self.dropout_hidden(torch.stack(outputs, 1)), (h, c)

    def cell(self) -> MLSTMCell:
        return MLSTMCell(self)


class MLSTMCell(ScoringCell):
    """One ``mlstm`` step: ``(item_ids [B], h [B, D], c [B, D]) -> (scores, h, c)``, the
    network's ``step`` (the default ``forward``)."""

    state_names = ("h", "c")


class MLSTMModel(RecurrentModel):
    """Multiplicative LSTM sequence model.

    The mLSTM (Krause et al., 2016) replaces the LSTM's ``h_{t-1}`` in the gates by a
    multiplicative intermediate state that depends on the input::

        m_t = (W_mx x_t + b_mx) ⊙ (W_mh h_{t-1} + b_mh)
        [i, f, o, g] = W_gx x_t + W_gm m_t + b_g        (σ for i, f, o; tanh for g)
        c_t = f ⊙ c_{t-1} + i ⊙ g,    h_t = o ⊙ tanh(c_t)

    so each input item gets its own recurrent transition. As in Wilhelm's "Multiplicative
    LSTM for sequence-based Recommenders", the input ``x_t`` is the item's embedding and
    the **input and output embeddings are shared**; an item's score is
    ``⟨r_t, e_item⟩ + b_item``.

    **User representation: ``h_t`` by default.** The public mlstm4reco code returns the
    cell state ``c_t``; we use ``h_t`` so that ``lstm`` and ``mlstm`` differ only in the
    recurrent transition (Spotlight's LSTM uses ``h_t``), and ``h_t`` is bounded, which
    keeps scores on the same scale. ``representation=c`` reproduces mlstm4reco.

    Defaults are the article's tuned values for MovieLens 1M (adaptive hinge loss,
    Adam, learning rate 1.5e-2, batch 224, embedding 120, L2 6e-6, up to 40 epochs).

    References
    ----------
    Krause, Lu, Murray, Renals. Multiplicative LSTM for sequence modelling.
    arXiv:1609.07959 (2016).
    Wilhelm. Multiplicative LSTM for sequence-based recommenders (2018),
    https://florianwilhelm.info/2018/08/multiplicative_LSTM_for_sequence_based_recos/
    """

    id = "mlstm"
    summary = "Multiplicative LSTM (Krause et al.) over shared item embeddings"
    version = "1"
    Options = MLSTMOptions
    search_space: ClassVar[dict[str, Any]] = {**training_space(), **EMBEDDING_SPACE}

    def build_network(self, n_items: int) -> MLSTMNetwork:
        return MLSTMNetwork(n_items, self.options)
