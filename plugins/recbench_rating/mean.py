"""The global-mean baseline of the rating track."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from recbench.plugin import RatingBatch, RatingEvents, RatingFitContext


class GlobalMean:
    """Predicts the mean training rating for every (user, item).

    The reference every rating model must beat: on the [0, 1] scale its RMSE is the
    standard deviation of the test ratings around the training mean. It reads no
    history and ignores users and items.

    References
    ----------
    Y. Koren, R. Bell and C. Volinsky, "Matrix factorization techniques for recommender
    systems", IEEE Computer 42(8), 2009 (the global average ``μ`` of the baseline
    predictor).
    """

    id = "mean"
    summary = "Rating prediction baseline: the mean training rating for every user and item"
    version = "1"
    task: ClassVar[str] = "rating"
    baseline: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options: Options | None = None):
        self.options = options or self.Options()
        self._mean: float | None = None
        self._device = torch.device("cpu")

    @property
    def max_history(self) -> int:
        return 0

    def fit(self, train: RatingEvents, valid: RatingEvents | None, ctx: RatingFitContext) -> None:
        self._mean = train.mean_rating
        self._device = ctx.device

    def predict(self, batch: RatingBatch) -> torch.Tensor:
        if self._mean is None:
            raise RuntimeError("GlobalMean.predict() called before fit()")
        return torch.full(
            batch.users.shape, self._mean, dtype=torch.float32, device=batch.users.device
        )
