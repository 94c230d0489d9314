"""Evaluation protocols: which queries a held-out user's sequence gives.

For a user with chronological items ``s`` (0-based, length ``n``) a query with input
length ``p`` means:

- input: ``s[:p]``, every item of it counts as seen (the model receives only its last
  ``max_length`` items);
- next item: ``s[p]`` (for ``sps``);
- targets: ``s[p : p + n_targets]`` (for hit, mrr, ndcg, precision...);
- remaining: ``s[p:]`` (for recall).

The protocols:

``half-split``
    ``p = n // 2``; the targets are all the rest (``n_targets = n - p``).
``iterative`` (next-item)
    One query per ``t = 1 .. n - 1``: ``p = t`` with the single target ``s[t]``; recall
    counts the remaining ``s[t:]``. Long users give many queries, so means are over
    queries, not users.
``last-item``
    ``p = n - 1``, the single target ``s[n - 1]``.

Users with fewer than 2 items give no query.

``rating`` (:data:`RATING_PROTOCOL`) is no ranking protocol: it predicts held-out ratings
and is defined and evaluated in :mod:`recbench.tasks.rating.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from recbench.data.batches import SequenceBatch
from recbench.data.interactions import PADDING_ITEM, Sequences, ragged_indices, ragged_ranges
from recbench.errors import ConfigError, close_matches

PROTOCOLS: tuple[str, ...] = ("half-split", "iterative", "last-item")
PROTOCOL_ALIASES: dict[str, str] = {
    "iterative-next-item": "iterative",
    "next-item": "iterative",
    "last": "last-item",
}
#: The rating-prediction protocol (:mod:`recbench.tasks.rating.evaluation`): predict held-out ratings
#: instead of ranking items. A run's protocols are either ranking protocols or this one.
RATING_PROTOCOL = "rating"


def canonical_protocol(name: str) -> str:
    """The canonical protocol name of ``name`` (a name or an alias).

    Raises
    ------
    ConfigError
        For an unknown name, listing the close matches.
    """
    canonical = PROTOCOL_ALIASES.get(name, name)
    if canonical not in PROTOCOLS and canonical != RATING_PROTOCOL:
        raise ConfigError(
            f"unknown protocol '{name}'",
            hint=close_matches(name, (*PROTOCOLS, *PROTOCOL_ALIASES, RATING_PROTOCOL)),
        )
    return canonical


@dataclass(frozen=True)
class Queries:
    """The queries of a protocol over a set of sequences.

    Parameters
    ----------
    protocol:
        The canonical protocol name.
    sequences:
        The sequences the queries come from.
    row:
        int64 ``[Q]``: the user's row in ``sequences``.
    input_length:
        int64 ``[Q]``: ``p``, the length of the input prefix ``s[:p]`` (at least 1).
    n_targets:
        int64 ``[Q]``: the targets are ``s[p : p + n_targets]`` (at least 1).
    """

    protocol: str
    sequences: Sequences
    row: np.ndarray
    input_length: np.ndarray
    n_targets: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def select(self, index: np.ndarray) -> Queries:
        """The queries at positions ``index`` (int ``[Q']``) of this set, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            row=self.row[index],
            input_length=self.input_length[index],
            n_targets=self.n_targets[index],
        )

    @cached_property
    def distinct_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct items among each query's targets and remaining items.

        Returns
        -------
        (n_targets, n_remaining):
            int64 ``[Q]``: the number of distinct items in ``s[p : p + n_targets]`` and in
            ``s[p:]``. They differ from ``n_targets`` and ``n - p`` only when a user's
            sequence repeats items.
        """
        return _distinct_counts(self)

    @property
    def n_users(self) -> int:
        """The number of distinct users with at least one query."""
        return len(np.unique(self.row))

    def model_inputs(
        self, index: np.ndarray, max_length: int | None, device: torch.device | str
    ) -> SequenceBatch:
        """The model's input for the queries ``index``, left-padded.

        Parameters
        ----------
        index:
            int ``[B]``: positions of queries in this set.
        max_length:
            The longest input the model reads; longer prefixes keep their most recent
            items. ``None``: the whole prefix.
        device:
            Where the tensors go.

        Returns
        -------
        SequenceBatch
            ``items`` int64 ``[B, L]`` with ``L = min(max(p), max_length)``, padded with 0
            on the left so the most recent item is in the last column; ``lengths`` int64
            ``[B]``.
        """
        index = np.asarray(index, dtype=np.int64)
        prefix_end = self.sequences.offsets[self.row[index]] + self.input_length[index]
        lengths = self.input_length[index]
        if max_length is not None:
            lengths = np.minimum(lengths, max_length)
        width = int(lengths.max()) if len(index) else 0
        # Column c of a row holds s[p - width + c]; columns before width - length are padding.
        columns = np.arange(width, dtype=np.int64)
        source = prefix_end[:, None] - width + columns[None, :]
        is_item = columns[None, :] >= (width - lengths)[:, None]
        items = np.where(is_item, self.sequences.items[np.where(is_item, source, 0)], PADDING_ITEM)
        return SequenceBatch(
            items=torch.from_numpy(items.astype(np.int64, copy=False)).to(device),
            lengths=torch.from_numpy(lengths.astype(np.int64, copy=False)).to(device),
        )

    def items_of(self, index: np.ndarray, device: torch.device | str) -> QueryItems:
        """The items each query of ``index`` has seen and has still to see, on ``device``.

        Built on the device from the sequences' items (copied there once per device), so
        that ranking does no per-query work on the host: a user's iterative queries read
        its whole sequence each, ``O(n²)`` items per user in all, which at ML-20M size
        would be tens of seconds of host work per evaluation before a GPU could rank.
        """
        index = np.asarray(index, dtype=np.int64)
        device = torch.device(device)
        rows = self.row[index]
        starts = self.sequences.offsets[rows].astype(np.int64)
        seen = self.input_length[index].astype(np.int64)
        remaining = self.sequences.offsets[rows + 1].astype(np.int64) - starts - seen
        items = self._items_on(device)
        seen_position, seen_events, _ = _ragged(starts, seen, device)
        remaining_position, remaining_events, offset = _ragged(starts + seen, remaining, device)
        return QueryItems(
            seen_position=seen_position,
            seen_item=items.index_select(0, seen_events),
            remaining_position=remaining_position,
            remaining_item=items.index_select(0, remaining_events),
            remaining_offset=offset,
        )

    def _items_on(self, device: torch.device) -> torch.Tensor:
        """The sequences' items as an int64 tensor on ``device`` (made once per device)."""
        if device not in self._device_items:
            items = np.asarray(self.sequences.items, dtype=np.int64)
            self._device_items[device] = torch.from_numpy(items).to(device)
        return self._device_items[device]

    @cached_property
    def _device_items(self) -> dict[torch.device, torch.Tensor]:
        return {}


def _ragged(
    starts: np.ndarray, lengths: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row, event, offset)`` on ``device`` for the ranges ``starts[r] + [0, lengths[r])``,
    row by row: ``row`` is ``r``, ``event`` the index, ``offset`` its place in the range.

    Built where it is used: with numpy on a CPU (several times faster there than torch's
    ``repeat_interleave``), with torch on any other device (:func:`_ragged_on_device`),
    whose work is then not held up by the host."""
    if device.type != "cpu":
        return _ragged_on_device(starts, lengths, device)
    events, offset = ragged_ranges(starts, lengths)
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return torch.from_numpy(row), torch.from_numpy(events), torch.from_numpy(offset)


def _ragged_on_device(
    starts: np.ndarray, lengths: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_ragged` computed on ``device``; the total is known on the host, so a GPU
    never waits for it."""
    total = int(lengths.sum())
    lengths_t = torch.from_numpy(lengths).to(device)

    def repeated(values: np.ndarray) -> torch.Tensor:  # values[r], lengths[r] times
        return torch.repeat_interleave(
            torch.from_numpy(values).to(device), lengths_t, output_size=total
        )

    first = np.cumsum(lengths) - lengths  # where each range starts in the output
    steps = torch.arange(total, device=device)
    offset = steps - repeated(first)
    return repeated(np.arange(len(lengths))), steps + repeated(starts - first), offset


class QueryItems(NamedTuple):
    """What :meth:`Queries.items_of` returns: int64 tensors, ordered by query position and
    then by position in the sequence.

    ``seen_position``, ``seen_item``: an item of a query's input prefix ``s[:p]`` (not
    truncated to any ``max_length``) and the query's position in ``index``.
    ``remaining_position``, ``remaining_item``, ``remaining_offset``: an item of
    ``s[p:]``, its query's position, and its offset ``j`` in ``s[p:]`` (``j = 0`` is the
    next item, ``j < n_targets`` a target).
    """

    seen_position: torch.Tensor
    seen_item: torch.Tensor
    remaining_position: torch.Tensor
    remaining_item: torch.Tensor
    remaining_offset: torch.Tensor


def _distinct_counts(queries: Queries) -> tuple[np.ndarray, np.ndarray]:
    """See :attr:`Queries.distinct_counts`. An item is counted at its last occurrence in
    a window: where its next occurrence in the user's sequence lies past the window."""
    sequences = queries.sequences
    first_event = sequences.offsets[0]
    items = sequences.items[first_event : sequences.offsets[-1]]
    starts = sequences.offsets[queries.row] + queries.input_length - first_event
    ends = sequences.offsets[queries.row + 1] - first_event
    user = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    user_item = user * (sequences.n_items + 1) + items
    # Stable: the occurrences of an item of a user stay in sequence order.
    by_user_item = np.argsort(user_item, kind="stable")
    repeats_next = np.diff(user_item[by_user_item]) == 0
    if not repeats_next.any():
        return queries.n_targets.copy(), ends - starts
    n_events = len(items)
    next_occurrence = np.full(n_events, n_events, dtype=np.int64)  # n_events: none
    next_occurrence[by_user_item[:-1][repeats_next]] = by_user_item[1:][repeats_next]
    last_occurrences_before = np.concatenate([[0], np.cumsum(next_occurrence == n_events)])
    n_remaining = last_occurrences_before[ends] - last_occurrences_before[starts]
    window = ragged_indices(starts, queries.n_targets)
    window_end = np.repeat(starts + queries.n_targets, queries.n_targets)
    query = np.repeat(np.arange(len(queries)), queries.n_targets)
    is_last_in_window = next_occurrence[window] >= window_end
    n_targets = np.bincount(query, weights=is_last_in_window, minlength=len(queries))
    return n_targets.astype(np.int64), n_remaining.astype(np.int64)


def build_queries(protocol: str, sequences: Sequences) -> Queries:
    """The queries that ``protocol`` (a name or alias) gives on ``sequences``.

    Queries come in row order (and, for ``iterative``, by increasing ``p`` within a row).

    Raises
    ------
    ConfigError
        For an unknown protocol name.
    """
    protocol = canonical_protocol(protocol)
    if protocol == RATING_PROTOCOL:
        raise ConfigError(
            "the rating protocol builds no ranking queries",
            hint="evaluate rating models with recbench.tasks.rating.evaluation",
        )
    lengths = sequences.lengths
    rows = np.flatnonzero(lengths >= 2).astype(np.int64)
    n = lengths[rows].astype(np.int64)
    if protocol == "half-split":
        input_length = n // 2
        n_targets = n - input_length
    elif protocol == "last-item":
        input_length = n - 1
        n_targets = np.ones_like(n)
    else:
        queries_per_user = n - 1
        rows = np.repeat(rows, queries_per_user)
        input_length = ragged_indices(np.ones_like(n), queries_per_user)
        n_targets = np.ones_like(input_length)
    return Queries(
        protocol=protocol,
        sequences=sequences,
        row=rows,
        input_length=input_length,
        n_targets=n_targets,
    )
