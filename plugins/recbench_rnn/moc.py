"""Mixture of Cosines (MoC): a GRU over item2vec vectors with K cosine heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbench.plugin import (
    PADDING_ITEM,
    Choice,
    FitContext,
    FloatRange,
    IntRange,
    Queries,
    ScoringCell,
    SequenceBatch,
    Sequences,
    TrainingOptions,
    last_positions,
    linear_scores,
    start_aligned,
)
from recbench_rnn.base import RecurrentModel, RecurrentNetwork, State, training_space
from recbench_rnn.item2vec import Item2VecOptions, Item2VecResult, train_item2vec
from recbench_rnn.recurrence import FUSED_LAYER_GROUP_ROWS, gru_step, rnn_float32

#: Vectors shorter than this count as zero when normalised (the padding item's).
NORM_EPS = 1e-12


@dataclass(frozen=True)
class MoCOptions(TrainingOptions):
    """Options of ``moc``: the trainer's -- with a full softmax (``cce``) over the
    temperature-scaled mixture scores, Adam at 7.42e-3, L2 1e-7, batches of 128 and up
    to 25 epochs by default -- plus the options below.

    The defaults are the best configuration of a 15-trial validation study on the ML-1M
    ratings of users 1-2999 (rounded to three significant digits), which also validated
    better on ML-100K than the best configuration of ML-100K's own 30-trial study:
    docs/methodology.md, "Defaults chosen on validation users".

    mixtures:
        ``K``, the number of user representations (cosine heads); 1 is De Boom et al.'s
        unimodal model.
    dim:
        Size of the item vectors (item2vec's and the user representations').
    hidden_size:
        Units of the GRU.
    fine_tune:
        Train the item vectors with the rest of the model (``true``) or keep the item2vec
        vectors fixed (``false``, as De Boom et al.).
    temperature:
        ``τ``: the training logits are the mixture scores divided by ``τ`` (the ranking
        uses the mixture scores themselves).
    centre_item_vectors:
        Subtract the mean item2vec vector (over the items with training events) before
        use: skip-gram vectors share a common direction that squeezes every cosine
        towards one value.
    item2vec_window, item2vec_negatives, item2vec_epochs, item2vec_learning_rate:
        Pre-training of the item vectors (:mod:`recbench_rnn.item2vec`): context window,
        negatives per pair, passes over the pairs (0: no pre-training, random vectors)
        and the step size of sparse Adam.
    """

    loss: str = "cce"
    epochs: int = 25
    batch_size: int = 128
    learning_rate: float = 7.42e-3
    l2: float = 1e-7
    mixtures: int = 5
    dim: int = 128
    hidden_size: int = 128
    fine_tune: bool = True
    temperature: float = 0.118
    centre_item_vectors: bool = True
    item2vec_window: int = 5
    item2vec_negatives: int = 5
    item2vec_epochs: int = 5
    item2vec_learning_rate: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mixtures", "dim", "hidden_size", "item2vec_window", "item2vec_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.item2vec_epochs < 0:
            raise ValueError("item2vec_epochs must not be negative (0: no pre-training)")
        for name in ("temperature", "item2vec_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def item2vec(self) -> Item2VecOptions:
        """The options of the item2vec pre-training (``item2vec_epochs`` >= 1)."""
        return Item2VecOptions(
            dim=self.dim,
            window=self.item2vec_window,
            negatives=self.item2vec_negatives,
            epochs=self.item2vec_epochs,
            learning_rate=self.item2vec_learning_rate,
        )


def centred(vectors: Tensor, item_counts: np.ndarray) -> Tensor:
    """``vectors`` ``[n_items + 1, D]`` minus the mean vector of the items with a
    positive count (the others, and row 0, are left as they are)."""
    seen = torch.as_tensor(np.asarray(item_counts) > 0, device=vectors.device)
    seen[PADDING_ITEM] = False
    if not bool(seen.any()):
        return vectors.clone()
    mean = vectors[seen].mean(dim=0)
    return torch.where(seen.unsqueeze(1), vectors - mean, vectors)


def unit(vectors: Tensor) -> Tensor:
    """``vectors / ||vectors||`` along the last axis; a zero vector stays zero."""
    return F.normalize(vectors, dim=-1, eps=NORM_EPS)


class MoCNetwork(RecurrentNetwork):
    """Unit item vectors -> GRU -> ``h_t`` -> K heads ``u_k = W_k h_t + b_k`` and mixing
    coefficients ``π = softmax(W_π h_t + b_π)``.

    ``mixture_scores`` are ``m(v) = Σ_k π_k cos(u_k, v)``, computed as one product
    ``⟨w, v / ||v||⟩`` with ``w = Σ_k π_k u_k / ||u_k||`` (the same number: the cosine is
    linear in the unit vectors); ``score`` (what the trainer's losses see) is ``m / τ``.
    The item vectors are a parameter with ``fine_tune``, a buffer otherwise; row 0
    (padding) is zero, so its score is 0.
    """

    length_group_rows = FUSED_LAYER_GROUP_ROWS

    def __init__(self, n_items: int, options: MoCOptions, vectors: Tensor | None = None):
        super().__init__()
        dim, hidden_size = options.dim, options.hidden_size
        self.n_items = n_items
        self.dim = dim
        self.hidden_size = hidden_size
        self.mixtures = options.mixtures
        self.inverse_temperature = 1.0 / options.temperature
        if vectors is None:  # no pre-training: random directions
            vectors = torch.randn(n_items + 1, dim) / dim**0.5
        if tuple(vectors.shape) != (n_items + 1, dim):
            raise ValueError(
                f"item vectors must be [n_items + 1, dim] = {[n_items + 1, dim]}, "
                f"got {list(vectors.shape)}"
            )
        vectors = vectors.detach().clone().float()
        vectors[PADDING_ITEM] = 0.0
        if options.fine_tune:
            self.item_vectors = nn.Parameter(vectors)
        else:
            self.register_buffer("item_vectors", vectors)
        self.gru = nn.GRU(dim, hidden_size, batch_first=True)
        self.heads = nn.Linear(hidden_size, self.mixtures * dim)
        self.mixing = nn.Linear(hidden_size, self.mixtures)

    def unit_items(self) -> Tensor:
        """``[n_items + 1, D]``: every item vector divided by its norm (row 0 zero)."""
        return unit(self.item_vectors)

    def components(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """The heads' unit vectors ``[..., K, D]`` and mixing coefficients ``[..., K]`` of
        GRU outputs ``[..., H]``."""
        heads = self.heads(hidden).unflatten(-1, (self.mixtures, self.dim))
        return unit(heads), torch.softmax(self.mixing(hidden), dim=-1)

    def user_vectors(self, hidden: Tensor) -> Tensor:
        """``w = Σ_k π_k u_k / ||u_k||``, ``[..., D]``: ``⟨w, v / ||v||⟩`` is the mixture
        score of item ``v``."""
        heads, weights = self.components(hidden)
        return torch.matmul(weights.unsqueeze(-2), heads).squeeze(-2)

    def output_weights(self) -> tuple[Tensor, Tensor]:
        items = self.unit_items()
        return items, items.new_zeros(self.n_items + 1)

    def encode(self, items: Tensor) -> Tensor:
        hidden, _ = rnn_float32(self.gru, F.embedding(items, self.unit_items()))
        return hidden

    def mixture_scores(self, hidden: Tensor, candidates: Tensor | None) -> Tensor:
        """``Σ_k π_k cos(u_k, v)`` in the ``score`` layout (``hidden`` ``[G, R, H]``)."""
        return linear_scores(self.user_vectors(hidden), candidates, self.unit_items(), None)

    def score(self, hidden: Tensor, candidates: Tensor | None) -> Tensor:
        """The training logits: the mixture scores divided by the temperature."""
        scaled = self.user_vectors(hidden) * self.inverse_temperature
        return linear_scores(scaled, candidates, self.unit_items(), None)

    def gru_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``nn.GRU``'s ``(W_ih, b_ih, W_hh, b_hh)``."""
        names = ("weight_ih_l0", "bias_ih_l0", "weight_hh_l0", "bias_hh_l0")
        w_ih, b_ih, w_hh, b_hh = (getattr(self.gru, name) for name in names)
        return w_ih, b_ih, w_hh, b_hh

    def initial_state(self, batch_size: int) -> State:
        return (self.mixing.weight.new_zeros(batch_size, self.hidden_size),)

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        w_ih, b_ih, w_hh, b_hh = self.gru_weights()
        h = gru_step(F.linear(F.embedding(items, self.unit_items()), w_ih, b_ih), h, w_hh, b_hh)
        return h, (h,)

    def encode_from(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        hidden, h = self.gru(F.embedding(items, self.unit_items()), h.unsqueeze(0))
        return hidden, (h.squeeze(0),)

    def ranking_scores(self, hidden: Tensor) -> Tensor:
        """The mixture scores ``Σ_k π_k cos(u_k, v)`` (what ``moc`` ranks with)."""
        return self.mixture_scores(hidden, None)

    def cell(self) -> MoCCell:
        return MoCCell(self)


class MoCCell(ScoringCell):
    """One ``moc`` step: ``(item_ids [B], h [B, H]) -> (scores [B, n_items + 1], h)``,
    the scores being ``Σ_k π_k cos(u_k, v)`` (what ``moc`` ranks with; column 0, the
    padding item's zero vector, scores 0). The unit item vectors are kept twice: as the
    GRU's input table and, transposed, as the scoring matrix."""

    state_names = ("h",)
    input_vectors: Tensor

    def __init__(self, network: MoCNetwork):
        super().__init__(network)
        self.register_buffer("input_vectors", network.unit_items().detach().clone())
        self.hidden_size = network.hidden_size
        del self.network.item_vectors  # the two tables above replace it

    def initial_state(self, batch_size: int) -> State:
        return (self.item_matrix.new_zeros(batch_size, self.hidden_size),)

    def forward(self, item_ids: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        network = self.network
        assert isinstance(network, MoCNetwork)
        w_ih, b_ih, w_hh, b_hh = network.gru_weights()
        x = F.embedding(item_ids, self.input_vectors)
        h = gru_step(F.linear(x, w_ih, b_ih), h, w_hh, b_hh)
        return self.scores(network.user_vectors(h)), h


class MoCModel(RecurrentModel):
    """Mixture of Cosines: a GRU over item2vec vectors predicting K user representations
    and their mixing coefficients; an item's score is ``Σ_k π_k cos(u_k, v)``.

    The model of the thesis "Multimodal Sequential Recommender Systems", which extends
    De Boom et al.'s regression-based GRU recommender with the mixture outputs of
    Bishop's mixture density networks:

    1. **Item vectors** ``v`` come from item2vec (skip-gram with negative sampling over
       the training sequences, :mod:`recbench_rnn.item2vec`), then stay fixed or are
       fine-tuned (``fine_tune``).
    2. A **GRU** reads the sequence of (unit-length) item vectors; its state ``h_τ``
       feeds K one-layer feed-forward heads ``u_k = W_k h_τ + b_k`` (size ``dim``) and a
       feed-forward + softmax head giving the **mixing coefficients** ``π_k``.
    3. The **ranking score** of item ``v`` is exactly ``m(v) = Σ_k π_k cos(u_k, v)``
       (``score`` and ``cell``). With ``K = 1``, ``π_1 = 1`` and this is De Boom et al.'s
       unimodal cosine kNN regression.

    **Training objective** (not given by the thesis): the likelihood of the next item
    under a softmax over the whole catalogue with the temperature-scaled mixture score
    as logit,

        p(v | s_1..s_τ) = exp(m(v) / τ) / Σ_j exp(m(j) / τ),

    minimised as cross-entropy by the trainer's full-softmax path (``loss=cce``,
    ``candidates="all"``). Why this one:

    - It is a likelihood over items built from cosine kernels: ``exp(m(v) / τ) = Π_k
      exp(cos(u_k, v) / τ)^{π_k}``, the π-weighted geometric mixture of K von
      Mises-Fisher-shaped kernels on the unit sphere, normalised over the catalogue.
      Bishop's arithmetic mixture ``Σ_k π_k softmax(cos(u_k, ·) / τ)`` ranks items by a
      different quantity than ``Σ_k π_k cos(u_k, v)`` and needs K normalisations; the
      geometric mixture ranks exactly by the model's score, since ``1 / τ > 0``.
    - De Boom et al.'s cosine-proximity regression (minimise ``1 - cos(u, v_next)``)
      only pulls the prediction towards the next item and never away from the others,
      and with K heads it would let π collapse onto the best head; the softmax trains
      the ranking against every item.
    - The **temperature** (default 0.118, i.e. logits in about ``[-8.5, 8.5]``) is needed
      because cosines lie in ``[-1, 1]``: unscaled, the most likely item could be at most
      ``e² ≈ 7.4`` times as likely as the least likely one (the scale of normalised
      softmax classifiers, Wang et al.). It scales the logits only, never the ranking.
    - The full softmax costs one ``[predictions, D] × [D, n_items]`` product per batch
      for every K (see below), cheap for catalogues up to tens of thousands of items;
      for larger ones the sampled losses work unchanged (``loss=sampled_softmax``).

    **A property of the score.** ``cos(u_k, v) = ⟨u_k / ||u_k||, v / ||v||⟩`` is linear
    in the unit item vector, so ``m(v) = ⟨w, v / ||v||⟩`` with ``w = Σ_k π_k u_k /
    ||u_k||``: all items are scored with one product whatever K, and for one user the
    ranking is that of the single direction ``w`` (``m(v) = ||w|| cos(w, v)``). K > 1
    changes how ``w`` is formed (a gated mixture of K experts) and its length
    ``||w|| ≤ 1``, which acts as a per-prediction confidence in training: heads that
    disagree flatten the predicted distribution. A ranking with several separate modes
    would need a score that is not linear in the cosines (e.g. ``Σ_k π_k exp(κ cos)``),
    which is not this model.

    Other choices: the item2vec vectors are **centred** (the mean vector of the items
    with training events is subtracted; ``centre_item_vectors``): skip-gram vectors share
    a common direction, and once normalised every cosine is squeezed towards one value
    (on the kit's synthetic data fixed, uncentred vectors ranked below popularity,
    centred ones far above it). The GRU reads unit item vectors (item2vec's norms carry
    frequency, not direction); the heads are affine maps (the cosine ignores their
    scale); the item vectors of the input and of the scores are the same matrix, fixed
    or fine-tuned together; item2vec uses the training sequences only, with the run's
    seed.

    Defaults (K = 5, item vectors 128, GRU 128, τ = 0.118, fine-tuned, Adam 7.42e-3,
    L2 1e-7, batches of 128, up to 25 epochs; item2vec window 5, 5 negatives, 5 epochs)
    are the best configuration of a 15-trial validation study on the ML-1M file
    (:class:`MoCOptions`). They replaced defaults chosen on ML-100K test metrics (K = 4,
    item vectors 64, GRU 128, τ = 0.05, Adam 1e-2); in that earlier search the model
    without item2vec pre-training (``item2vec_epochs=0``) fell from mrr@10 0.08-0.09 to
    0.036 (``pop``: 0.026). The studies do not search the pre-training options.

    References
    ----------
    De Boom, Agrawal, Hansen, Kumar, Yon, Chen, Demeester, Dhoedt. Large-scale user
    modeling with recurrent neural networks for music discovery. arXiv:1708.06520 (2017).
    Bishop. Mixture density networks. Technical report NCRG/94/004, Aston University
    (1994).
    Barkan, Koenigstein. Item2vec: neural item embedding for collaborative filtering.
    MLSP 2016, arXiv:1603.04259.
    Wang, Xiang, Cheng, Yuille. NormFace: L2 hypersphere embedding for face
    verification. ACM Multimedia 2017, arXiv:1704.06369.
    Multimodal sequential recommender systems (master's thesis, summarised at
    https://www.inovex.de/de/blog/multimodal-sequential-recommender-systems/).
    """

    id = "moc"
    summary = "Mixture of Cosines: GRU over item2vec vectors, score Σ_k π_k cos(u_k, v)"
    version = "1"
    Options = MoCOptions
    search_space: ClassVar[dict[str, Any]] = {
        **training_space(losses=()),
        "mixtures": IntRange(1, 8),
        "dim": Choice((32, 64, 128)),
        "hidden_size": IntRange(64, 256, step=64),
        "temperature": FloatRange(0.01, 0.5, log=True),
        "fine_tune": Choice((True, False)),
    }

    def __init__(self, options: MoCOptions | None = None):
        super().__init__(options)
        self.item2vec: Item2VecResult | None = None
        self.initial_vectors: Tensor | None = None

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        o = self.options
        self.item2vec = self.initial_vectors = None
        if o.item2vec_epochs > 0:
            self.item2vec = train_item2vec(
                train,
                o.item2vec(),
                device=ctx.device,
                seed=ctx.seed,
                progress=ctx.progress,
                name=f"{self.id} item2vec",
            )
            ctx.progress.log(
                f"{self.id}: item2vec pre-training took {self.item2vec.seconds:.1f} s "
                f"({self.item2vec.pairs_per_epoch:,} pairs per epoch)"
            )
            vectors = self.item2vec.vectors
            if o.centre_item_vectors:
                vectors = centred(vectors, train.item_counts())
            self.initial_vectors = vectors.cpu()
        super().fit(train, valid, ctx)

    def build_network(self, n_items: int) -> MoCNetwork:
        vectors = self.initial_vectors
        if vectors is not None and vectors.shape[0] != n_items + 1:
            vectors = None
        return MoCNetwork(n_items, self.options, vectors)

    def score(self, batch: SequenceBatch) -> Tensor:
        """``Σ_k π_k cos(u_k, v)`` for every item ``[B, n_items + 1]`` (column 0 is 0)."""
        network = self._trained()
        assert isinstance(network, MoCNetwork)
        hidden = network.encode(start_aligned(batch.items, batch.lengths))
        last = last_positions(hidden, batch.lengths)
        return network.mixture_scores(last.unsqueeze(0), None).squeeze(0)
