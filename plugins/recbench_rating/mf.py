"""Biased matrix factorisation for rating prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from recbench.plugin import RatingFitContext
from recbench_rating.training import (
    EventRatingModel,
    RatingTrainingOptions,
    check_at_least_one,
    small_normal_,
)


@dataclass(frozen=True)
class MFOptions(RatingTrainingOptions):
    """Options of ``mf``: the trainer's (:class:`RatingTrainingOptions`) and the number
    of latent factors. ``l2`` weighs the squared norms of the batch's user and item
    factors and biases."""

    dim: int = 32
    l2: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least_one(self, "dim")


class MFNetwork(nn.Module):
    """``r̂(u, i) = μ + b_u + b_i + ⟨p_u, q_i⟩``; factors from ``N(0, 0.01²)``, biases
    from 0, ``μ`` (learned) from the mean training rating."""

    def __init__(self, n_users: int, n_items: int, dim: int, mean: float):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items + 1, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        small_normal_(self.users.weight, 0.01)
        small_normal_(self.items.weight, 0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.mean = nn.Parameter(torch.tensor(float(mean)))

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        interaction = (self.users(users) * self.items(items)).sum(-1)
        biases = self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)
        return self.mean + biases + interaction

    def penalty(self, users: Tensor, items: Tensor) -> Tensor:
        """Mean over the batch of the squared norms of its factors and biases."""
        return (
            self.users(users).square().sum(-1)
            + self.items(items).square().sum(-1)
            + self.user_bias(users).squeeze(-1).square()
            + self.item_bias(items).squeeze(-1).square()
        ).mean()


class MatrixFactorization(EventRatingModel):
    """Biased matrix factorisation trained on the squared error of scaled ratings.

    The predicted rating of user ``u`` for item ``i`` is ``μ + b_u + b_i + ⟨p_u, q_i⟩``
    with ``dim`` latent factors, learned with Adam on mini-batches of training events,
    an L2 penalty on the factors and biases a batch uses, and early stopping on the
    validation RMSE. It reads no history. Users and items never seen in training keep
    their initial factors (close to 0): their prediction is close to ``μ`` plus the
    other side's bias.

    References
    ----------
    Y. Koren, R. Bell and C. Volinsky, "Matrix factorization techniques for recommender
    systems", IEEE Computer 42(8), 2009.
    Cloudera Fast Forward Labs, "PyTorch for Recommenders 101", blog post, 10 April 2018.
    """

    id = "mf"
    summary = "Rating prediction: biased matrix factorisation (user, item and global biases)"
    version = "1"
    task: ClassVar[str] = "rating"
    Options = MFOptions

    options: MFOptions

    def build_network(self, ctx: RatingFitContext) -> MFNetwork:
        return MFNetwork(ctx.n_users, ctx.n_items, self.options.dim, ctx.mean_rating)
