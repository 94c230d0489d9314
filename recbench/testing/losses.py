"""The kit's checks of a loss: its signature, masking, and a gradient useful for training."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recbench.testing.checker import Checker, construct, score_difference

if TYPE_CHECKING:
    import torch


def check_loss(checker: Checker, options: Mapping[str, Any]) -> None:
    """The shared signature, a finite scalar for both shapes of scores, masks honoured,
    and a gradient that ranks positives above negatives."""
    import torch

    candidates = getattr(checker.cls, "candidates", "sampled")
    if candidates not in ("sampled", "all"):
        raise checker.fail(f"'candidates' must be 'sampled' or 'all', got {candidates!r}")
    loss = construct(checker, options)
    _check_loss_signature(checker, loss)
    generator = torch.Generator().manual_seed(0)
    for lead, negatives in (((32,), 4), ((4, 6), 5)):
        positive = torch.randn(*lead, generator=generator, requires_grad=True)
        negative = torch.randn(*lead, negatives, generator=generator, requires_grad=True)
        mask = torch.rand(*lead, generator=generator) > 0.3
        mask.view(-1)[:2] = torch.tensor([True, False])
        shapes = f"positive {list(positive.shape)}, negative {list(negative.shape)}"
        unmasked = _loss_value(checker, loss, positive, negative, None, shapes)
        all_true = _loss_value(checker, loss, positive, negative, torch.ones_like(mask), shapes)
        if score_difference(unmasked.reshape(1, 1), all_true.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"mask=None gives {float(unmasked):.6g} but an all-true mask gives "
                f"{float(all_true):.6g} ({shapes}): no mask means every position counts"
            )
        masked = _loss_value(checker, loss, positive, negative, mask, shapes + ", with a mask")
        weights = _loss_value(checker, loss, positive, negative, mask.float(), shapes)
        if score_difference(masked.reshape(1, 1), weights.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"a bool mask gives {float(masked):.6g} but the same mask as float weights "
                f"(0 and 1) gives {float(weights):.6g} ({shapes}): a mask may be either"
            )
        gradients = torch.autograd.grad(masked, [positive, negative], allow_unused=True)
        for name, gradient in zip(("positive", "negative"), gradients, strict=True):
            if gradient is not None and gradient[~mask].abs().max() > 0:
                raise checker.fail(
                    f"masked-out positions get a gradient through '{name}' ({shapes}): "
                    "positions where mask is false must not count"
                )
        with torch.no_grad():
            moved_positive = torch.where(mask, positive, positive * 50 + 7)
            moved_negative = torch.where(mask.unsqueeze(-1), negative, negative * 50 - 7)
            moved = loss(moved_positive, moved_negative, mask)
        if score_difference(masked.reshape(1, 1), moved.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"changing the scores of masked-out positions changes the loss from "
                f"{float(masked):.6g} to {float(moved):.6g} ({shapes}): positions where mask "
                "is false must not count"
            )
    _check_loss_gradient(checker, loss, generator)


def _check_loss_signature(checker: Checker, loss: Any) -> None:
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError) as exc:
        raise checker.fail(f"cannot read the signature of __call__ ({exc})") from None
    parameters = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    extra_required = [
        p
        for p in parameters[3:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if (
        [p.name for p in parameters[:3]] != ["positive", "negative", "mask"]
        or any(p.kind not in positional for p in parameters[:3])
        or parameters[2].default is not None
        or extra_required
    ):
        raise checker.fail(
            f"__call__{signature} does not have the shared loss signature "
            "(positive, negative, mask=None): every loss must take the scores of the "
            "positive items [..], of the sampled negatives [.., N] and an optional mask [..]"
        )


def _loss_value(
    checker: Checker, loss: Any, positive: Any, negative: Any, mask: Any, shapes: str
) -> torch.Tensor:
    import torch

    value = checker.call(f"the loss on {shapes}", loss, positive, negative, mask)
    if not isinstance(value, torch.Tensor):
        raise checker.fail(f"the loss returned a {type(value).__name__}, not a torch.Tensor")
    if value.dim() != 0:
        raise checker.fail(
            f"the loss returned shape {list(value.shape)} for {shapes}: it must reduce to a "
            "scalar (a 0-d tensor), e.g. the mean over the unmasked positions"
        )
    if not value.is_floating_point() or not bool(torch.isfinite(value)):
        raise checker.fail(f"the loss returned {value.item()!r} ({value.dtype}) for {shapes}")
    if not value.requires_grad:
        raise checker.fail(
            "the loss does not depend on its inputs through autograd (its value does not "
            "require grad): compute it with torch operations, without detaching"
        )
    return value


def _check_loss_gradient(checker: Checker, loss: Any, generator: torch.Generator) -> None:
    """Raising positives lowers the loss, raising negatives raises it, and descending it
    ranks the positives above the negatives."""
    import torch

    positive = torch.randn(64, generator=generator).requires_grad_()
    negative = torch.randn(64, 8, generator=generator).requires_grad_()
    value = _loss_value(checker, loss, positive, negative, None, "positive [64], negative [64, 8]")
    gradient_positive, gradient_negative = torch.autograd.grad(
        value, [positive, negative], allow_unused=True
    )
    for name, gradient, sign in (
        ("positive", gradient_positive, -1.0),
        ("negative", gradient_negative, 1.0),
    ):
        total = 0.0 if gradient is None else float(gradient.sum())
        if not math.isfinite(total) or total * sign <= 0:
            direction = "lower" if name == "positive" else "raise"
            raise checker.fail(
                f"raising the {name} scores does not {direction} the loss (the sum of "
                f"d loss / d {name} is {total:+.3g}): the gradient is not useful for training"
            )
    before = _pairwise_accuracy(positive, negative)
    for _ in range(100):  # sign descent: as scale-free as Adam, without its start-up cost
        steps = torch.autograd.grad(loss(positive, negative, None), [positive, negative])
        with torch.no_grad():
            for scores, step in zip((positive, negative), steps, strict=True):
                scores -= 0.05 * step.sign()
    after = _pairwise_accuracy(positive, negative)
    if not (after >= 0.9 and after > before):
        raise checker.fail(
            f"following its gradient does not rank positives above negatives: 100 descent "
            f"steps on free scores move the share of (positive > negative) pairs from "
            f"{before:.2f} to {after:.2f} (at least 0.90 expected)"
        )


def _pairwise_accuracy(positive: torch.Tensor, negative: torch.Tensor) -> float:
    return float((positive.detach().unsqueeze(-1) > negative.detach()).double().mean())
