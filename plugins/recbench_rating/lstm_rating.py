"""An LSTM over a user's rated items, predicting the rating of the next item."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from recbench.plugin import (
    PADDING_ITEM,
    RatingBatch,
    RatingEvents,
    RatingFitContext,
    RatingHistory,
    TrainingHistory,
    ragged_indices,
)
from recbench_rating.training import (
    RatingTrainingOptions,
    check_at_least_one,
    check_dropout,
    fit_rating_network,
    small_normal_,
)

#: Mini-batches whose windows are sorted by length together (less padding per batch).
BUCKET_BATCHES = 20


@dataclass(frozen=True)
class LSTMRatingOptions(RatingTrainingOptions):
    """Options of ``lstm_rating``: the trainer's (:class:`RatingTrainingOptions`; here
    ``batch_size`` counts training sequences), the item embedding size ``dim``, the LSTM's
    ``hidden`` size, dropout on its state, and ``max_history``: how many of the most recent
    earlier training events it reads (``none``: all). With a ``max_history`` the users'
    training sequences are cut into windows of that length for training. ``l2`` weighs the
    squared norms of the predicted items' embeddings and biases."""

    dim: int = 32
    hidden: int = 64
    dropout: float = 0.2
    max_history: int | None = None
    batch_size: int = 32
    learning_rate: float = 3e-3
    l2: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least_one(self, "dim", "hidden")
        check_dropout(self.dropout)
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"max_history must be none or at least 1, got {self.max_history}")


class LSTMRatingNetwork(nn.Module):
    """LSTM over ``x_t = [e_t ; (r_t - μ) e_t ; r_t - μ]`` (the embedding of an earlier
    item, the same scaled by its centred rating, and the centred rating); its state ``h``
    after the history gives a taste vector and a bias, ``[v ; b] = W dropout(h) + c``, and
    ``r̂(i) = μ + b + b_i + ⟨v, q_i⟩``. An empty history has the state 0."""

    def __init__(self, n_items: int, dim: int, hidden: int, dropout: float, mean: float):
        super().__init__()
        self.inputs = nn.Embedding(n_items + 1, dim, padding_idx=PADDING_ITEM)
        self.lstm = nn.LSTM(2 * dim + 1, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.taste = nn.Linear(hidden, dim + 1)
        self.items = nn.Embedding(n_items + 1, dim)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        small_normal_(self.inputs.weight, 0.1)
        small_normal_(self.items.weight, 0.1)
        with torch.no_grad():
            self.inputs.weight[PADDING_ITEM].zero_()
        nn.init.zeros_(self.item_bias.weight)
        self.mean = float(mean)

    def outputs(self, items: Tensor, ratings: Tensor) -> Tensor:
        """``[B, T, hidden]``: the state after each event of right-padded histories."""
        embedded = self.inputs(items)
        centred = (ratings - self.mean).unsqueeze(-1)
        steps = torch.cat([embedded, centred * embedded, centred], dim=-1)
        hidden, _ = self.lstm(steps)
        return hidden

    def rate(self, states: Tensor, items: Tensor) -> Tensor:
        """The predicted ratings of ``items [...]`` for the states ``[..., hidden]``."""
        taste = self.taste(self.dropout(states))
        vector, bias = taste[..., :-1], taste[..., -1]
        interaction = (vector * self.items(items)).sum(-1)
        return self.mean + bias + self.item_bias(items).squeeze(-1) + interaction

    def penalty(self, items: Tensor) -> Tensor:
        """Squared norms of the predicted items' embeddings and biases, ``[...]``."""
        return self.items(items).square().sum(-1) + self.item_bias(items).squeeze(-1).square()


def training_windows(history: RatingHistory, length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every user's training sequence cut into consecutive windows of at most ``length``
    events (``None``: one window per user): ``(starts, lengths)`` in the history arrays."""
    sizes = history.lengths
    users = np.flatnonzero(sizes > 0)
    if length is None:
        return history.offsets[users].astype(np.int64), sizes[users].astype(np.int64)
    per_user = -(-sizes[users] // length)
    index = ragged_indices(np.zeros_like(per_user), per_user)
    starts = np.repeat(history.offsets[users], per_user) + index * length
    ends = np.repeat(history.offsets[users] + sizes[users], per_user)
    return starts.astype(np.int64), np.minimum(ends - starts, length).astype(np.int64)


class LSTMRating:
    """An LSTM reads a user's earlier (item, rating) pairs and predicts the next rating.

    For an event of user ``u`` on item ``i`` it sees exactly what the rating protocol
    gives it (:mod:`recbench.tasks.rating.evaluation`): ``u``'s **training** events before the event in
    time, at most ``max_history`` of the most recent, as (item, scaled rating) pairs, plus
    the item ``i`` to rate -- not the user id, and no validation or test rating. At test
    time the history is therefore all of the user's training events before the test
    event. The LSTM's state after the history gives a taste vector and a bias, matched
    with the item's embedding and bias (:class:`LSTMRatingNetwork`). Training is teacher
    forced over each user's training sequence: every training event is predicted from
    the state after the training events before it, so the model trains on the same
    inputs it is tested on. Adam on the squared error, early stopping on the validation
    RMSE.

    References
    ----------
    Cloudera Fast Forward Labs, "PyTorch for Recommenders 101", blog post, 10 April 2018
    (the LSTM over a user's sequence of items and ratings).
    S. Hochreiter and J. Schmidhuber, "Long short-term memory", Neural Computation 9(8),
    1997.
    C.-Y. Wu, A. Ahmed, A. Beutel, A. J. Smola and H. Jing, "Recurrent recommender
    networks", WSDM 2017.
    """

    id = "lstm_rating"
    summary = "Rating prediction: an LSTM over the user's earlier (item, rating) pairs"
    version = "1"
    task: ClassVar[str] = "rating"
    Options = LSTMRatingOptions

    def __init__(self, options: LSTMRatingOptions | None = None):
        self.options = options or LSTMRatingOptions()
        self.network: LSTMRatingNetwork | None = None
        self.training: TrainingHistory | None = None

    @property
    def max_history(self) -> int | None:
        return self.options.max_history

    def fit(self, train: RatingEvents, valid: RatingEvents | None, ctx: RatingFitContext) -> None:
        options = self.options
        torch.manual_seed(ctx.seed)
        network = LSTMRatingNetwork(
            ctx.n_items, options.dim, options.hidden, options.dropout, ctx.mean_rating
        )
        self.network = network.to(ctx.device)
        history = train.history
        starts, lengths = training_windows(history, options.max_history)
        items = torch.as_tensor(history.items, dtype=torch.int64, device=ctx.device)
        ratings = torch.as_tensor(history.ratings, dtype=torch.float32, device=ctx.device)

        def epoch(generator: torch.Generator) -> Iterable[tuple[Tensor, int]]:
            for rows in _length_bucketed_batches(lengths, options.batch_size, generator):
                width = int(lengths[rows].max())
                columns = np.arange(width, dtype=np.int64)
                real = columns[None, :] < lengths[rows, None]
                source = np.where(real, starts[rows, None] + columns[None, :], 0)
                mask = torch.as_tensor(real, device=ctx.device)
                index = torch.as_tensor(source, device=ctx.device)
                batch_items = torch.where(mask, items[index], PADDING_ITEM)
                batch_ratings = torch.where(mask, ratings[index], 0.0)
                outputs = network.outputs(batch_items, batch_ratings)
                before = torch.cat([torch.zeros_like(outputs[:, :1]), outputs[:, :-1]], dim=1)
                error = network.rate(before, batch_items) - batch_ratings
                weights = mask.to(error.dtype)
                count = weights.sum()
                loss = (
                    (error.square() + options.l2 * network.penalty(batch_items)) * weights
                ).sum()
                yield loss / count, int(count)

        self.training = fit_rating_network(
            self, network, epoch, len(starts), ctx, options, name=self.id
        )

    def predict(self, batch: RatingBatch) -> Tensor:
        if self.network is None:
            raise RuntimeError("LSTMRating.predict() called before fit()")
        network = self.network
        lengths = batch.history_lengths
        width = batch.history_items.shape[1]
        hidden = network.lstm.hidden_size
        states = torch.zeros(len(lengths), hidden, device=lengths.device)
        if width > 0 and bool((lengths > 0).any()):
            # Left-padded -> right-padded, so that the state after the last real event is
            # the output at position length - 1 (the LSTM never reads what follows it).
            columns = torch.arange(width, device=lengths.device)
            source = (columns[None, :] + (width - lengths)[:, None]).clamp(max=width - 1)
            real = columns[None, :] < lengths[:, None]
            items = torch.where(real, batch.history_items.gather(1, source), PADDING_ITEM)
            ratings = torch.where(real, batch.history_ratings.gather(1, source), 0.0)
            outputs = network.outputs(items, ratings)
            last = (lengths - 1).clamp(min=0)
            final = outputs[torch.arange(len(lengths), device=lengths.device), last]
            states = torch.where((lengths > 0)[:, None], final, states)
        return network.rate(states, batch.items)


def _length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator
) -> Iterable[np.ndarray]:
    """Windows in a seeded random order, sorted by length within buckets of
    :data:`BUCKET_BATCHES` batches so that a batch holds windows of similar length;
    the batches come in a random order."""
    order = torch.randperm(len(lengths), generator=generator).numpy()
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for first in range(0, len(order), bucket):
        chunk = order[first : first + bucket]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for position in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[position]
