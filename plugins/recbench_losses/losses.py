"""Training losses for next-item models, all with one signature.

Every loss is called as ``loss(positive, negative, mask=None)`` and returns a scalar:

``positive``
    ``[...]``: the score of the item that came next, one per prediction (for a batch of
    padded sequences ``[B, T]``; the trainer passes ``[M]``, the real positions only).
``negative``
    ``[..., N]``: scores of items that did not come next. What they are depends on the
    loss's ``candidates`` attribute, which the trainer reads:

    - ``"sampled"``: ``N`` sampled negatives (uniform, popularity, other sequences'
      targets in the mini-batch...);
    - ``"all"`` (``cce``): the scores of **every** item of the catalogue, ``N = n_items``
      (padding left out), the positive's own column included.
``mask``
    ``[...]`` bool or float weights (``None``: every element counts). The result is the
    weighted mean over the predictions.

Scores are logits (any real number). Losses compute in float32 at least, so a model
may produce bfloat16 scores under autocast.

References
----------
Rendle, Freudenthaler, Gantner, Schmidt-Thieme. BPR: Bayesian personalized ranking from
implicit feedback. UAI 2009.
Weston, Bengio, Usunier. WSABIE: Scaling up to large vocabulary image annotation.
IJCAI 2011 (the margin ranking loss that ``adaptive_hinge`` approximates).
Hidasi, Karatzoglou, Baltrunas, Tikk. Session-based recommendations with recurrent
neural networks. ICLR 2016 (TOP1).
Hidasi, Karatzoglou. Recurrent neural networks with top-k gains for session-based
recommendations. CIKM 2018 (TOP1-max, BPR-max).
Jean, Cho, Memisevic, Bengio. On using very large target vocabulary for neural machine
translation. ACL 2015 (sampled softmax).
Petrov, Macdonald. gSASRec: reducing overconfidence in sequential recommendation trained
with negative sampling. RecSys 2023 (gBCE).
Kula. Spotlight (2017), https://github.com/maciejkula/spotlight: the pointwise, BPR,
hinge and adaptive hinge losses of sequence models; our formulas are the textbook
ones, see each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


def _float(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """The mean of ``values`` weighted by ``mask`` (all of them when ``mask`` is None)."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


class _Loss:
    """Shared plumbing: options, and the call that casts scores and applies the mask."""

    candidates: ClassVar[str] = "sampled"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options: object | None = None):
        self.options = options if options is not None else self.Options()

    def __call__(self, positive: Tensor, negative: Tensor, mask: Tensor | None = None) -> Tensor:
        if negative.shape[:-1] != positive.shape:
            raise ValueError(
                f"{type(self).__name__}: negative scores {list(negative.shape)} must be "
                f"positive's shape {list(positive.shape)} plus one axis of negatives"
            )
        return masked_mean(self.elementwise(_float(positive), _float(negative)), mask)

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        """The loss of every prediction, ``[...]``."""
        raise NotImplementedError


class PointwiseLoss(_Loss):
    """Logistic (binary cross-entropy) loss: the positive is a 1, each negative a 0.

    ``-log σ(r⁺) - mean_j log(1 - σ(r⁻_j))``. Spotlight's ``pointwise_loss`` uses
    ``1 - σ(r⁺) + σ(r⁻)`` instead; we use the log-likelihood, whose gradient does not
    vanish for badly wrong scores.
    """

    id = "pointwise"
    summary = "Logistic loss: positives towards 1, negatives towards 0 (binary cross-entropy)"
    version = "1"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        return F.softplus(-positive) + F.softplus(negative).mean(-1)


class BPRLoss(_Loss):
    """Bayesian personalised ranking: ``mean_j -log σ(r⁺ - r⁻_j)`` (Rendle et al., 2009;
    GRU4Rec's BPR). Spotlight's ``bpr_loss`` uses ``1 - σ(r⁺ - r⁻)`` instead."""

    id = "bpr"
    summary = "BPR: -log sigmoid(positive - negative), averaged over the negatives"
    version = "1"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        return F.softplus(negative - positive.unsqueeze(-1)).mean(-1)


class HingeLoss(_Loss):
    """Margin ranking loss: ``mean_j max(0, margin - r⁺ + r⁻_j)``."""

    id = "hinge"
    summary = "Hinge: max(0, margin - positive + negative), averaged over the negatives"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        margin: float = 1.0

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        margin = self.options.margin  # type: ignore[attr-defined]
        return torch.relu(margin - positive.unsqueeze(-1) + negative).mean(-1)


class AdaptiveHingeLoss(_Loss):
    """Hinge on the highest-scoring negative: ``max(0, margin - r⁺ + max_j r⁻_j)``.

    Of ``N`` sampled negatives only the one the model ranks highest counts, which
    approximates WARP's search for a violating negative (Weston et al., 2011); this is
    Spotlight's ``adaptive_hinge_loss`` and the loss of the mLSTM article.
    """

    id = "adaptive_hinge"
    summary = "Adaptive hinge: hinge against the highest-scoring of the sampled negatives"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        margin: float = 1.0

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        margin = self.options.margin  # type: ignore[attr-defined]
        return torch.relu(margin - positive + negative.amax(-1))


class TOP1Loss(_Loss):
    """GRU4Rec's TOP1 (Hidasi et al., 2016): the regularised approximation of the relative
    rank of the positive, ``mean_j σ(r⁻_j - r⁺) + σ(r⁻_j²)``."""

    id = "top1"
    summary = "TOP1 (GRU4Rec): sigmoid(negative - positive) + sigmoid(negative²), averaged"
    version = "1"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        return (torch.sigmoid(negative - positive.unsqueeze(-1)) + torch.sigmoid(negative**2)).mean(
            -1
        )


class TOP1MaxLoss(_Loss):
    """TOP1-max (Hidasi and Karatzoglou, 2018): TOP1 weighted by the softmax of the
    negative scores, so the highest-scoring negatives dominate:
    ``Σ_j s_j (σ(r⁻_j - r⁺) + σ(r⁻_j²))``, ``s = softmax(r⁻)``."""

    id = "top1_max"
    summary = "TOP1-max (GRU4Rec): TOP1 weighted by the softmax over the negative scores"
    version = "1"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        weights = torch.softmax(negative, dim=-1)
        terms = torch.sigmoid(negative - positive.unsqueeze(-1)) + torch.sigmoid(negative**2)
        return (weights * terms).sum(-1)


class BPRMaxLoss(_Loss):
    """BPR-max (Hidasi and Karatzoglou, 2018) with its score regularisation:

    ``-log Σ_j s_j σ(r⁺ - r⁻_j) + λ Σ_j s_j (r⁻_j)²``, ``s = softmax(r⁻)``.

    The first term is computed as a log-sum-exp of ``log s_j + log σ(r⁺ - r⁻_j)``, which
    stays finite where the sum underflows. ``score_regularization`` is λ.
    """

    id = "bpr_max"
    summary = (
        "BPR-max (GRU4Rec): BPR against a softmax-weighted negative, with score regularisation"
    )
    version = "1"

    @dataclass(frozen=True)
    class Options:
        score_regularization: float = 1.0

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        log_weights = torch.log_softmax(negative, dim=-1)
        log_sigmoid = F.logsigmoid(positive.unsqueeze(-1) - negative)
        ranking = -torch.logsumexp(log_weights + log_sigmoid, dim=-1)
        regularization = (log_weights.exp() * negative**2).sum(-1)
        lam = self.options.score_regularization  # type: ignore[attr-defined]
        return ranking + lam * regularization


class CategoricalCrossEntropyLoss(_Loss):
    """Full softmax cross-entropy over the catalogue: ``logsumexp_j r_j - r⁺``.

    ``candidates = "all"``: ``negative`` holds the scores of every item, the positive's
    own column included, so the sum runs over the whole catalogue exactly once.
    """

    id = "cce"
    summary = "Cross-entropy of a softmax over every item (negative = all item scores)"
    version = "1"
    candidates: ClassVar[str] = "all"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        return torch.logsumexp(negative, dim=-1) - positive

    def every_item_loss(self, scores: Tensor, targets: Tensor) -> Tensor:
        """The same mean loss from the whole score block: ``scores`` ``[M, n_items + 1]``
        (column 0 is padding), ``targets`` int64 ``[M]``.

        One ``F.cross_entropy`` over a float32 copy of the block with column 0 set to
        ``-inf`` (so it is left out of the sum and gets a zero gradient): no gather of the
        positives, no ``logsumexp`` over the non-contiguous ``scores[:, 1:]`` and no
        zero-filled block in the backward pass. The trainer uses it when the loss asks
        for no extra inputs.
        """
        logits = scores.to(torch.promote_types(scores.dtype, torch.float32), copy=True)
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets)


class SampledSoftmaxLoss(_Loss):
    """Cross-entropy of a softmax over the positive and ``N`` sampled negatives:
    ``logsumexp(r⁺, r⁻_1..r⁻_N) - r⁺`` (Jean et al., 2015, without the sampling-
    probability correction)."""

    id = "sampled_softmax"
    summary = "Cross-entropy of a softmax over the positive and the sampled negatives"
    version = "1"

    def elementwise(self, positive: Tensor, negative: Tensor) -> Tensor:
        logits = torch.cat((positive.unsqueeze(-1), negative), dim=-1)
        return torch.logsumexp(logits, dim=-1) - positive


class GeneralisedBCELoss:
    """gBCE, the generalised binary cross-entropy of gSASRec (Petrov and Macdonald, 2023).

    ``-β log σ(r⁺) - Σ_j log(1 - σ(r⁻_j))``: binary cross-entropy summed over the ``k``
    negatives (as the paper writes it, not averaged), with the positive's term raised to
    the power ``β`` (inside the log). Sampling ``k`` of the catalogue's items as negatives
    makes plain BCE overconfident (it learns the probability of a positive against a
    *sample*); ``β`` undoes that:

    ``α = k / (|I| - 1)`` (the sampling rate), ``β = α (t (1 - 1/α) + 1/α) = 1 - t (1 - α)``

    with the calibration parameter ``t ∈ [0, 1]`` (option ``t``, the paper's default for
    its experiments 0.75): ``t = 0`` is plain BCE (``β = 1``), ``t = 1`` makes the model
    fully calibrated on the catalogue. ``α`` is read from the trainer's
    ``sampling_probabilities`` as ``Σ_j p_j`` over the ``k`` negatives of a prediction,
    which is ``k / |I|`` for the uniform sampler (the paper's rate up to ``|I| - 1``
    against ``|I|``; for other samplers it is the expected share of the catalogue the
    negatives cover). Called without them (outside the trainer), ``α = 1``: every item is
    a negative, and gBCE is plain BCE.

    With ``sasrec``: ``-o sasrec.loss=gbce -o sasrec.negatives=256`` is gSASRec (its
    defaults: 256 negatives, ``t = 0.75``).
    """

    id = "gbce"
    summary = "gBCE (gSASRec): BCE over sampled negatives with the positive calibrated by beta"
    version = "1"
    candidates: ClassVar[str] = "sampled"
    extra_inputs: ClassVar[tuple[str, ...]] = ("sampling_probabilities",)

    @dataclass(frozen=True)
    class Options:
        t: float = 0.75

        def __post_init__(self) -> None:
            if not 0.0 <= self.t <= 1.0:
                raise ValueError("t must be in [0, 1]")

    def __init__(self, options: GeneralisedBCELoss.Options | None = None):
        self.options = options if options is not None else self.Options()

    def beta(self, sampling_probabilities: Tensor | None, like: Tensor) -> Tensor:
        """``β`` of every prediction, ``[...]`` (shaped like ``like``)."""
        if sampling_probabilities is None:
            return torch.ones_like(like)
        alpha = _float(sampling_probabilities).sum(-1).clamp(0.0, 1.0)
        return 1.0 - self.options.t * (1.0 - alpha)

    def __call__(
        self,
        positive: Tensor,
        negative: Tensor,
        mask: Tensor | None = None,
        *,
        sampling_probabilities: Tensor | None = None,
    ) -> Tensor:
        if negative.shape[:-1] != positive.shape:
            raise ValueError(
                f"gbce: negative scores {list(negative.shape)} must be positive's shape "
                f"{list(positive.shape)} plus one axis of negatives"
            )
        positive, negative = _float(positive), _float(negative)
        beta = self.beta(sampling_probabilities, positive).detach()
        losses = beta * F.softplus(-positive) + F.softplus(negative).sum(-1)
        return masked_mean(losses, mask)


LOSSES: tuple[type[_Loss] | type[GeneralisedBCELoss], ...] = (
    PointwiseLoss,
    BPRLoss,
    HingeLoss,
    AdaptiveHingeLoss,
    TOP1Loss,
    TOP1MaxLoss,
    BPRMaxLoss,
    CategoricalCrossEntropyLoss,
    SampledSoftmaxLoss,
    GeneralisedBCELoss,
)
