"""Rating-prediction metrics: RMSE and MAE (the rating track, :mod:`recbench.tasks.rating.evaluation`).

Both receive the predicted and the actual ratings of the test events on the [0, 1] scale
(float64 ``[N]``) and return one value per event, which recbench keeps for paired tests:

``rmse``
    The squared error ``(predicted - actual) ** 2`` of each event; the reported value is
    the square root of their mean (``aggregation = "root_mean"``), i.e. the RMSE over all
    test events (corpus-level, not a mean of per-user RMSEs).
``mae``
    The absolute error ``|predicted - actual|`` of each event; the reported value is their
    mean.

Both are in rating units, so recbench also reports them in stars (``rmse_stars``,
``mae_stars``: the value times the width of the star scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from recbench.plugin import RatingMetricContext


@dataclass(frozen=True)
class NoOptions:
    """This metric has no options."""


class _RatingError:
    """What the rating error metrics share: their metadata, and a value per event that is
    a function (:meth:`error`) of the difference between the predicted and the actual
    rating."""

    version: ClassVar[str] = "1"
    Options: ClassVar[type] = NoOptions
    task: ClassVar[str] = "rating"
    per_query: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = False
    bounds: ClassVar[tuple[float, float | None]] = (0.0, None)
    rating_units: ClassVar[bool] = True

    def __init__(self, options: object | None = None):
        self.options = options if options is not None else self.Options()

    def __call__(
        self, predicted: torch.Tensor, actual: torch.Tensor, ctx: RatingMetricContext
    ) -> torch.Tensor:
        return self.error(predicted.to(torch.float64) - actual.to(torch.float64))

    @staticmethod
    def error(difference: torch.Tensor) -> torch.Tensor:
        """The per-event error of ``difference = predicted - actual`` (float64 ``[N]``)."""
        raise NotImplementedError


class RootMeanSquaredError(_RatingError):
    """Root mean squared error of predicted ratings.

    Per event, the squared error ``(r̂ - r) ** 2``; the core reports
    ``sqrt(mean over events)``, so that large errors weigh more than in :class:`MeanAbsoluteError`.

    References
    ----------
    J. L. Herlocker, J. A. Konstan, L. G. Terveen and J. T. Riedl, "Evaluating
    collaborative filtering recommender systems", ACM TOIS 22(1), 2004.
    """

    id = "rmse"
    headline = 0
    summary = "Root mean squared error of predicted ratings (per event: the squared error)"
    aggregation: ClassVar[str] = "root_mean"

    @staticmethod
    def error(difference: torch.Tensor) -> torch.Tensor:
        return difference.square()


class MeanAbsoluteError(_RatingError):
    """Mean absolute error of predicted ratings.

    Per event, the absolute error ``|r̂ - r|``; the core reports the mean over events.

    References
    ----------
    J. L. Herlocker, J. A. Konstan, L. G. Terveen and J. T. Riedl, "Evaluating
    collaborative filtering recommender systems", ACM TOIS 22(1), 2004.
    """

    id = "mae"
    headline = 1
    summary = "Mean absolute error of predicted ratings"
    aggregation: ClassVar[str] = "mean"

    @staticmethod
    def error(difference: torch.Tensor) -> torch.Tensor:
        return difference.abs()


RATING_METRICS = (RootMeanSquaredError, MeanAbsoluteError)
