"""A dense network over concatenated user and item embeddings, for rating prediction."""

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
    check_dropout,
    small_normal_,
)


@dataclass(frozen=True)
class DenseOptions(RatingTrainingOptions):
    """Options of ``dense``: the trainer's (:class:`RatingTrainingOptions`), the size of
    the user and item embeddings, the widths of the hidden layers and the dropout rate
    after each hidden layer. ``l2`` weighs the squared norms of the batch's embeddings."""

    dim: int = 32
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.2
    l2: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least_one(self, "dim")
        if not self.hidden or any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        check_dropout(self.dropout)


class DenseNetwork(nn.Module):
    """``r̂(u, i) = μ + MLP([e_u ; e_i])``: ReLU hidden layers with dropout, one linear
    output; embeddings from ``N(0, 0.05²)``."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        hidden: tuple[int, ...],
        dropout: float,
        mean: float,
    ):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items + 1, dim)
        small_normal_(self.users.weight, 0.05)
        small_normal_(self.items.weight, 0.05)
        layers: list[nn.Module] = []
        width = 2 * dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        output = nn.Linear(width, 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.mlp = nn.Sequential(*layers, output)
        self.mean = float(mean)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        features = torch.cat([self.users(users), self.items(items)], dim=-1)
        return self.mean + self.mlp(features).squeeze(-1)

    def penalty(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.users(users).square().sum(-1) + self.items(items).square().sum(-1)).mean()


class DenseRating(EventRatingModel):
    """A feed-forward network over the concatenated user and item embeddings.

    The user's and the item's embeddings (``dim`` each) are concatenated and passed
    through ReLU layers of the ``hidden`` widths (with dropout) to one linear output,
    added to the mean training rating. Trained with Adam on the squared error of scaled
    ratings, an L2 penalty on the batch's embeddings and early stopping on the
    validation RMSE. It reads no history.

    References
    ----------
    Cloudera Fast Forward Labs, "PyTorch for Recommenders 101", blog post, 10 April 2018
    (the dense network over concatenated embeddings).
    X. He, L. Liao, H. Zhang, L. Nie, X. Hu and T.-S. Chua, "Neural collaborative
    filtering", WWW 2017.
    """

    id = "dense"
    summary = "Rating prediction: an MLP over concatenated user and item embeddings"
    version = "1"
    task: ClassVar[str] = "rating"
    Options = DenseOptions

    options: DenseOptions

    def build_network(self, ctx: RatingFitContext) -> DenseNetwork:
        options = self.options
        return DenseNetwork(
            ctx.n_users, ctx.n_items, options.dim, options.hidden, options.dropout, ctx.mean_rating
        )
