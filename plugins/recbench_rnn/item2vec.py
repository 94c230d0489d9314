"""item2vec: item vectors from skip-gram with negative sampling over item sequences.

Item2vec (Barkan and Koenigstein, 2016) is word2vec's skip-gram with negative sampling
(Mikolov et al., 2013) with items for words and users' sequences for sentences: every
item (the *centre*) is trained to predict the items within ``window`` positions of it in
the same sequence (its *contexts*), against ``negatives`` items drawn with probability
∝ count^0.75. For a (centre ``c``, context ``o``) pair and negatives ``n_1..n_N`` the
loss is ::

    -log σ(⟨e_c, f_o⟩) - Σ_j log σ(-⟨e_c, f_nj⟩)

with input vectors ``e`` and output vectors ``f`` (a negative that happens to be ``o``
itself is left out of the sum); the input vectors are the result.

The implementation is vectorised and runs on any torch device: (centre, context) pairs
are built with numpy from the CSR :class:`recbench.plugin.Sequences`, for a random
chunk of events at a time (all ``2 × window`` offsets at once, pairs that would cross a
sequence boundary dropped), shuffled and cut into mini-batches; each mini-batch is one
step of sparse Adam on the two embedding tables (only the rows a batch touches change,
as in word2vec's per-pair updates). What differs from word2vec: a fixed window (no random
shrinking) and no subsampling of frequent items.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbench.plugin import PADDING_ITEM, NegativeSampler, Progress, Sequences

#: Events whose pairs are built, shuffled and held at once (about ``2 × window`` pairs
#: each): bounds the memory of an epoch on a large dataset.
CHUNK_EVENTS = 1 << 16
#: The popularity exponent of the negative-sampling distribution (word2vec's).
NEGATIVE_ALPHA = 0.75


@dataclass(frozen=True)
class Item2VecOptions:
    """Options of :func:`train_item2vec`.

    dim:
        Size of the item vectors.
    window:
        Contexts of an item: the items up to ``window`` positions before and after it in
        the same sequence.
    negatives:
        Negatives per (centre, context) pair, drawn ∝ count^0.75.
    epochs:
        Passes over all pairs.
    learning_rate:
        Step size of sparse Adam.
    batch_size:
        (centre, context) pairs per step on a CPU.
    cuda_batch_size:
        Pairs per step on CUDA. Sparse Adam coalesces each step's sparse gradient, which
        waits for the device (a host synchronisation per step); at 4,096 pairs that is
        ~195k waits over ML-20M's 5 epochs, so CUDA takes 16× larger steps (the vectors
        differ from a CPU run's, which they already do: same seed, same device, same
        vectors).
    """

    dim: int = 64
    window: int = 5
    negatives: int = 5
    epochs: int = 5
    learning_rate: float = 1e-2
    batch_size: int = 4096
    cuda_batch_size: int = 65536

    def __post_init__(self) -> None:
        for name in ("dim", "window", "negatives", "epochs", "batch_size", "cuda_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")


@dataclass
class Item2VecResult:
    """Trained item vectors ``[n_items + 1, dim]`` (row 0, padding, is zero; an item
    without training events keeps its small random initial vector), the mean loss per
    pair of every epoch, pairs per epoch, and the wall time."""

    vectors: Tensor
    epoch_losses: list[float] = field(default_factory=list)
    pairs_per_epoch: int = 0
    seconds: float = 0.0


def skipgram_pairs(
    sequences: Sequences, window: int, rng: np.random.Generator, chunk_events: int = CHUNK_EVENTS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (centre, context) item pair of ``sequences`` once, in random order.

    Events are visited in a random order, ``chunk_events`` at a time; a chunk yields the
    pairs of its events with every item within ``window`` positions in the same sequence
    (both directions), shuffled: two int64 arrays ``(centres, contexts)``.
    """
    offsets = np.asarray(sequences.offsets, dtype=np.int64)
    items = np.asarray(sequences.items, dtype=np.int64)
    lengths = np.diff(offsets)
    first = np.repeat(offsets[:-1], lengths)  # the first event of each event's sequence
    end = np.repeat(offsets[1:], lengths)  # one past its last event
    shifts = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    order = offsets[0] + rng.permutation(int(offsets[-1] - offsets[0]))
    for start in range(0, len(order), chunk_events):
        events = order[start : start + chunk_events]
        context = events[:, None] + shifts[None, :]  # [C, 2 * window] event indices
        local = events - offsets[0]
        inside = (context >= first[local, None]) & (context < end[local, None])
        centres = np.broadcast_to(items[events, None], context.shape)[inside]
        contexts = items[context[inside]]
        shuffle = rng.permutation(len(centres))
        yield centres[shuffle], contexts[shuffle]


def count_pairs(sequences: Sequences, window: int) -> int:
    """The number of (centre, context) pairs of an epoch."""
    lengths = np.diff(np.asarray(sequences.offsets, dtype=np.int64))
    shifts = np.arange(1, window + 1)
    return int(2 * np.maximum(lengths[:, None] - shifts[None, :], 0).sum())


def train_item2vec(
    sequences: Sequences,
    options: Item2VecOptions | None = None,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
    name: str = "item2vec",
) -> Item2VecResult:
    """Train item2vec on ``sequences`` and return the input vectors.

    Parameters
    ----------
    sequences:
        The training sequences (item ids ``1..n_items``).
    options:
        :class:`Item2VecOptions` (default: its defaults).
    device:
        Where the tables live and the steps run.
    seed:
        Seeds the initial vectors, the order of the pairs and the negatives: the same
        seed gives the same vectors on the same device.
    progress:
        Shows a bar per epoch and logs the loss (default: silent).
    name:
        How messages name this training.

    Returns
    -------
    Item2VecResult
        ``vectors`` ``[n_items + 1, dim]`` float32 on ``device``, detached.

    References
    ----------
    Mikolov, Sutskever, Chen, Corrado, Dean. Distributed representations of words and
    phrases and their compositionality. NeurIPS 2013.
    Barkan, Koenigstein. Item2vec: neural item embedding for collaborative filtering.
    MLSP 2016, arXiv:1603.04259.
    """
    options = options if options is not None else Item2VecOptions()
    progress = progress if progress is not None else Progress.silent()
    device = torch.device(device)
    started = time.perf_counter()
    n_items, dim = int(sequences.n_items), options.dim
    # word2vec's initialisation: small input vectors, zero output vectors
    generator = torch.Generator().manual_seed(seed)
    initial = (torch.rand(n_items + 1, dim, generator=generator) * 2 - 1) * (0.5 / dim)
    centre_table = nn.Embedding.from_pretrained(initial.to(device), freeze=False, sparse=True)
    context_table = nn.Embedding.from_pretrained(
        torch.zeros(n_items + 1, dim, device=device), freeze=False, sparse=True
    )
    counts = sequences.item_counts()
    sampler = NegativeSampler(
        n_items,
        "popularity" if counts[1:].sum() > 0 else "uniform",
        item_counts=counts,
        alpha=NEGATIVE_ALPHA,
        device=device,
        seed=seed,
    )
    optimizer = torch.optim.SparseAdam(
        [centre_table.weight, context_table.weight], lr=options.learning_rate
    )
    rng = np.random.default_rng(seed)
    result = Item2VecResult(vectors=centre_table.weight.detach())
    result.pairs_per_epoch = count_pairs(sequences, options.window)
    batch_size = options.cuda_batch_size if device.type == "cuda" else options.batch_size
    steps = -(-result.pairs_per_epoch // batch_size)
    for epoch in range(1, options.epochs + 1):
        total = torch.zeros((), dtype=torch.float64, device=device)
        with progress.task(f"{name}: epoch {epoch}/{options.epochs}", total=steps) as bar:
            for centres_np, contexts_np in skipgram_pairs(sequences, options.window, rng):
                centres_all = torch.from_numpy(centres_np).to(device)
                contexts_all = torch.from_numpy(contexts_np).to(device)
                for start in range(0, len(centres_all), batch_size):
                    centres = centres_all[start : start + batch_size]
                    contexts = contexts_all[start : start + batch_size]
                    negatives = sampler.sample((len(centres), options.negatives))
                    # one lookup of the output table: one sparse gradient, nothing to add up
                    targets = torch.cat((contexts.unsqueeze(1), negatives), dim=1)
                    loss = _skipgram_loss(
                        centre_table(centres),
                        context_table(targets),
                        negatives != contexts[:, None],
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach() * len(centres)
                    bar.advance(1)
        mean = float(total) / max(result.pairs_per_epoch, 1)
        result.epoch_losses.append(mean)
        progress.log(f"{name} epoch {epoch}/{options.epochs}: loss {mean:.4f}")
    with torch.no_grad():
        vectors = centre_table.weight.detach().clone()
        vectors[PADDING_ITEM].zero_()
    result.vectors = vectors
    result.seconds = time.perf_counter() - started
    return result


def _skipgram_loss(centre: Tensor, targets: Tensor, keep: Tensor) -> Tensor:
    """Mean over pairs of ``-log σ(⟨c, o⟩) - Σ_j log σ(-⟨c, n_j⟩)``: ``centre`` ``[B, D]``,
    ``targets`` ``[B, 1 + N, D]`` (the context's output vector first, then the
    negatives'); ``keep`` ``[B, N]`` is false where a negative is the context itself
    (that term is left out, as word2vec skips such a draw)."""
    logits = (targets * centre.unsqueeze(1)).sum(-1)  # [B, 1 + N]
    negative = (F.softplus(logits[:, 1:]) * keep).sum(-1)
    return (F.softplus(-logits[:, 0]) + negative).mean()
