"""GRU4Rec: a GRU trained for next-item ranking (Hidasi et al., 2016 and 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbench.plugin import PADDING_ITEM, Choice, FloatRange, IntRange, ScoringCell
from recbench_rnn.base import (
    EmbeddingOptions,
    RecurrentModel,
    RecurrentNetwork,
    State,
    training_space,
    uniform_,
)
from recbench_rnn.recurrence import FUSED_LAYER_GROUP_ROWS, gru_fused, gru_step, rnn_float32


@dataclass(frozen=True)
class GRU4RecOptions(EmbeddingOptions):
    """Options of ``gru4rec``: the trainer's, with GRU4Rec's defaults -- a full softmax
    cross-entropy (``cce``), and for the sampled losses (``bpr_max``, ``top1_max``,
    ``sampled_softmax``...) the other sequences' targets in the mini-batch plus 256
    extra negatives shared by the mini-batch, drawn with probability ∝ count^0.5 --
    plus

    hidden_size:
        Units of the GRU layer (also the size of the item output vectors).
    embedding:
        ``none``: the item enters the GRU as a one-hot vector (the original GRU4Rec;
        implemented as a lookup of the GRU's input weights); ``separate``: an item
        embedding of ``embedding_dim`` feeds the GRU; ``shared``: the item's output
        vector is also its input embedding (GRU4Rec's "constrained embedding").
    embedding_dim:
        Size of a ``separate`` embedding.
    dropout_embedding, dropout_hidden:
        Dropout on the input embedding (not used with ``embedding=none``) and on the
        GRU's output.
    """

    loss: str = "cce"
    negatives: int = 256
    sampling: Literal["uniform", "popularity"] = "popularity"
    sampling_alpha: float = 0.5
    shared_negatives: bool = True
    in_batch_negatives: bool = True
    optimizer: Literal["adam", "adagrad"] = "adam"
    learning_rate: float = 1.5e-2
    l2: float = 0.0
    hidden_size: int = 120
    embedding: Literal["none", "separate", "shared"] = "none"
    embedding_dim: int = 120

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size < 1:
            raise ValueError("hidden_size must be at least 1")


def _glorot_(tensor: Tensor, fan_in: int, fan_out: int) -> Tensor:
    return uniform_(tensor, math.sqrt(6.0 / (fan_in + fan_out)))


class GRU4RecNetwork(RecurrentNetwork):
    """Input (one-hot, embedding or the output vectors) -> GRU -> ``h_t``;
    ``score = ⟨h_t, w_item⟩ + b_item`` with GRU4Rec's output layer ``(w, b)``.

    With ``embedding=none`` the GRU's input weights are a table of per-item gate inputs
    ``[n_items + 1, 3H]`` and the recurrence runs on them directly
    (:func:`recbench_rnn.recurrence.gru_fused`); otherwise PyTorch's fused ``nn.GRU``.
    Item vectors start uniform in ``±sqrt(6 / (fan_in + fan_out))``.
    """

    def __init__(self, n_items: int, options: GRU4RecOptions):
        super().__init__()
        hidden, embedding = options.hidden_size, options.embedding
        embedding_dim = options.embedding_dim
        self.n_items = n_items
        self.hidden = hidden
        self.embedding_mode = embedding
        self.output = nn.Embedding(n_items + 1, hidden, padding_idx=PADDING_ITEM)
        self.output_bias = nn.Parameter(torch.zeros(n_items + 1))
        _glorot_(self.output.weight, n_items, hidden)
        bound = 1.0 / math.sqrt(hidden)  # nn.GRU's initialisation
        if embedding == "none":
            self.input_gates = nn.Embedding(n_items + 1, 3 * hidden, padding_idx=PADDING_ITEM)
            _glorot_(self.input_gates.weight, n_items, 3 * hidden)
            self.input_bias = nn.Parameter(uniform_(torch.empty(3 * hidden), bound))
            self.w_hh = nn.Parameter(uniform_(torch.empty(3 * hidden, hidden), bound))
            self.b_hh = nn.Parameter(uniform_(torch.empty(3 * hidden), bound))
        else:
            if embedding == "separate":
                self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=PADDING_ITEM)
                _glorot_(self.embedding.weight, n_items, embedding_dim)
            input_dim = embedding_dim if embedding == "separate" else hidden
            self.gru = nn.GRU(input_dim, hidden)
            self.length_group_rows = FUSED_LAYER_GROUP_ROWS
        with torch.no_grad():
            for table in (self.output, getattr(self, "input_gates", None)):
                if table is not None:
                    table.weight[PADDING_ITEM].zero_()
            if embedding == "separate":
                self.embedding.weight[PADDING_ITEM].zero_()
        self.dropout_embedding = nn.Dropout(options.dropout_embedding)
        self.dropout_hidden = nn.Dropout(options.dropout_hidden)

    def output_weights(self) -> tuple[Tensor, Tensor]:
        return self.output.weight, self.output_bias

    def input_vectors(self, items: Tensor) -> Tensor:
        table = self.embedding if self.embedding_mode == "separate" else self.output
        return self.dropout_embedding(table(items))

    def gate_inputs(self, items: Tensor) -> Tensor:
        """``W_ih x + b_ih`` of the items (any shape; a trailing ``3H`` axis is added)."""
        if self.embedding_mode == "none":
            return self.input_gates(items) + self.input_bias
        weight, bias = self.gru_parameters("ih")
        return F.linear(self.input_vectors(items), weight, bias)

    def gru_parameters(self, kind: str) -> tuple[Tensor, Tensor]:
        """``nn.GRU``'s ``(weight, bias)`` of kind ``ih`` or ``hh``."""
        weight, bias = getattr(self.gru, f"weight_{kind}_l0"), getattr(self.gru, f"bias_{kind}_l0")
        assert isinstance(weight, Tensor) and isinstance(bias, Tensor)
        return weight, bias

    def recurrent_weights(self) -> tuple[Tensor, Tensor]:
        if self.embedding_mode == "none":
            return self.w_hh, self.b_hh
        return self.gru_parameters("hh")

    def encode(self, items: Tensor) -> Tensor:
        time_major = items.t()
        h0 = self.output.weight.new_zeros(items.shape[0], self.hidden)
        if self.embedding_mode == "none":
            out = gru_fused(self.gate_inputs(time_major), h0, self.w_hh, self.b_hh)
        else:
            out, _ = rnn_float32(self.gru, self.input_vectors(time_major), h0.unsqueeze(0))
        return self.dropout_hidden(out.transpose(0, 1))

    def initial_state(self, batch_size: int) -> State:
        return (self.output.weight.new_zeros(batch_size, self.hidden),)

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        h = gru_step(self.gate_inputs(items), h, *self.recurrent_weights())
        return self.dropout_hidden(h), (h,)

    def encode_from(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        time_major = items.t()
        if self.embedding_mode == "none":
            out = gru_fused(self.gate_inputs(time_major), h, self.w_hh, self.b_hh)
        else:
            out, _ = self.gru(self.input_vectors(time_major), h.unsqueeze(0))
        return self.dropout_hidden(out.transpose(0, 1)), (out[-1],)

    def cell(self) -> GRU4RecCell:
        return GRU4RecCell(self)


class GRU4RecCell(ScoringCell):
    """One ``gru4rec`` step: ``(item_ids [B], h [B, H]) -> (scores, h)``, the network's
    ``step`` (the default ``forward``)."""

    state_names = ("h",)


class GRU4RecModel(RecurrentModel):
    """GRU4Rec (Hidasi et al.): a GRU over the items read so far, trained to rank the
    next item above sampled negatives.

    What follows the papers: a GRU layer whose state is the session (here: user)
    representation and an output layer of item vectors and biases; items enter as
    one-hot vectors (``embedding=none``, the 2016 paper's best), through an embedding
    (``separate``) or through the output vectors (``shared``, the 2018 paper's
    constrained embedding); the losses ``cce`` (cross-entropy over all items, the
    default), ``bpr_max`` (with its score regularisation;
    ``-o gru4rec.loss_options=score_regularization=0.5``) and ``top1_max``; for the
    sampled losses the negatives are the other sequences' targets in the mini-batch
    plus extra samples shared by the mini-batch, drawn with probability ∝
    support^alpha; session-parallel mini-batches with ``batching=session-parallel``
    (one update per step, the state carried over and reset when a lane starts a new
    sequence).

    What differs by default: mini-batches are padded windows of whole sequences
    (``batching=padded``), back-propagated through time over up to ``max_length``
    steps -- faster on a CPU and on the long user histories of MovieLens -- and the
    optimiser is Adam (Adagrad is available: ``optimizer=adagrad``). The default loss
    is ``cce``: in a small search on ML-100K it ranked clearly better than BPR-max,
    TOP1-max and a sampled softmax over the same negatives (which has no log-Q
    correction here, so popular items are over-penalised).

    References
    ----------
    Hidasi, Karatzoglou, Baltrunas, Tikk. Session-based recommendations with recurrent
    neural networks. ICLR 2016, arXiv:1511.06939.
    Hidasi, Karatzoglou. Recurrent neural networks with top-k gains for session-based
    recommendations. CIKM 2018, arXiv:1706.03847.
    Hidasi, Czapp. The effect of third party implementations on reproducibility.
    RecSys 2023, arXiv:2307.14956.
    """

    id = "gru4rec"
    summary = "GRU4Rec (Hidasi et al.): a GRU trained with cross-entropy, BPR-max or TOP1-max"
    version = "1"
    Options = GRU4RecOptions
    search_space: ClassVar[dict[str, Any]] = {
        **training_space(
            losses=("cce", "bpr_max", "top1_max", "sampled_softmax"),
            sampled=("bpr_max", "top1_max", "sampled_softmax"),
            negatives=(16, 1024),
        ),
        "hidden_size": IntRange(32, 256, step=32),
        "embedding": Choice(("none", "separate", "shared")),
        "embedding_dim": IntRange(32, 256, step=32, when={"embedding": ("separate",)}),
        "dropout_embedding": FloatRange(0.0, 0.5, when={"embedding": ("separate", "shared")}),
        "dropout_hidden": FloatRange(0.0, 0.5),
    }

    def build_network(self, n_items: int) -> GRU4RecNetwork:
        return GRU4RecNetwork(n_items, self.options)
