"""The loss plugins: hand-computed values, masks, and gradients that rank positives up."""

from __future__ import annotations

import math

import pytest
import torch
from recbench_losses.losses import LOSSES

from recbench.registry import discover

LOSS_BY_ID = {cls.id: cls for cls in LOSSES}


pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# One prediction: positive score 1, negative scores 0 and 2 (for cce: every item's score,
# the positive's column first).
S0 = 1.0 / (1.0 + math.e**2)  # softmax weight of the negative scored 0
S2 = 1.0 - S0  # ... and of the negative scored 2
HAND_COMPUTED = {
    "pointwise": softplus(-1.0) + (softplus(0.0) + softplus(2.0)) / 2,
    "bpr": (softplus(-1.0) + softplus(1.0)) / 2,
    "hinge": (0.0 + 2.0) / 2,
    "adaptive_hinge": 2.0,
    "top1": ((sigmoid(-1.0) + sigmoid(0.0)) + (sigmoid(1.0) + sigmoid(4.0))) / 2,
    "top1_max": S0 * (sigmoid(-1.0) + sigmoid(0.0)) + S2 * (sigmoid(1.0) + sigmoid(4.0)),
    "bpr_max": -math.log(S0 * sigmoid(1.0) + S2 * sigmoid(-1.0)) + 1.0 * (S0 * 0.0 + S2 * 4.0),
    "cce": math.log(math.e + 1.0 + math.e**2) - 1.0,
    "sampled_softmax": math.log(math.e + 1.0 + math.e**2) - 1.0,
    "gbce": softplus(-1.0) + softplus(0.0) + softplus(2.0),  # beta = 1 without sampling rates
}


def example(loss_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    positive = torch.tensor([1.0])
    if LOSS_BY_ID[loss_id].candidates == "all":
        return positive, torch.tensor([[1.0, 0.0, 2.0]])
    return positive, torch.tensor([[0.0, 2.0]])


def test_ten_losses_are_registered_with_one_signature():
    registry = discover()
    assert {info.id for info in registry.all("loss")} >= set(HAND_COMPUTED)
    assert set(LOSS_BY_ID) == set(HAND_COMPUTED)
    assert [cls.id for cls in LOSSES if cls.candidates == "all"] == ["cce"]


@pytest.mark.parametrize("loss_id", sorted(HAND_COMPUTED))
def test_hand_computed_value(loss_id):
    loss = LOSS_BY_ID[loss_id]()
    positive, negative = example(loss_id)
    assert loss(positive, negative).item() == pytest.approx(HAND_COMPUTED[loss_id], rel=1e-6)


@pytest.mark.parametrize("loss_id", sorted(HAND_COMPUTED))
def test_mask_averages_the_selected_predictions_and_shapes_broadcast(loss_id):
    loss = LOSS_BY_ID[loss_id]()
    positive, negative = example(loss_id)
    # [B=2, T=2]: one real prediction (the example), three masked out with other scores
    positive2 = torch.stack([torch.cat([positive, torch.tensor([5.0])])] * 2)
    negative2 = torch.stack([torch.cat([negative, negative * -3.0])] * 2)
    mask = torch.tensor([[True, False], [False, False]])
    assert loss(positive2, negative2, mask).item() == pytest.approx(
        HAND_COMPUTED[loss_id], rel=1e-6
    )
    float_mask = mask.float() * 0.5  # weights: the mean is weighted
    assert loss(positive2, negative2, float_mask).item() == pytest.approx(
        HAND_COMPUTED[loss_id], rel=1e-6
    )


def test_options_change_the_value():
    hinge = LOSS_BY_ID["hinge"](LOSS_BY_ID["hinge"].Options(margin=0.5))
    assert hinge(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(0.75)
    bpr_max = LOSS_BY_ID["bpr_max"](LOSS_BY_ID["bpr_max"].Options(score_regularization=0.0))
    value = bpr_max(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])).item()
    assert value == pytest.approx(-math.log(S0 * sigmoid(1.0) + S2 * sigmoid(-1.0)), rel=1e-6)


def test_gbce_calibrates_the_positive_by_the_sampling_rate():
    """gSASRec's beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha = k / catalogue size."""
    loss = LOSS_BY_ID["gbce"](LOSS_BY_ID["gbce"].Options(t=0.75))
    probabilities = torch.full((1, 2), 1.0 / 100)  # 2 uniform negatives of 100 items
    alpha = 2 / 100
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)
    value = loss(
        torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), sampling_probabilities=probabilities
    )
    assert value.item() == pytest.approx(beta * softplus(-1.0) + softplus(0.0) + softplus(2.0))
    uncalibrated = LOSS_BY_ID["gbce"](LOSS_BY_ID["gbce"].Options(t=0.0))
    value = uncalibrated(
        torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), sampling_probabilities=probabilities
    )
    assert value.item() == pytest.approx(HAND_COMPUTED["gbce"], rel=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="plus one axis"):
        LOSS_BY_ID["bpr"]()(torch.zeros(3), torch.zeros(4, 2))


def test_bf16_scores_are_computed_in_float32():
    loss = LOSS_BY_ID["bpr_max"]()
    positive, negative = example("bpr_max")
    value = loss(positive.bfloat16(), negative.bfloat16())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(HAND_COMPUTED["bpr_max"], rel=1e-2)


def test_bpr_max_is_finite_for_extreme_scores():
    loss = LOSS_BY_ID["bpr_max"]()
    value = loss(torch.tensor([-60.0]), torch.tensor([[60.0, 50.0]]))
    assert torch.isfinite(value)


@pytest.mark.parametrize("loss_id", sorted(HAND_COMPUTED))
def test_gradient_descent_ranks_positives_above_negatives(loss_id):
    """Descending the loss on raw scores moves positives up past the negatives."""
    generator = torch.Generator().manual_seed(0)
    n, k = 256, 8
    scores = torch.randn(n, k + 1, generator=generator).requires_grad_()
    loss = LOSS_BY_ID[loss_id]()
    target = torch.zeros(n, dtype=torch.long)  # column 0 is the positive

    def split(s):
        positive = s[:, 0]
        negative = s if loss.candidates == "all" else s[:, 1:]
        return positive, negative

    def above_positive(s):
        return (s[:, 1:] >= s[:, :1]).float().sum(1).mean().item()

    before = above_positive(scores)
    value = loss(*split(scores))
    (grad,) = torch.autograd.grad(value, scores)
    assert (grad.gather(1, target[:, None]) <= 0).all()
    assert (grad.gather(1, target[:, None]) < 0).any()
    for _ in range(50):
        scores = scores.detach().requires_grad_()
        (grad,) = torch.autograd.grad(loss(*split(scores)), scores)
        scores = scores - 2.0 * n * grad
    assert above_positive(scores) < 0.25 * before
    assert loss(*split(scores)).item() < value.item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cce_every_item_loss_equals_the_loss_over_the_sliced_scores(dtype):
    from recbench_losses.losses import CategoricalCrossEntropyLoss

    loss = CategoricalCrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    block = (torch.randn(37, 51, generator=generator) * 4).to(dtype)
    targets = torch.randint(1, 51, (37,), generator=generator)
    fused_scores = block.clone().requires_grad_()
    sliced_scores = block.clone().requires_grad_()
    fused = loss.every_item_loss(fused_scores, targets)
    positive = sliced_scores.gather(1, targets.unsqueeze(1)).squeeze(1)
    sliced = loss(positive.float(), sliced_scores[:, 1:].float())
    fused.backward()
    sliced.backward()
    assert fused.dtype == torch.float32
    assert fused.item() == pytest.approx(sliced.item(), rel=1e-6)
    assert fused_scores.grad is not None and sliced_scores.grad is not None
    # in bfloat16 the sliced path rounds the positive's gradient twice (gather + slice)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 0.0, "atol": 2e-3}
    )
    torch.testing.assert_close(fused_scores.grad, sliced_scores.grad, **tolerance)
    assert torch.all(fused_scores.grad[:, 0] == 0)  # the padding column takes no gradient
