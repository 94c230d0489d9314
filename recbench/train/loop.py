"""The one epoch loop: epochs, validation, early stopping, the best weights and their
checkpoint.

Every trainer in recbench runs its epochs through :class:`EpochLoop`: the next-item
trainer (:func:`recbench.train.trainer.fit_network`) and the rating models'. A trainer
supplies one epoch (:data:`TrainEpoch`: train on every mini-batch once, return the mean
training loss per prediction and the number of predictions) and the loop does the rest:

Model selection
    Every ``validate_every`` epochs, and after the last one, ``validate()`` scores the
    validation data with the network in eval mode (never the test data). A finite score
    better than every earlier one (higher, or lower with ``higher_is_better=False``)
    makes the epoch the best, and its weights are kept -- in memory, or as ``best.pt``
    in the checkpoint folder (weights only, written atomically, read back with
    ``weights_only=True``). Training stops after ``patience`` validations without
    improvement (0: never early).

The end
    The network is left in eval mode with the weights of the best epoch. Without
    validation every epoch runs and the last weights stay (and are written to
    ``best.pt`` when there is a checkpoint folder).

Failures
    A training loss that is NaN or infinite raises :class:`TrainingDiverged`; the runner
    marks the model's cells failed and goes on with the next model. An epoch may check
    its running loss itself, batch by batch (:meth:`EpochLoop.check_finite`). When an
    earlier epoch was validated, the divergence ends training as early stopping does: the
    weights of the best validated epoch are restored and kept (a logged line says so,
    ``TrainingHistory.diverged`` records it), since the model selection had already
    chosen them over every later epoch.

Progress
    Each epoch is a progress bar of ``steps`` steps and one logged line: the loss, the
    validation score, time and predictions per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from recbench.data.files import atomic_write
from recbench.progress import Progress, ProgressBar

#: The checkpoint file of the best weights, in the checkpoint folder.
CHECKPOINT_FILE = "best.pt"

#: One epoch: ``train_epoch(epoch, bar)`` trains on every mini-batch once (``epoch``
#: counts from 1), advancing ``bar``; returns the mean training loss per prediction and
#: the number of predictions.
TrainEpoch = Callable[[int, ProgressBar], tuple[float, int]]


class Trainable(Protocol):
    """What the loop needs of a network (any ``torch.nn.Module`` has it)."""

    def train(self, mode: bool = True) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Any) -> Any: ...


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochRecord:
    """One epoch: mean training loss per prediction, validation metric (None when not
    validated), wall time of the training (validation excluded), predictions trained on."""

    epoch: int
    loss: float
    metric: float | None
    seconds: float
    predictions: int

    @property
    def predictions_per_second(self) -> float:
        return self.predictions / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class TrainingHistory:
    """What happened during training: one :class:`EpochRecord` per epoch, the best
    epoch and its validation metric, whether training stopped early, the wall time."""

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    #: The divergence that ended training after a validated epoch (its message), if any.
    diverged: str | None = None


class BestWeights:
    """The best weights so far: in memory, or as ``best.pt`` in a folder (written
    atomically, read back with ``weights_only=True``)."""

    def __init__(self, folder: Path | None):
        self.path = None if folder is None else folder / CHECKPOINT_FILE
        self._state: dict[str, Tensor] | None = None

    def save(self, network: Trainable) -> None:
        state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if self.path is None:
            self._state = state
        else:
            atomic_write(self.path, lambda sink: torch.save(state, sink))

    def restore(self, network: Trainable, device: torch.device) -> None:
        if self.path is not None:
            state = torch.load(self.path, map_location=device, weights_only=True)
        else:
            assert self._state is not None, "restore() before save()"
            state = self._state
        network.load_state_dict(state)


@dataclass(frozen=True)
class EpochLoop:
    """How a model's epochs run (the module docstring describes the loop).

    Parameters
    ----------
    name:
        The model's name in progress lines and messages.
    epochs:
        The most epochs.
    patience:
        Stop after this many validations without improvement (0: never stop early).
    validate_every:
        Validate every this many epochs (and after the last one).
    higher_is_better:
        Whether a higher validation score is better.
    metric_name:
        The validation score's name in progress lines.
    divergence_hint:
        What to do when the loss diverges (the end of the :class:`TrainingDiverged`
        message).
    """

    name: str
    epochs: int
    patience: int
    validate_every: int = 1
    higher_is_better: bool = True
    metric_name: str = "validation metric"
    divergence_hint: str = "lower the learning rate"

    def check_finite(self, loss: float, epoch: int, batch: int | None = None) -> None:
        """Raise :class:`TrainingDiverged` unless ``loss`` (a running or mean training
        loss in ``epoch``, after mini-batch ``batch``) is finite."""
        if not math.isfinite(loss):
            where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
            raise TrainingDiverged(
                f"{self.name}: the training loss became {loss} in {where}; {self.divergence_hint}"
            )

    def improves(self, metric: float, best: float | None) -> bool:
        """Whether the validation score ``metric`` beats ``best`` (None: nothing yet)."""
        if not math.isfinite(metric):
            return False
        if best is None:
            return True
        return metric > best if self.higher_is_better else metric < best

    def run(
        self,
        network: Trainable,
        train_epoch: TrainEpoch,
        *,
        steps: int,
        validate: Callable[[], float] | None,
        checkpoint_dir: Path | None,
        device: torch.device,
        progress: Progress,
    ) -> TrainingHistory:
        """Train ``network`` epoch by epoch with ``train_epoch``.

        Parameters
        ----------
        network:
            The module whose weights are kept and restored (on ``device``).
        train_epoch:
            One epoch (:data:`TrainEpoch`).
        steps:
            The length of an epoch's progress bar.
        validate:
            The validation score of the network as it is (``None``: no validation).
        checkpoint_dir:
            Where ``best.pt`` goes (``None``: the best weights stay in memory).
        device:
            Where the restored weights go.
        progress:
            Shows the bars and the lines.

        Returns
        -------
        TrainingHistory
            The network is left in eval mode with the best validated weights (the last
            ones without validation).

        Raises
        ------
        TrainingDiverged
            When the training loss becomes NaN or infinite before any validated epoch.
        """
        started = time.perf_counter()
        history = TrainingHistory()
        best = BestWeights(checkpoint_dir)
        failed_validations = 0
        for epoch in range(1, self.epochs + 1):
            network.train()
            epoch_started = time.perf_counter()
            try:
                with progress.task(
                    f"Training {self.name}: epoch {epoch}/{self.epochs}", total=steps
                ) as bar:
                    loss, predictions = train_epoch(epoch, bar)
                self.check_finite(loss, epoch)
            except TrainingDiverged as exc:
                if history.best_epoch is None or history.best_metric is None:
                    raise
                history.diverged = str(exc)
                progress.log(
                    f"{exc}: stopping and keeping the weights of the best epoch, "
                    f"{history.best_epoch} ({self.metric_name} {history.best_metric:.4f})",
                    style="yellow",
                )
                break
            seconds = time.perf_counter() - epoch_started
            metric: float | None = None
            improved = False
            if validate is not None and (epoch % self.validate_every == 0 or epoch == self.epochs):
                network.train(False)
                metric = float(validate())
                if self.improves(metric, history.best_metric):
                    history.best_metric, history.best_epoch = metric, epoch
                    best.save(network)
                    failed_validations, improved = 0, True
                else:
                    failed_validations += 1
            record = EpochRecord(epoch, loss, metric, seconds, predictions)
            history.epochs.append(record)
            self._log_epoch(progress, record, improved)
            if self.patience and failed_validations >= self.patience:
                history.stopped_early = True
                progress.log(
                    f"{self.name}: stopping early, no improvement of {self.metric_name} in "
                    f"{self.patience} validations (best {history.best_metric:.4f} "
                    f"at epoch {history.best_epoch})"
                )
                break
        if history.best_epoch is not None:
            best.restore(network, device)
        elif checkpoint_dir is not None:  # not validated: keep the final weights
            best.save(network)
        network.train(False)
        history.seconds = time.perf_counter() - started
        return history

    def _log_epoch(self, progress: Progress, record: EpochRecord, improved: bool) -> None:
        shown = "" if record.metric is None else f", {self.metric_name} {record.metric:.4f}"
        progress.log(
            f"{self.name} epoch {record.epoch}/{self.epochs}: loss {record.loss:.5g}{shown}"
            f"{' (best)' if improved else ''}, {record.seconds:.1f} s, "
            f"{record.predictions_per_second:,.0f} predictions/s"
        )
