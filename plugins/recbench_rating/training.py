"""Training of the rating models: Adam on the mini-batch losses a model yields, in
recbench's shared epoch loop.

A model describes one epoch as an iterable of mini-batch losses (:data:`EpochSteps`);
:func:`fit_rating_network` takes an Adam step on each and hands the epochs to
:class:`recbench.train.loop.EpochLoop`, which validates after every epoch (the RMSE,
lower is better), stops after ``patience`` epochs without a better RMSE, keeps the best
weights (``best.pt``, weights only, when the context gives a checkpoint folder) and
restores them at the end. The models that read no history and rate (user, item) pairs
share their whole ``fit`` and ``predict`` (:class:`EventRatingModel`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recbench.plugin import (
    EpochLoop,
    ProgressBar,
    RatingBatch,
    RatingEvents,
    RatingFitContext,
    TrainingHistory,
)

#: One epoch: given a seeded generator, yields ``(loss, n_predictions)`` per mini-batch.
EpochSteps = Callable[[torch.Generator], Iterable[tuple[Tensor, int]]]


@dataclass(frozen=True)
class RatingTrainingOptions:
    """Options shared by the trained rating models.

    epochs:
        The most epochs to train.
    batch_size:
        Training examples per mini-batch (events; users for ``lstm_rating``).
    learning_rate:
        Adam's step size.
    l2:
        Weight of the L2 penalty on the embeddings used by a mini-batch (added to the
        mean squared error on the [0, 1] scale).
    patience:
        Stop after this many epochs without a better validation RMSE (0: never stop
        early). Without a validation share every epoch is trained.
    """

    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 3e-3
    l2: float = 0.0
    patience: int = 3

    def __post_init__(self) -> None:
        check_at_least_one(self, "epochs", "batch_size")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.l2 < 0:
            raise ValueError(f"l2 must not be negative, got {self.l2}")
        if self.patience < 0:
            raise ValueError(f"patience must not be negative, got {self.patience}")


def check_at_least_one(options: object, *names: str) -> None:
    """Raise ``ValueError`` when one of the integer options ``names`` is below 1."""
    for name in names:
        value = getattr(options, name)
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def check_dropout(dropout: float) -> None:
    """Raise ``ValueError`` unless ``dropout`` is a rate in ``[0, 1)``."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def event_tensors(events: RatingEvents, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The users, items (int64) and scaled ratings (float32) of ``events`` on ``device``."""
    return (
        torch.as_tensor(events.users, dtype=torch.int64, device=device),
        torch.as_tensor(events.items, dtype=torch.int64, device=device),
        torch.as_tensor(events.ratings, dtype=torch.float32, device=device),
    )


def event_batches(
    n_events: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterable[Tensor]:
    """A seeded random order of ``0 .. n_events - 1``, in mini-batches on ``device``."""
    order = torch.randperm(n_events, generator=generator).to(device)
    for first in range(0, n_events, batch_size):
        yield order[first : first + batch_size]


def fit_rating_network(
    model: Any,
    network: nn.Module,
    epoch: EpochSteps,
    n_examples: int,
    ctx: RatingFitContext,
    options: RatingTrainingOptions,
    *,
    name: str,
) -> TrainingHistory:
    """Train ``network`` (already on ``ctx.device``) with Adam, epoch by epoch.

    An epoch covers ``n_examples`` training examples in mini-batches of
    ``options.batch_size`` (the length of its progress bar). ``ctx.validate(model)``
    (the validation RMSE; ``model.predict`` must use ``network``) runs after every
    epoch; the weights of the best epoch are restored at the end.

    Raises
    ------
    TrainingDiverged
        When the training loss becomes NaN or infinite.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    generator = torch.Generator().manual_seed(ctx.seed)

    def train_epoch(number: int, bar: ProgressBar) -> tuple[float, int]:
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        count = 0
        for loss, size in epoch(generator):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().to(torch.float64) * size
            count += size
            bar.advance()
        return float(total) / max(count, 1), count

    validate = ctx.validate
    loop = EpochLoop(
        name,
        epochs=options.epochs,
        patience=options.patience,
        higher_is_better=False,
        metric_name="validation rmse",
    )
    return loop.run(
        network,
        train_epoch,
        steps=-(-n_examples // options.batch_size),
        validate=None if validate is None else functools.partial(validate, model),
        checkpoint_dir=ctx.checkpoint_dir,
        device=ctx.device,
        progress=ctx.progress,
    )


def small_normal_(weight: Tensor, std: float) -> None:
    """Initialise ``weight`` from ``N(0, std**2)`` in place, without autograd."""
    with torch.no_grad():
        weight.normal_(0.0, std)


class EventRatingModel:
    """A rating model that reads no history: a network rates (user, item) pairs.

    A subclass names its ``Options`` (a :class:`RatingTrainingOptions`) and builds its
    network in :meth:`build_network`: ``network(users, items)`` gives the predicted
    ratings ``[B]`` of the pairs and ``network.penalty(users, items)`` the L2 penalty
    of a mini-batch (a scalar). :meth:`fit` trains it on mini-batches of training
    events in a seeded random order, on the mean squared error of the scaled ratings
    plus ``options.l2`` times the penalty (:func:`fit_rating_network`).
    """

    id: ClassVar[str]
    Options: ClassVar[type[RatingTrainingOptions]]

    def __init__(self, options: RatingTrainingOptions | None = None):
        self.options = options or self.Options()
        self.network: nn.Module | None = None
        self.training: TrainingHistory | None = None

    @property
    def max_history(self) -> int:
        return 0

    def build_network(self, ctx: RatingFitContext) -> nn.Module:
        """A freshly initialised network for the users and items of ``ctx``."""
        raise NotImplementedError

    def fit(self, train: RatingEvents, valid: RatingEvents | None, ctx: RatingFitContext) -> None:
        options = self.options
        torch.manual_seed(ctx.seed)
        network = self.build_network(ctx)
        self.network = network.to(ctx.device)
        users, items, ratings = event_tensors(train, ctx.device)

        def epoch(generator: torch.Generator) -> Iterable[tuple[Tensor, int]]:
            for index in event_batches(len(train), options.batch_size, generator, ctx.device):
                u, i = users[index], items[index]
                error = network(u, i) - ratings[index]
                loss = error.square().mean() + options.l2 * network.penalty(u, i)
                yield loss, len(index)

        self.training = fit_rating_network(
            self, network, epoch, len(train), ctx, options, name=self.id
        )

    def predict(self, batch: RatingBatch) -> Tensor:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__}.predict() called before fit()")
        return self.network(batch.users, batch.items)
