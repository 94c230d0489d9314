"""The batches models receive: input sequences of queries, rating events to predict."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceBatch:
    """Input sequences of a batch of queries, as a model receives them.

    ``items`` is ``[B, L]`` (int64, on the model's device), **left-padded** with 0 so that
    the most recent item is always in the last column; ``lengths`` is ``[B]``, the number
    of real items in each row (at least 1). ``L`` never exceeds the model's ``max_length``.
    """

    items: torch.Tensor
    lengths: torch.Tensor


@dataclass(frozen=True)
class RatingBatch:
    """A batch of rating events to predict, as a rating model receives them.

    ``users`` and ``items`` are int64 ``[B]`` (user rows ``0..n_users - 1``, item ids
    ``1..n_items``), on the model's device. The history of each event is the user's
    *training* events that come before it in the user's chronological order, at most the
    model's ``max_history`` most recent of them: ``history_items`` int64 ``[B, L]`` and
    ``history_ratings`` float32 ``[B, L]`` (scaled to [0, 1]) are **left-padded** with 0
    so that the most recent training event is in the last column, and ``history_lengths``
    ``[B]`` counts the real ones (0 for an event without earlier training events). ``L``
    is 0 for a model that reads no history.
    """

    users: torch.Tensor
    items: torch.Tensor
    history_items: torch.Tensor
    history_ratings: torch.Tensor
    history_lengths: torch.Tensor
