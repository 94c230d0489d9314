"""Building blocks shared by the neighbourhood and rule baselines.

The models keep their learned structure in ``scipy.sparse`` CSR matrices on the CPU and
score a whole batch of queries with sparse products; this module holds what they share:
reading a :class:`~recbench.plugin.SequenceBatch` into numpy, the per-user item sets of
the training sequences, pruning a sparse matrix to its top entries per row, the decay
functions of the published definitions, and turning dense scores into a tensor on the
model's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from recbench.plugin import SequenceBatch, Sequences, ragged_indices

#: Decay of a weight with a distance ``d >= 1`` (1 = adjacent / most recent), as in the
#: sequential-rules and V-SKNN definitions of Ludewig & Jannach (2018):
#: ``same`` 1, ``div`` 1/d, ``linear`` max(0, 1 - 0.1 d), ``log`` 1/log10(d + 1.7),
#: ``quadratic`` 1/d².
Decay = Literal["same", "div", "linear", "log", "quadratic"]
DECAYS: tuple[str, ...] = ("same", "div", "linear", "log", "quadratic")


def decay_by_distance(kind: str, distance: np.ndarray) -> np.ndarray:
    """The weight of each distance ``d >= 1`` (float64, same shape).

    ``linear`` is ``1 - 0.1 d`` clipped at 0: distances of 10 or more weigh nothing (the
    reference implementation lets the value go negative past 10, which no definition
    intends).
    """
    d = np.asarray(distance, dtype=np.float64)
    if kind == "same":
        return np.ones_like(d)
    if kind == "div":
        return 1.0 / d
    if kind == "linear":
        return np.maximum(0.0, 1.0 - 0.1 * d)
    if kind == "log":
        return 1.0 / np.log10(d + 1.7)
    if kind == "quadratic":
        return 1.0 / (d * d)
    raise ValueError(f"unknown decay '{kind}', expected one of {', '.join(DECAYS)}")


def decay_function(kind: str) -> Callable[[float], float]:
    """The scalar form of :func:`decay_by_distance` (for per-query reference code)."""
    functions: dict[str, Callable[[float], float]] = {
        "same": lambda d: 1.0,
        "div": lambda d: 1.0 / d,
        "linear": lambda d: max(0.0, 1.0 - 0.1 * d),
        "log": lambda d: 1.0 / math.log10(d + 1.7),
        "quadratic": lambda d: 1.0 / (d * d),
    }
    return functions[kind]


def batch_arrays(batch: SequenceBatch) -> tuple[np.ndarray, np.ndarray]:
    """The batch's items ``[B, L]`` (int64, left-padded with 0) and lengths ``[B]`` as
    numpy arrays on the CPU."""
    items = batch.items.detach().to("cpu", torch.int64).numpy()
    lengths = batch.lengths.detach().to("cpu", torch.int64).numpy()
    return items, lengths


def last_items(batch: SequenceBatch) -> np.ndarray:
    """The most recent item of every query, ``[B]`` int64."""
    return batch.items[:, -1].detach().to("cpu", torch.int64).numpy()


def scores_tensor(scores: np.ndarray | sp.spmatrix, device: torch.device) -> torch.Tensor:
    """Dense float32 scores ``[B, n_items + 1]`` on ``device`` from a numpy array or a
    sparse matrix (missing entries score 0)."""
    dense = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    tensor = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
    return tensor.to(device)


def item_sets(sequences: Sequences) -> sp.csr_matrix:
    """The binary sequence x item incidence matrix ``[len(sequences), n_items + 1]``
    (float32 CSR, sorted indices): entry (s, i) is 1 when sequence ``s`` contains item
    ``i`` at least once."""
    n_rows = len(sequences)
    events = sequences.items[sequences.offsets[0] : sequences.offsets[-1]].astype(np.int64)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), sequences.lengths)
    keys = np.unique(rows * (sequences.n_items + 1) + events)
    row, item = np.divmod(keys, sequences.n_items + 1)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    return sp.csr_matrix(
        (np.ones(len(keys), dtype=np.float32), item.astype(np.int32), indptr),
        shape=(n_rows, sequences.n_items + 1),
    )


def row_positions(indptr: np.ndarray) -> np.ndarray:
    """The position of every stored entry within its row (0 for the first)."""
    counts = np.diff(indptr)
    return np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1], counts)


def top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest stored entries of every row (``n <= 0``: keep all).

    Ties at the boundary keep the entry with the smaller column index, so the result is
    deterministic. Returns a CSR matrix with sorted indices.
    """
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    if n <= 0 or matrix.nnz == 0 or np.diff(matrix.indptr).max() <= n:
        matrix.sort_indices()
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    keep = order[row_positions(matrix.indptr) < n]
    keep.sort()  # back to (row, column) order
    kept_rows = rows[keep]
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(kept_rows, minlength=matrix.shape[0]), out=indptr[1:])
    pruned = sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)
    pruned.sort_indices()
    return pruned


def transition_pairs(sequences: Sequences, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (earlier item, later item) pair ``distance`` steps apart within a sequence,
    as two int64 arrays."""
    lengths = sequences.lengths
    has_pair = lengths > distance
    starts = sequences.offsets[:-1][has_pair]
    counts = lengths[has_pair] - distance
    later = ragged_indices(starts + distance, counts)
    items = sequences.items
    return items[later - distance].astype(np.int64), items[later].astype(np.int64)


def empty_check(model: str, fitted: object) -> None:
    """Raise the usual error when ``score`` is called before ``fit``."""
    if fitted is None:
        raise RuntimeError(f"{model}.score() called before fit()")
