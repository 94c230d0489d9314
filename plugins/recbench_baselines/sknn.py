"""Session-based kNN (SKNN) and its vector-multiplication variant (V-SKNN).

Both compare the input sequence with training sequences, take the ``k`` most similar of
a sample of recent candidates, and score each item by the similarities of the neighbours
that contain it. Here a "session" is a training sequence (a user's history on MovieLens,
a session on click logs).

How a batch is scored, with no Python loop over queries or items:

1. the input items of the batch become a sparse query x item matrix ``Q``;
2. ``Q @ P`` with ``P`` the item x sequence postings, each item's list cut to its
   ``sample_size`` most recent sequences, gives for every query the candidate sequences
   and their overlaps. This is exact: a sequence among the ``sample_size`` most recent
   sequences sharing an item with the query is among the ``sample_size`` most recent
   sequences of each of those items, so the cut lists find every sampled candidate and
   count every shared item;
3. per query, the ``sample_size`` most recent candidates are kept, their similarities
   computed from the overlaps and set sizes, and the ``k`` most similar kept;
4. the neighbours' weights, as a sparse query x sequence matrix, times the sequence x item
   incidence matrix give the dense scores (V-SKNN first finds, for every neighbour, the
   most recent input item it contains, with one vectorised membership test per input
   position).

Sequences are ordered by recency once at ``fit`` (the time of their last event; without
timestamps, the row order), so "most recent" is "smallest sequence number" everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from recbench.plugin import (
    Choice,
    FitContext,
    FloatRange,
    IntRange,
    Queries,
    SequenceBatch,
    Sequences,
)
from recbench_baselines.sparse_scoring import (
    DECAYS,
    Decay,
    batch_arrays,
    decay_by_distance,
    empty_check,
    item_sets,
    row_positions,
    scores_tensor,
)

#: Decimal places similarities are rounded to before neighbours are ranked, so that
#: similarities equal in exact arithmetic but summed in another order stay equal and
#: their tie is broken by recency, not by rounding noise.
SIMILARITY_DECIMALS = 12
#: Candidate (query, sequence) pairs produced at once by ``Q @ P`` (bounds memory; a
#: batch is split into chunks of queries below it).
CANDIDATE_BUDGET = 1 << 23

PositionWeighting = Literal["same", "div", "linear", "log", "quadratic"]


def position_weights(kind: str, position: np.ndarray, length: np.ndarray) -> np.ndarray:
    """V-SKNN's weight of the input item at ``position`` (1 = oldest) of an input of
    ``length`` items (float64).

    ``same`` 1; ``div`` p/n; ``linear`` max(0, 1 - 0.1 (n - p)) (the last item 1, the
    tenth from the end 0.1, older ones 0); ``log`` 1/log10(n - p + 1.7); ``quadratic``
    (p/n)². The reference implementation guards ``linear`` with ``p <= 10``, which agrees
    with this for inputs of up to 10 items and otherwise zeroes the most recent items,
    contrary to the published description of a linear decay towards older items.
    """
    p = np.asarray(position, dtype=np.float64)
    n = np.asarray(length, dtype=np.float64)
    if kind == "same":
        return np.ones(np.broadcast(p, n).shape)
    if kind == "div":
        return p / n
    if kind == "linear":
        return np.maximum(0.0, 1.0 - 0.1 * (n - p))
    if kind == "log":
        return 1.0 / np.log10(n - p + 1.7)
    if kind == "quadratic":
        return (p / n) ** 2
    raise ValueError(f"unknown position weighting '{kind}'")


class RecentSequenceIndex:
    """Training sequences as item sets, numbered by recency (0 = the most recent).

    Attributes
    ----------
    incidence:
        float32 CSR ``[n_sequences, n_items + 1]``: 1 where the sequence has the item.
    postings:
        float64 CSR ``[n_items + 1, n_sequences]`` with sorted indices: the sequences of
        each item, most recent first, cut to ``sample_size`` (all when 0).
    set_sizes:
        float64 ``[n_sequences]``: distinct items per sequence.
    idf:
        float64 ``[n_items + 1]``: ``log(n_sequences / events of the item)``, 0 for
        items without training events (the IDF of the V-SKNN reference implementation).
    """

    def __init__(self, train: Sequences, sample_size: int):
        has_events = np.flatnonzero(train.lengths > 0)
        if train.timestamps is not None and len(has_events):
            last_time = train.timestamps[train.offsets[has_events + 1] - 1]
        else:
            last_time = has_events.astype(np.int64)
        # Most recent first; equal times: the later row first.
        by_recency = has_events[np.lexsort((-has_events, -last_time))]
        self.rows = by_recency
        self.incidence = item_sets(train.select(by_recency))
        self.set_sizes = np.diff(self.incidence.indptr).astype(np.float64)
        # float64: weighted overlaps are summed exactly enough to compare at 12 decimals.
        postings = self.incidence.T.tocsr().astype(np.float64)
        postings.sort_indices()
        if sample_size > 0:
            postings = _first_per_row(postings, sample_size)
        self.postings = postings
        events = train.item_counts().astype(np.float64)
        with np.errstate(divide="ignore"):
            idf = np.log(len(by_recency) / events)
        idf[events == 0] = 0.0
        self.idf = idf

    @property
    def n_sequences(self) -> int:
        return self.incidence.shape[0]


def _first_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """The first ``n`` stored entries of every row (indices sorted)."""
    keep = row_positions(matrix.indptr) < n
    counts = np.minimum(np.diff(matrix.indptr), n)
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


@dataclass(frozen=True)
class _Inputs:
    """The distinct input items of a batch: for each (query, item) pair its query row,
    item, the (1-based) position of its last occurrence, and the input length."""

    n_queries: int
    row: np.ndarray
    item: np.ndarray
    position: np.ndarray
    length: np.ndarray  # [B]

    @classmethod
    def from_batch(cls, items: np.ndarray, lengths: np.ndarray, n_columns: int) -> _Inputs:
        n_rows, width = items.shape
        present = items > 0
        row = np.broadcast_to(np.arange(n_rows, dtype=np.int64)[:, None], items.shape)[present]
        column = np.broadcast_to(np.arange(width, dtype=np.int64), items.shape)[present]
        position = column - (width - lengths[row]) + 1
        keys = row * n_columns + items[present]
        # The last occurrence of a repeated item is its first in reversed order.
        unique_keys, first_reversed = np.unique(keys[::-1], return_index=True)
        position = position[::-1][first_reversed]
        query_row, item = np.divmod(unique_keys, n_columns)
        return cls(n_rows, query_row, item, position, lengths)

    def matrix(self, values: np.ndarray, n_columns: int) -> sp.csr_matrix:
        indptr = np.zeros(self.n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.row, minlength=self.n_queries), out=indptr[1:])
        return sp.csr_matrix(
            (values, self.item.astype(np.int32), indptr), shape=(self.n_queries, n_columns)
        )


@dataclass(frozen=True)
class _Neighbours:
    """The chosen neighbours of a batch: query row, sequence number, similarity."""

    row: np.ndarray
    sequence: np.ndarray
    similarity: np.ndarray


class _NeighbourhoodModel:
    """What SKNN and V-SKNN share: the index, candidate sampling, top-k and scoring."""

    options: SKNNOptions | VSKNNOptions

    def __init__(self) -> None:
        self._index: RecentSequenceIndex | None = None
        self._device = torch.device("cpu")

    @property
    def max_length(self) -> int | None:
        return self.options.max_length

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        self._device = ctx.device
        self._index = RecentSequenceIndex(train, self.options.sample_size)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        empty_check(type(self).__name__, self._index)
        assert self._index is not None
        items, lengths = batch_arrays(batch)
        n_columns = self._index.incidence.shape[1]
        scores = np.zeros((len(items), n_columns), dtype=np.float32)
        for rows in self._chunks(lengths):
            inputs = _Inputs.from_batch(items[rows], lengths[rows], n_columns)
            scores[rows] = self._score_inputs(inputs, self._index)
        return scores_tensor(scores, self._device)

    def _chunks(self, lengths: np.ndarray) -> list[slice]:
        """Slices of queries whose candidate pairs stay within :data:`CANDIDATE_BUDGET`."""
        per_query = np.maximum(lengths, 1) * max(self.options.sample_size, 1)
        if self.options.sample_size == 0 and self._index is not None:
            per_query = np.full(len(lengths), self._index.n_sequences)
        ends = np.cumsum(per_query)
        chunks, start = [], 0
        while start < len(lengths):
            stop = int(
                np.searchsorted(
                    ends, ends[start] - per_query[start] + CANDIDATE_BUDGET, side="right"
                )
            )
            stop = max(stop, start + 1)
            chunks.append(slice(start, stop))
            start = stop
        return chunks

    def _score_inputs(self, inputs: _Inputs, index: RecentSequenceIndex) -> np.ndarray:
        raise NotImplementedError

    def _candidates(
        self, inputs: _Inputs, index: RecentSequenceIndex, weight: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sampled candidates of every query: (query row, sequence, overlap), ordered
        by query, then recency. The overlap sums ``weight`` (positive, one per input
        item) over the shared items, or counts them when ``weight`` is None."""
        n_columns = index.incidence.shape[1]
        values = np.ones(len(inputs.row)) if weight is None else weight
        overlaps = inputs.matrix(values, n_columns) @ index.postings
        overlaps.sort_indices()
        row = np.repeat(np.arange(inputs.n_queries, dtype=np.int64), np.diff(overlaps.indptr))
        sequence = overlaps.indices.astype(np.int64)
        count = overlaps.data.astype(np.float64)
        if self.options.sample_size > 0:
            keep = row_positions(overlaps.indptr) < self.options.sample_size
            row, sequence, count = row[keep], sequence[keep], count[keep]
        return row, sequence, count

    def _nearest(
        self, n_queries: int, row: np.ndarray, sequence: np.ndarray, similarity: np.ndarray
    ) -> _Neighbours:
        """The ``k`` most similar candidates with a positive similarity per query (ties:
        the more recent sequence). Candidates come ordered by query, then recency.

        Similarities are compared at :data:`SIMILARITY_DECIMALS` decimals. Each candidate
        gets one integer key, the rounded similarity followed by its recency rank within
        the query, so one ``topk`` over a padded ``[queries, candidates]`` array picks the
        neighbours deterministically.
        """
        rounded = np.rint(similarity * 10.0**SIMILARITY_DECIMALS).astype(np.int64)
        counts = np.bincount(row, minlength=n_queries)
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        width = int(counts.max()) if len(counts) else 0
        if width == 0:
            empty = np.zeros(0, dtype=np.int64)
            return _Neighbours(empty, empty, np.zeros(0))
        bits = width.bit_length()
        if int(rounded.max()) >= 1 << (62 - bits):
            raise ValueError("similarities too large to rank; lower SIMILARITY_DECIMALS")
        rank = row_positions(indptr)
        keys = np.full((n_queries, width), -1, dtype=np.int64)
        keys[row, rank] = np.where(rounded > 0, (rounded << bits) + ((1 << bits) - 1 - rank), -1)
        best_keys, best = torch.topk(torch.from_numpy(keys), min(self.options.k, width), dim=1)
        best_keys, best = best_keys.numpy(), best.numpy()
        chosen = best_keys >= 0
        entry = (indptr[:-1, None] + best)[chosen]
        return _Neighbours(row[entry], sequence[entry], similarity[entry])

    @staticmethod
    def _aggregate(
        n_queries: int, neighbours: _Neighbours, weight: np.ndarray, index: RecentSequenceIndex
    ) -> np.ndarray:
        """Dense ``[n_queries, n_items + 1]`` scores: for every neighbour, ``weight`` added
        to each of its items (one sparse product)."""
        contributions = sp.csr_matrix(
            (weight.astype(np.float32), (neighbours.row, neighbours.sequence)),
            shape=(n_queries, index.n_sequences),
        )
        return (contributions @ index.incidence).toarray()


@dataclass(frozen=True)
class SKNNOptions:
    """Options of ``sknn``. The defaults are the best configuration of a 30-trial
    validation study on ML-100K (iterative protocol, validation mrr@20 0.0679 against
    0.0567 for the reference implementation's k=100, sample_size=500, jaccard and the last
    10 items), which also beat the best of a 15-trial study on the ML-1M ratings of users
    1-2999 there (0.0757 against 0.0674; the reference values: 0.0437): see
    docs/methodology.md, "Defaults chosen on validation users".

    k:
        Neighbours whose items are scored.
    sample_size:
        Candidates per query: the most recent training sequences that share an item
        with the input (0: every such sequence).
    similarity:
        ``jaccard`` |q ∩ c| / |q ∪ c| or ``cosine`` |q ∩ c| / sqrt(|q| |c|), on item sets.
    max_length:
        The most recent input items compared (None: the whole input). The published
        method compares whole sessions, which in the click logs it was designed for
        rarely exceed 10 events; on long user histories (MovieLens) the last few items
        stand in for the current session.
    """

    k: int = 24
    sample_size: int = 1000
    similarity: Literal["jaccard", "cosine"] = "cosine"
    max_length: int | None = 5

    def __post_init__(self) -> None:
        _check_common(self.k, self.sample_size, self.max_length)


@dataclass(frozen=True)
class VSKNNOptions:
    """Options of ``vsknn``. The defaults are the best configuration of a 15-trial
    validation study on the ML-1M ratings of users 1-2999 (iterative protocol, validation
    mrr@20 0.0954 against 0.0405 for the reference implementation's k=100,
    sample_size=500, vec similarity, div/div weighting, no idf and the last 10 items),
    which also beat the best of a 30-trial study on ML-100K there (0.0775 against 0.0770;
    the reference values: 0.0646): see docs/methodology.md, "Defaults chosen on validation
    users".

    k, sample_size, max_length:
        As for ``sknn``.
    similarity:
        ``vec``: Σ_{i ∈ q ∩ c} w_i / |q| (the dot product of the weighted input with the
        binary neighbour, over the number of distinct input items); ``cosine``:
        Σ_{i ∈ q ∩ c} w_i / (sqrt(Σ_{i ∈ q} w_i²) sqrt(|c|)).
    weighting:
        Weight ``w`` of an input item by its position (see :func:`position_weights`):
        ``div`` (p/n), ``linear``, ``log``, ``quadratic`` or ``same``.
    weighting_score:
        Decay of a neighbour's contribution with the distance (1 = the last input item)
        of the most recent input item it contains: ``div`` (1/d), ``linear``,
        ``log``, ``quadratic`` or ``same``.
    idf_weighting:
        λ: a neighbour item ``i`` scores ``sim · (1 + λ · idf(i))`` (0: off).
    """

    k: int = 118
    sample_size: int = 2500
    similarity: Literal["vec", "cosine"] = "cosine"
    weighting: PositionWeighting = "linear"
    weighting_score: Decay = "div"
    idf_weighting: float = 1.4
    max_length: int | None = 10

    def __post_init__(self) -> None:
        _check_common(self.k, self.sample_size, self.max_length)
        if self.idf_weighting < 0:
            raise ValueError("idf_weighting must not be negative")


def _check_common(k: int, sample_size: int, max_length: int | None) -> None:
    if k < 1:
        raise ValueError("k must be at least 1")
    if sample_size < 0:
        raise ValueError("sample_size must be 0 (every candidate) or positive")
    if max_length is not None and max_length < 1:
        raise ValueError("max_length must be at least 1, or none for the whole input")


class SKNN(_NeighbourhoodModel):
    """Session-based kNN over training sequences.

    For an input ``q`` (the set of its last ``max_length`` items): the candidates are
    the ``sample_size`` most recent training sequences sharing at least one item with
    ``q``; the neighbours ``N(q)`` are the ``k`` candidates with the highest positive
    similarity (``jaccard`` or ``cosine`` of the item sets; ties: the more recent
    sequence); the score of item ``i`` is ``Σ_{c ∈ N(q), i ∈ c} sim(q, c)``.

    ``cosine`` is |q ∩ c| / sqrt(|q| |c|) as published (the reference implementation
    computes |q ∩ c| / sqrt(|q|) · sqrt(|c|), an operator-precedence slip). Items of the
    input are scored like any other item; the evaluator's seen-item policy decides
    whether they are ranked. Only ``recent`` sampling is implemented (the reference
    default; ``random`` makes results depend on a random state).

    References
    ----------
    D. Jannach, M. Ludewig. "When Recurrent Neural Networks meet the Neighborhood for
    Session-Based Recommendation". ACM RecSys 2017.
    M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms".
    User Modeling and User-Adapted Interaction 28(4-5), 2018 (SKNN; the reference
    implementation documents k=100, sample_size=500, similarity=jaccard).
    """

    id = "sknn"
    baseline = True  # compared against in the report's significance marks
    summary = "Session-based kNN: items of the k most similar recent sequences (Jannach & Ludewig)"
    version = "1"
    Options = SKNNOptions
    search_space: ClassVar[dict[str, Any]] = {
        "k": IntRange(20, 500, log=True),
        "sample_size": Choice((100, 250, 500, 1000, 2500)),
        "similarity": Choice(("jaccard", "cosine")),
        "max_length": Choice((5, 10, 20, 50, None)),
    }

    def __init__(self, options: SKNNOptions | None = None):
        super().__init__()
        self.options = options or SKNNOptions()

    def _score_inputs(self, inputs: _Inputs, index: RecentSequenceIndex) -> np.ndarray:
        row, sequence, overlap = self._candidates(inputs, index)
        query_size = np.bincount(inputs.row, minlength=inputs.n_queries).astype(np.float64)
        q, c = query_size[row], index.set_sizes[sequence]
        if self.options.similarity == "jaccard":
            similarity = overlap / (q + c - overlap)
        else:
            similarity = overlap / np.sqrt(q * c)
        neighbours = self._nearest(inputs.n_queries, row, sequence, similarity)
        return self._aggregate(inputs.n_queries, neighbours, neighbours.similarity, index)


class VSKNN(_NeighbourhoodModel):
    """Vector-multiplication session-based kNN (V-SKNN).

    Like :class:`SKNN` with three changes. (1) The input is a real-valued vector: the
    item at position ``p`` of an input of ``n`` items weighs ``w(p, n)`` (``weighting``;
    a repeated item keeps the weight of its last occurrence), and the similarity is
    ``vec`` Σ_{i ∈ q ∩ c} w_i / |q| or a weighted ``cosine``. (2) A neighbour ``c``
    contributes ``sim(q, c) · g(d_c)`` where ``d_c`` is the distance from the end of the
    input (1 = the last item) of the most recent input item that ``c`` contains and
    ``g`` the ``weighting_score`` decay. (3) With ``idf_weighting = λ > 0`` item ``i``
    gains ``(1 + λ · idf(i))`` times that, ``idf(i) = log(|S| / events of i)``. The score
    of item ``i`` is ``Σ_{c ∈ N(q), i ∈ c} sim(q, c) · g(d_c) · (1 + λ · idf(i))``.

    Candidates and neighbours are chosen as in SKNN (the ``sample_size`` most recent
    sequences sharing an item with the input, the ``k`` most similar with a positive
    similarity). Decays that the reference code lets turn negative are clipped at 0
    (see :func:`position_weights`).

    References
    ----------
    M. Ludewig, D. Jannach. "Evaluation of Session-based Recommendation Algorithms".
    User Modeling and User-Adapted Interaction 28(4-5), 2018 (V-SKNN; the reference
    implementation defaults to similarity=vec, weighting=div, weighting_score=div, no
    IDF, and documents k=100, sample_size=500).
    D. Jannach, M. Ludewig. "When Recurrent Neural Networks meet the Neighborhood for
    Session-Based Recommendation". ACM RecSys 2017.
    """

    id = "vsknn"
    baseline = True  # compared against in the report's significance marks
    summary = "V-SKNN: session kNN with position-decayed input weights (Ludewig & Jannach)"
    version = "1"
    Options = VSKNNOptions
    search_space: ClassVar[dict[str, Any]] = {
        "k": IntRange(20, 500, log=True),
        "sample_size": Choice((100, 250, 500, 1000, 2500)),
        "similarity": Choice(("vec", "cosine")),
        "weighting": Choice(DECAYS),
        "weighting_score": Choice(DECAYS),
        "idf_weighting": FloatRange(0.0, 10.0),
        "max_length": Choice((5, 10, 20, 50, None)),
    }

    def __init__(self, options: VSKNNOptions | None = None):
        super().__init__()
        self.options: VSKNNOptions = options or VSKNNOptions()

    def _score_inputs(self, inputs: _Inputs, index: RecentSequenceIndex) -> np.ndarray:
        options = self.options
        n_columns = index.incidence.shape[1]
        weight = position_weights(options.weighting, inputs.position, inputs.length[inputs.row])
        if len(weight) == 0 or weight.min() > 0:
            row, sequence, overlap = self._candidates(inputs, index, weight)
        else:  # zero weights would drop candidates: sample on the item sets first
            row, sequence, _ = self._candidates(inputs, index)
            weighted = inputs.matrix(weight, n_columns) @ index.postings
            weighted.sort_indices()
            overlap = _lookup(weighted, row, sequence)
        query_size = np.bincount(inputs.row, minlength=inputs.n_queries).astype(np.float64)
        if options.similarity == "vec":
            similarity = overlap / query_size[row]
        else:
            norm = np.sqrt(np.bincount(inputs.row, weights=weight**2, minlength=inputs.n_queries))
            with np.errstate(divide="ignore", invalid="ignore"):
                similarity = overlap / (norm[row] * np.sqrt(index.set_sizes[sequence]))
            similarity = np.nan_to_num(similarity, nan=0.0, posinf=0.0)
        neighbours = self._nearest(inputs.n_queries, row, sequence, similarity)
        distance = _newest_shared_distance(inputs, neighbours, index)
        contribution = neighbours.similarity * decay_by_distance(options.weighting_score, distance)
        scores = self._aggregate(inputs.n_queries, neighbours, contribution, index)
        if options.idf_weighting > 0:
            scores *= 1.0 + options.idf_weighting * index.idf[None, :]
        return scores


def _newest_shared_distance(
    inputs: _Inputs, neighbours: _Neighbours, index: RecentSequenceIndex
) -> np.ndarray:
    """For every neighbour, the distance from the end of its query's input (1 = the last
    item) of the most recent input item that the neighbour contains.

    The loop runs over input positions, newest first, each step testing all unresolved
    neighbours at once; it stops when every neighbour has found its item (a neighbour
    has a positive similarity, so it shares at least one input item).
    """
    n_queries = inputs.n_queries
    width = int(inputs.length.max()) if n_queries else 0
    # item_at[b, d - 1]: the input item d steps back from the end of query b (0: none).
    item_at = np.zeros((n_queries, max(width, 1)), dtype=np.int64)
    item_at[inputs.row, inputs.length[inputs.row] - inputs.position] = inputs.item
    distance = np.zeros(len(neighbours.row), dtype=np.int64)
    pending = np.arange(len(neighbours.row))
    for step in range(width):
        if len(pending) == 0:
            break
        item = item_at[neighbours.row[pending], step]
        asked = pending[item > 0]
        if len(asked) == 0:
            continue
        shared = np.asarray(index.incidence[neighbours.sequence[asked], item[item > 0]]).ravel() > 0
        distance[asked[shared]] = step + 1
        pending = pending[distance[pending] == 0]
    return distance


def _lookup(matrix: sp.csr_matrix, row: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``matrix[row, column]`` for sorted (row, column) pairs of a CSR matrix with sorted
    indices, 0 where nothing is stored."""
    n_columns = matrix.shape[1]
    stored_rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    stored = stored_rows * n_columns + matrix.indices
    wanted = row * n_columns + column
    at = np.minimum(np.searchsorted(stored, wanted), max(len(stored) - 1, 0))
    if len(stored) == 0:
        return np.zeros(len(wanted))
    return np.where(stored[at] == wanted, matrix.data[at], 0.0)
