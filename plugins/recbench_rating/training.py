"""The shared training loop of the rating models: mini-batches, Adam on the squared
error, early stopping on the validation RMSE, the best weights kept.

A model describes one epoch as an iterable of mini-batch losses (:data:`EpochSteps`); the
loop does the rest. The models that read no history and rate (user, item) pairs share
their whole ``fit`` and ``predict`` (:class:`EventRatingModel`). Each epoch is shown as a progress bar and logged with its training
loss and validation RMSE; training stops after ``patience`` epochs without a better
validation RMSE, and the network ends with the weights of the best epoch (saved as
``best.pt``, weights only, when the context gives a checkpoint folder).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recbench.plugin import RatingBatch, RatingEvents, RatingFitContext, TrainingDiverged

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


@dataclass
class TrainingRecord:
    """What happened during training: per-epoch loss and validation RMSE."""

    losses: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_rmse: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0


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


def n_batches(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def fit_rating_network(
    model: Any,
    network: nn.Module,
    epoch: EpochSteps,
    n_examples: int,
    ctx: RatingFitContext,
    options: RatingTrainingOptions,
    *,
    name: str,
) -> TrainingRecord:
    """Train ``network`` (already on ``ctx.device``) with Adam, epoch by epoch.

    An epoch covers ``n_examples`` training examples in mini-batches of
    ``options.batch_size`` (the length of its progress bar). ``ctx.validate(model)`` (the validation RMSE; ``model.predict`` must use ``network``)
    runs after every epoch; the weights of the best epoch are restored at the end.

    Raises
    ------
    TrainingDiverged
        When the training loss becomes NaN or infinite.
    """
    started = time.perf_counter()
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    generator = torch.Generator().manual_seed(ctx.seed)
    record = TrainingRecord()
    best: dict[str, Tensor] | None = None
    without_improvement = 0
    progress = ctx.progress
    for number in range(1, options.epochs + 1):
        network.train()
        epoch_started = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        count = 0
        with progress.task(
            f"Training {name}: epoch {number}/{options.epochs}",
            total=n_batches(n_examples, options.batch_size),
        ) as bar:
            for loss, size in epoch(generator):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().to(torch.float64) * size
                count += size
                bar.advance()
        value = float(total) / max(count, 1)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{name}: the training loss became {value} in epoch {number}; "
                "lower the learning rate"
            )
        record.losses.append(value)
        network.eval()
        shown = ""
        if ctx.validate is not None:
            rmse = float(ctx.validate(model))
            record.validation.append(rmse)
            improved = record.best_rmse is None or rmse < record.best_rmse
            if improved:
                record.best_rmse, record.best_epoch = rmse, number
                best = {k: v.detach().clone() for k, v in network.state_dict().items()}
                without_improvement = 0
            else:
                without_improvement += 1
            shown = f", validation rmse {rmse:.4f}{' (best)' if improved else ''}"
        progress.log(
            f"{name} epoch {number}/{options.epochs}: loss {value:.5f}{shown}, "
            f"{time.perf_counter() - epoch_started:.1f} s"
        )
        if (
            options.patience
            and ctx.validate is not None
            and without_improvement >= options.patience
        ):
            record.stopped_early = True
            progress.log(
                f"{name}: stopping early, no better validation rmse in {options.patience} "
                f"epochs (best {record.best_rmse:.4f} at epoch {record.best_epoch})"
            )
            break
    if best is not None:
        network.load_state_dict(best)
    network.eval()
    if ctx.checkpoint_dir is not None:
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), ctx.checkpoint_dir / "best.pt")
    record.seconds = time.perf_counter() - started
    return record


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
        self.training: TrainingRecord | None = None

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
