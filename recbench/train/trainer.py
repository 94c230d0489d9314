"""Shared training of next-item sequence models.

The trainer knows no concrete model, loss or dataset. A model hands it a
:class:`SequenceNetwork` (a ``torch.nn.Module`` that encodes item sequences and scores
candidate items) and its :class:`TrainingOptions`; :func:`fit_network` does the rest:

Mini-batches
    ``batching="padded"`` (default): every training sequence is cut into windows of at
    most ``max_length + 1`` items, counted from its end (so the most recent items form
    one window; consecutive windows share one item, so every transition is trained once
    per epoch; ``windows="last"`` keeps only the most recent window). A batch holds
    ``batch_size`` windows, **start-aligned** (real items first, padding 0 after them),
    of similar lengths when ``sort_by_length`` is on. Input position ``t`` predicts item
    ``t + 1``; positions whose target is padding are dropped before scoring. On a CPU
    a network that sets ``length_group_rows`` has each batch encoded in groups of about
    that many rows of similar lengths, each cut to its longest row
    (:func:`encode_by_length`): the padding of short rows is not computed; the batch and
    the outputs at real positions stay the same.

    ``batching="session-parallel"``: GRU4Rec's scheme (Hidasi et al., 2016). Each of
    ``batch_size`` lanes reads one sequence item by item; a lane whose sequence ends
    takes the next one and its state is reset; every step is one update, and the state
    is carried over (detached) to the next step. Needs a network with ``step``.

Negatives
    For each prediction the loss sees the positive's score and the scores of negatives
    (:class:`recbench.contracts.Loss` describes the signature). Sampled negatives come from
    :class:`recbench.train.sampling.NegativeSampler` (uniform or popularity^alpha, never the
    padding item, optionally never the positive): ``negatives`` per prediction, or
    ``negatives`` shared by the whole mini-batch with ``shared_negatives``. With
    ``in_batch_negatives`` the targets of the other sequences at the same step join them
    (GRU4Rec's mini-batch negatives; a padding slot is replaced by a sample). A loss
    whose ``candidates`` is ``"all"`` (a full softmax such as ``cce``) gets every item's
    score instead, computed a block of predictions at a time.

Optimisation
    Adam or Adagrad with L2 (weight decay), optional gradient-norm clipping, optional
    bfloat16 autocast on CUDA (the loss is computed in float32), optional
    ``torch.compile`` of the encoder (off by default: a cold compile costs minutes).

Model selection
    Epochs run in the shared loop, :class:`recbench.train.loop.EpochLoop`: after every
    ``validate_every`` epochs ``ctx.validate(model)`` scores the validation users (never
    the test set); the best weights are kept (in memory, or as ``best.pt`` in
    ``ctx.checkpoint_dir``) and restored at the end; training stops after ``patience``
    validations without improvement. A loss that becomes NaN or infinite raises
    :class:`TrainingDiverged`; the runner marks the model's cells failed and goes on.

Losses
    The loss is looked up in the run's plugin registry (``ctx.registry``). A loss over
    every item may also offer ``every_item_loss(scores [M, n_items + 1], targets [M])``,
    the same mean loss from the whole score block (column 0 is padding); the trainer
    then calls it instead of passing the ``[:, 1:]`` slice (``cce`` does: one
    ``F.cross_entropy``). A loss may ask for more than the scores (:class:`recbench.contracts.Loss`): with
    ``extra_inputs = ("candidate_ids", "sampling_probabilities")`` it also gets the item
    ids of the ``negative`` columns and the probability with which each was drawn, e.g.
    for a log-Q correction of a sampled softmax.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from recbench.config.options import parse_options
from recbench.contracts import FitContext, PluginLookup
from recbench.data.interactions import PADDING_ITEM, Sequences
from recbench.errors import ConfigError
from recbench.progress import ProgressBar
from recbench.train.loop import EpochLoop
from recbench.train.loop import EpochRecord as EpochRecord
from recbench.train.loop import TrainingDiverged as TrainingDiverged
from recbench.train.loop import TrainingHistory as TrainingHistory
from recbench.train.sampling import NegativeSampler

#: Windows sorted together (in multiples of the batch size) when ``sort_by_length``:
#: enough to make batches of similar lengths, few enough to keep batches random.
SORT_CHUNK_BATCHES = 50
#: Scores held at once by a loss over every item (``cce``), by device type: on a CPU a
#: block that fits the cache (and no fresh, page-faulting allocation) is several times
#: faster than the whole ``[predictions, items]`` matrix; a GPU wants large blocks.
SCORE_BLOCK = {"cpu": 1 << 20, "cuda": 1 << 27}
#: On CUDA the loss is checked for NaN every this many batches (a check synchronises).
CUDA_CHECK_EVERY = 16


@dataclass(frozen=True)
class TrainingOptions:
    """Options of the shared trainer; a model's ``Options`` inherit them.

    Parameters
    ----------
    epochs:
        The most passes over the training sequences.
    batch_size:
        Windows per mini-batch (lanes, for session-parallel batching).
    learning_rate, optimizer, l2:
        The optimiser (``adam`` or ``adagrad``), its step size and L2 weight decay.
    clip_norm:
        Clip the gradient's global norm to this value (0: no clipping).
    max_length:
        The longest input the model reads, in training and evaluation.
    windows:
        ``all``: cut every sequence into windows; ``last``: only its most recent
        ``max_length + 1`` items.
    loss, loss_options:
        A registered loss id (``recbench list losses``) and its options as
        ``key=value[,key=value]``, e.g. ``score_regularization=0.5``. The trainer has no
        default loss (the core names no plugin): a model's ``Options`` set ``loss``.
    negatives:
        Sampled negatives per prediction (or per mini-batch with ``shared_negatives``).
    sampling, sampling_alpha:
        ``uniform``, or ``popularity`` with probability ∝ count^alpha.
    shared_negatives:
        One set of ``negatives`` samples for the whole mini-batch (GRU4Rec's extra
        samples) instead of one set per prediction.
    in_batch_negatives:
        Add the other sequences' targets at the same step as negatives.
    exclude_positive:
        Never sample the positive as a negative (per-prediction sampling only).
    batching:
        ``padded`` windows or GRU4Rec's ``session-parallel`` lanes.
    sort_by_length:
        Batch windows of similar lengths together (less padding).
    validate_every, patience:
        Validate every n epochs; stop after ``patience`` validations without
        improvement (0: never stop early).
    bf16:
        bfloat16 autocast on CUDA (ignored on the CPU).
    compile:
        ``torch.compile`` the encoder (a cold compile takes minutes on a CPU).
    """

    epochs: int = 40
    batch_size: int = 224
    learning_rate: float = 1.5e-2
    optimizer: Literal["adam", "adagrad"] = "adam"
    l2: float = 6e-6
    clip_norm: float = 0.0
    max_length: int = 200
    windows: Literal["all", "last"] = "all"
    loss: str = ""
    loss_options: str = ""
    negatives: int = 5
    sampling: Literal["uniform", "popularity"] = "uniform"
    sampling_alpha: float = 0.75
    shared_negatives: bool = False
    in_batch_negatives: bool = False
    exclude_positive: bool = True
    batching: Literal["padded", "session-parallel"] = "padded"
    sort_by_length: bool = True
    validate_every: int = 1
    patience: int = 5
    bf16: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("negatives", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("learning_rate",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("l2", "clip_norm", "sampling_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


class SequenceNetwork(Protocol):
    """What the trainer needs of a model's ``torch.nn.Module``.

    ``encode`` reads start-aligned item ids ``[B, T]`` (real items first, padding 0
    after them) and returns ``[B, T, D]``: at ``t``, the representation of the sequence
    up to and including item ``t``. It must not let padding change the representation
    at real positions (a causal recurrence over start-aligned rows does not).

    ``length_group_rows`` (optional attribute, an ``int``) declares that the network
    encodes rows independently and that a call costs about its longest row's steps
    whatever the others' lengths (a fused recurrent layer): on a CPU the trainer then
    encodes each batch in groups of about that many rows of similar lengths, each group
    cut to its longest row, instead of one call over the padded batch.

    ``score(hidden, candidates)`` scores candidate items: ``hidden`` is ``[G, R, D]``
    (``G`` groups of ``R`` representations), ``candidates`` int64 ``[G, N]`` (the items
    each group's representations are scored against) and the result ``[G, R, N]``; with
    ``candidates=None`` every id is scored, ``[G, R, n_items + 1]`` (column 0 is padding).

    ``step(items, state)`` (optional, for session-parallel batching and one-step cells)
    reads one item per row, ``items`` ``[B]``, and returns ``(hidden [B, D], state)``;
    ``initial_state(batch_size)`` is the state before the first item (a tuple of
    ``[B, ...]`` tensors).
    """

    def encode(self, items: Tensor) -> Tensor: ...

    def score(self, hidden: Tensor, candidates: Tensor | None) -> Tensor: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Any) -> Any: ...


# -- scoring helpers shared by models ---------------------------------------------------


def linear_scores(
    hidden: Tensor, candidates: Tensor | None, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """Dot-product scores ``⟨h, w_item⟩ + b_item`` in the :class:`SequenceNetwork`
    ``score`` layout.

    ``weight`` is the item matrix ``[n_items + 1, D]``, ``bias`` ``[n_items + 1]`` (or
    None); ``hidden`` ``[G, R, D]``; ``candidates`` ``[G, N]`` or None (every item).
    """
    if candidates is None:
        if bias is None or torch.is_autocast_enabled(hidden.device.type):
            # Under autocast the float32 bias keeps the scores float32, as before.
            scores = torch.matmul(hidden, weight.t())
            return scores if bias is None else scores + bias
        # One fused multiply-add: a separate "+ bias" is another pass over [G, R, items].
        flat = torch.addmm(bias, hidden.reshape(-1, hidden.shape[-1]), weight.t())
        return flat.view(*hidden.shape[:-1], flat.shape[-1])
    if hidden.shape[1] == 1:  # one representation per group: a gathered dot product
        return _GatheredDot.apply(hidden.squeeze(1), weight, bias, candidates).unsqueeze(1)
    vectors = weight[candidates].to(hidden.dtype)  # [G, N, D]; bf16 under autocast
    scores = torch.matmul(hidden, vectors.transpose(1, 2))
    return scores if bias is None else scores + bias[candidates].unsqueeze(1)


#: Elements of the gathered ``[rows, N, D]`` item vectors that :class:`_GatheredDot`
#: holds at once: on a CPU a block that stays in the cache (and clear of fresh,
#: page-faulting allocations) is several times faster; a GPU wants large blocks.
GATHER_BLOCK = {"cpu": 1 << 18, "cuda": 1 << 24}


class _GatheredDot(torch.autograd.Function):
    """``scores[m, n] = ⟨hidden[m], weight[candidates[m, n]]⟩ + bias[candidates[m, n]]``
    computed block by block, so the ``[M, N, D]`` gathered vectors (and their gradient)
    never exist in full."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, candidates: Tensor
    ) -> Tensor:
        rows = _gather_rows(hidden, candidates)
        out = hidden.new_empty(candidates.shape)
        buffer = _block_buffer(hidden, weight, candidates, rows)
        for start in range(0, len(candidates), rows):
            block = slice(start, start + rows)
            vectors = _gathered(weight, candidates[block], buffer)  # [rows, N, D]
            vectors.mul_(hidden[block].unsqueeze(1))
            torch.sum(vectors, dim=2, out=out[block])
        if bias is not None:
            out += bias[candidates]
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight, candidates)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, candidates = ctx.saved_tensors
        grad = grad.contiguous()
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        rows = _gather_rows(hidden, candidates)
        buffer = _block_buffer(hidden, weight, candidates, rows)
        for start in range(0, len(candidates), rows):
            block = slice(start, start + rows)
            items, block_grad = candidates[block], grad[block]
            vectors = _gathered(weight, items, buffer)
            vectors.mul_(block_grad.unsqueeze(2))
            torch.sum(vectors, dim=1, out=grad_hidden[block])
            torch.mul(block_grad.unsqueeze(2), hidden[block].unsqueeze(1), out=vectors)
            grad_weight.index_add_(0, items.reshape(-1), vectors.view(-1, weight.shape[1]))
        grad_bias = None
        if ctx.has_bias:
            grad_bias = grad.new_zeros(weight.shape[0])
            grad_bias.index_add_(0, candidates.reshape(-1), grad.reshape(-1))
        return grad_hidden, grad_weight, grad_bias, None


def _block_buffer(hidden: Tensor, weight: Tensor, candidates: Tensor, rows: int) -> Tensor:
    """One block's ``[rows, N, D]`` workspace, reused by every block (the products are
    formed in place in it: no second block-sized tensor per block)."""
    shape = (min(rows, len(candidates)), candidates.shape[1], weight.shape[1])
    return torch.empty(shape, dtype=torch.result_type(hidden, weight), device=hidden.device)


def _gathered(weight: Tensor, items: Tensor, buffer: Tensor) -> Tensor:
    """``weight[items]`` written into the first ``len(items)`` rows of ``buffer``."""
    vectors = buffer[: len(items)]
    torch.index_select(weight, 0, items.reshape(-1), out=vectors.view(-1, weight.shape[1]))
    return vectors


def _gather_rows(hidden: Tensor, candidates: Tensor) -> int:
    block = GATHER_BLOCK.get(hidden.device.type, GATHER_BLOCK["cuda"])
    return max(1, block // max(1, candidates.shape[1] * hidden.shape[1]))


def start_aligned(items: Tensor, lengths: Tensor) -> Tensor:
    """Left-padded rows (:class:`recbench.contracts.SequenceBatch`) moved to the start:
    row ``b`` holds its ``lengths[b]`` items first, then padding."""
    width = items.shape[1]
    columns = torch.arange(width, device=items.device)
    source = (columns.unsqueeze(0) + (width - lengths).unsqueeze(1)).clamp_(max=width - 1)
    aligned = items.gather(1, source)
    return aligned.masked_fill(columns.unsqueeze(0) >= lengths.unsqueeze(1), PADDING_ITEM)


def scores_of_rows(
    score: Callable[[Tensor], Tensor], hidden: Tensor, rows: Tensor | None
) -> Tensor:
    """``score(hidden)`` (``[B, W, H]`` -> ``[B, W, n_items + 1]``) computed only for the
    rows marked in ``rows`` (bool ``[B, W]``; ``None``: every row), for a one-pass
    ``score_prefixes`` (:class:`recbench.contracts.Model`). Unmarked rows are left
    uninitialised: the caller never reads them, and scoring every item costs far more
    than reading the sequence when most prefixes answer no query (last-item,
    half-split)."""
    if rows is None or bool(rows.all()):  # iterative: every row answers a query
        return score(hidden)
    selected = score(hidden[rows].unsqueeze(0)).squeeze(0)  # [M, n_items + 1]
    scores = selected.new_empty((*hidden.shape[:2], selected.shape[-1]))
    scores[rows] = selected
    return scores


def last_positions(hidden: Tensor, lengths: Tensor) -> Tensor:
    """``hidden[b, lengths[b] - 1]`` for every row: ``[B, T, D]`` -> ``[B, D]``."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, lengths - 1]


# -- training data ---------------------------------------------------------------------


def training_windows(
    sequences: Sequences, max_length: int, which: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of at most ``max_length + 1`` items, as (start event, length) arrays.

    Windows are cut from the end of each sequence; consecutive windows of a sequence
    share one item, so each transition ``s[i] -> s[i + 1]`` is in exactly one window.
    Sequences with fewer than 2 items give none. ``which="last"`` keeps only the most
    recent window of each sequence.
    """
    lengths = sequences.lengths.astype(np.int64)
    starts = sequences.offsets[:-1].astype(np.int64)
    keep = lengths >= 2
    lengths, starts = lengths[keep], starts[keep]
    transitions = lengths - 1
    # ceil(transitions / max_length) windows, or one
    counts = np.ones_like(transitions) if which == "last" else -(-transitions // max_length)
    row = np.repeat(np.arange(len(lengths)), counts)
    # k-th window from the end of its sequence (k = 0 is the most recent)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    end = lengths[row] - k * max_length  # exclusive, relative to the sequence start
    begin = np.maximum(end - max_length - 1, 0)
    return starts[row] + begin, end - begin


def epoch_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, sort_by_length: bool
) -> list[np.ndarray]:
    """A random partition of window indices into mini-batches (similar lengths together
    when ``sort_by_length``), in random order."""
    order = rng.permutation(len(lengths))
    if sort_by_length:
        chunk = batch_size * SORT_CHUNK_BATCHES
        order = np.concatenate(
            [
                part[np.argsort(-lengths[part], kind="stable")]
                for part in np.split(order, range(chunk, len(order), chunk))
            ]
        )
    batches = np.split(order, range(batch_size, len(order), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def gather_windows(
    items: Tensor, starts: Tensor, lengths: Tensor, width: int | None = None
) -> Tensor:
    """Start-aligned ``[B, max(lengths)]`` item ids of the windows ``(starts, lengths)``
    from the flat event array ``items`` (all on one device). Pass ``width`` (the
    longest length, known on the host) to spare a device-to-host read of it."""
    width = int(lengths.max()) if width is None else width
    columns = torch.arange(width, device=items.device)
    inside = columns.unsqueeze(0) < lengths.unsqueeze(1)
    source = torch.where(inside, starts.unsqueeze(1) + columns.unsqueeze(0), 0)
    return torch.where(inside, items[source], PADDING_ITEM)


@dataclass
class _Lanes:
    """Session-parallel mini-batches over whole sequences (see the module docstring)."""

    sequences: Sequences
    batch_size: int
    rng: np.random.Generator

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yields ``(inputs, targets, reset, keep)``: item ids ``[B]``, which lanes start
        a new sequence (their state must be zeroed), and which lanes of the previous
        step are still open (``None``: all)."""
        offsets, items = self.sequences.offsets, self.sequences.items
        lengths = self.sequences.lengths
        queue = self.rng.permutation(np.flatnonzero(lengths >= 2))
        n_lanes = min(self.batch_size, len(queue))
        lane_row = queue[:n_lanes].copy()
        lane_pos = np.zeros(n_lanes, dtype=np.int64)
        next_in_queue = n_lanes
        reset = np.ones(n_lanes, dtype=bool)
        keep: np.ndarray | None = None
        while len(lane_row):
            event = offsets[lane_row] + lane_pos
            yield items[event], items[event + 1], reset, keep
            lane_pos += 1
            finished = np.flatnonzero(lane_pos + 1 >= lengths[lane_row])
            reset = np.zeros(len(lane_row), dtype=bool)
            keep = None
            if len(finished):
                refill = finished[: max(0, min(len(finished), len(queue) - next_in_queue))]
                lane_row[refill] = queue[next_in_queue : next_in_queue + len(refill)]
                lane_pos[refill] = 0
                next_in_queue += len(refill)
                reset[refill] = True
                closed = finished[len(refill) :]
                if len(closed):
                    open_lanes = np.ones(len(lane_row), dtype=bool)
                    open_lanes[closed] = False
                    keep = np.flatnonzero(open_lanes)
                    lane_row, lane_pos, reset = lane_row[keep], lane_pos[keep], reset[keep]


# -- losses and optimisers --------------------------------------------------------------


def parse_key_values(text: str, *, where: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}`` (empty text: no values)."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"cannot read '{part}'", where=where, hint="write KEY=VALUE[,KEY=VALUE]"
            )
        values[key.strip()] = value.strip()
    return values


def make_loss(name: str, options: str = "", *, registry: PluginLookup) -> Any:
    """The loss registered as ``name`` in ``registry``, built with ``options``
    (``key=value,...``)."""
    return loss_from(registry.get("loss", name), options)


def loss_from(info: Any, options: str = "") -> Any:
    """The loss of the registration record ``info``, built with ``options``
    (``key=value,...``)."""
    values = parse_key_values(options, where="option loss_options")
    return info.cls(parse_options(info.cls.Options, values, owner=f"loss '{info.id}'"))


def make_optimizer(parameters: Any, options: TrainingOptions) -> torch.optim.Optimizer:
    if options.optimizer == "adagrad":
        return torch.optim.Adagrad(parameters, lr=options.learning_rate, weight_decay=options.l2)
    return torch.optim.Adam(parameters, lr=options.learning_rate, weight_decay=options.l2)


# -- the trainer --------------------------------------------------------------------------


#: What a loss may ask for besides the scores, in its ``extra_inputs`` (the trainer
#: passes them as keyword arguments; :class:`recbench.contracts.Loss`).


class _Trainer:
    def __init__(
        self,
        model: Any,
        network: SequenceNetwork,
        train: Sequences,
        ctx: FitContext,
        options: TrainingOptions,
        name: str,
    ):
        self.model = model
        self.network = network
        self.train = train
        self.ctx = ctx
        self.options = options
        self.name = name
        self.device = torch.device(ctx.device)
        loss_info = self._loss_info()
        self.loss = loss_from(loss_info, options.loss_options)
        self.all_candidates = loss_info.candidates == "all"
        self.extra_inputs: tuple[str, ...] = loss_info.extra_inputs
        self.sampler = NegativeSampler(
            train.n_items,
            options.sampling,
            item_counts=np.asarray(ctx.item_counts),
            alpha=options.sampling_alpha,
            device=self.device,
            seed=ctx.seed,
        )
        self.rng = np.random.default_rng(ctx.seed)
        self.optimizer = make_optimizer(network.parameters(), options)
        self.use_bf16 = options.bf16 and self.device.type == "cuda"
        self.check_every = CUDA_CHECK_EVERY if self.device.type == "cuda" else 1
        self.encode: Callable[[Tensor], Tensor] = network.encode
        if options.compile:
            self.encode = torch.compile(network.encode)
        # Encoding by length pays off where a call's cost follows its longest row and
        # per-call overhead is small; a GPU is fastest with one large call per batch.
        self.group_rows: int | None = (
            getattr(network, "length_group_rows", None) if self.device.type == "cpu" else None
        )
        if options.batching == "session-parallel" and not hasattr(network, "step"):
            raise ConfigError(
                f"{name} cannot train with session-parallel batching (its network has no step)",
                hint="use batching=padded",
            )
        self.loop = EpochLoop(
            name,
            epochs=options.epochs,
            patience=options.patience,
            validate_every=options.validate_every,
            metric_name=ctx.validation_metric or "validation metric",
            divergence_hint="lower the learning rate or set clip_norm",
        )

    def _loss_info(self) -> Any:
        """The registration record of the model's loss (its class and declared inputs)."""
        if not self.options.loss:
            raise ConfigError(
                f"{self.name} names no training loss",
                hint="set its loss option ('recbench list losses' shows the ids)",
            )
        if self.ctx.registry is None:
            raise ConfigError(
                f"{self.name} cannot look up its loss '{self.options.loss}': "
                "the fit context has no plugin registry",
                hint="give FitContext a registry, e.g. registry=recbench.registry.discover()",
            )
        return self.ctx.registry.get("loss", self.options.loss)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- scores of one batch ---------------------------------------------------------
    def predictions(
        self, hidden: Tensor, targets: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(positive [M], negative [M, N]) scores of the real positions of a batch.

        ``hidden`` ``[B, T, D]``, ``targets`` ``[B, T]`` (0 where there is nothing to
        predict); ``positions`` int64 ``[M]``, the flat positions of the real targets
        when the caller knows them (:func:`prediction_positions`; a boolean mask would
        make a CUDA device wait for the host).
        """
        positive, negative, _ = self.scored(hidden, targets, positions)
        return positive, negative

    def scored(
        self, hidden: Tensor, targets: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """:meth:`predictions` and the extra inputs the loss asks for (:meth:`loss_inputs`)."""
        network, options = self.network, self.options
        if positions is None:
            positions = torch.nonzero((targets != PADDING_ITEM).reshape(-1)).squeeze(1)
        flat_hidden = at_positions(hidden, positions)
        flat_targets = at_positions(targets, positions)
        if self.all_candidates:
            everything = network.score(flat_hidden.unsqueeze(0), None).squeeze(0)
            return (
                everything.gather(1, flat_targets.unsqueeze(1)).squeeze(1),
                everything[:, 1:],
                self.every_item_inputs(len(flat_targets)),
            )
        batch, steps = targets.shape
        wanted = bool(self.extra_inputs)
        negatives: list[Tensor] = []
        ids: list[Tensor] = []  # the item ids of each part of ``negatives`` (when wanted)
        probabilities: list[Tensor] = []  # and the probability with which each was drawn
        positive: Tensor | None = None
        if options.in_batch_negatives and batch > 1:
            pool = targets.t()
            padding = pool == PADDING_ITEM
            pool = torch.where(padding, self.sampler.sample(tuple(pool.shape)), pool)
            scores = network.score(hidden.transpose(0, 1), pool)  # [T, B, B]
            positive = at_positions(scores.diagonal(dim1=1, dim2=2).t(), positions)
            negatives.append(at_positions(_other_rows(scores), positions))
            if wanted:
                drawn = torch.where(
                    padding, self.sampler.probabilities(pool), self.target_probabilities[pool]
                )
                ids.append(
                    at_positions(
                        _other_rows(pool.unsqueeze(1).expand(steps, batch, batch)), positions
                    )
                )
                probabilities.append(
                    at_positions(
                        _other_rows(drawn.unsqueeze(1).expand(steps, batch, batch)), positions
                    )
                )
        if options.negatives > 0:
            count = len(flat_targets)
            if options.shared_negatives:
                sampled = self.sampler.sample((1, options.negatives))
                negatives.append(network.score(flat_hidden.unsqueeze(0), sampled).squeeze(0))
                if wanted:
                    ids.append(sampled.expand(count, -1))
                    probabilities.append(self.sampler.probabilities(sampled).expand(count, -1))
            else:
                exclude = flat_targets if options.exclude_positive else None
                sampled = self.sampler.sample((count, options.negatives), exclude)
                if wanted:
                    ids.append(sampled)
                    probabilities.append(self.sampler.probabilities(sampled))
                if positive is None:
                    sampled = torch.cat((flat_targets.unsqueeze(1), sampled), dim=1)
                scores = network.score(flat_hidden.unsqueeze(1), sampled).squeeze(1)
                if positive is None:
                    positive, scores = scores[:, 0], scores[:, 1:]
                negatives.append(scores)
        if not negatives:
            raise ConfigError(
                f"{self.name} has no negatives to train with",
                hint="set negatives > 0 or in_batch_negatives=true with batch_size > 1",
            )
        if positive is None:
            positive = network.score(flat_hidden.unsqueeze(1), flat_targets.unsqueeze(1))
            positive = positive.reshape(-1)
        negative = negatives[0] if len(negatives) == 1 else torch.cat(negatives, dim=1)
        extra = {}
        if wanted:
            extra = self.loss_inputs(torch.cat(ids, dim=1), torch.cat(probabilities, dim=1))
        return positive, negative, extra

    def loss_inputs(self, candidate_ids: Tensor, probabilities: Tensor) -> dict[str, Tensor]:
        """The keyword arguments of the loss besides the scores: those of
        ``candidate_ids`` (int64 ``[M, N]``, the item id of each ``negative`` column) and
        ``sampling_probabilities`` (float32 ``[M, N]``, the probability with which it was
        drawn) that the loss names in its ``extra_inputs``.

        A sampled negative's probability is that of one draw of the sampler
        (:meth:`recbench.train.sampling.NegativeSampler.probabilities`); an in-batch
        negative (another sequence's target) has its share of the training events; with
        ``candidates = "all"`` every item is scored and has probability 1.
        """
        given = {"candidate_ids": candidate_ids, "sampling_probabilities": probabilities}
        return {name: given[name] for name in self.extra_inputs}

    def every_item_inputs(self, rows: int) -> dict[str, Tensor]:
        """:meth:`loss_inputs` of ``rows`` predictions scored against every item."""
        if not self.extra_inputs:
            return {}
        items = torch.arange(1, self.train.n_items + 1, device=self.device)
        candidates = items.unsqueeze(0).expand(rows, -1)
        return self.loss_inputs(candidates, torch.ones(candidates.shape, device=self.device))

    @functools.cached_property
    def target_probabilities(self) -> Tensor:
        """float32 ``[n_items + 1]``: each item's share of the training events."""
        counts = torch.as_tensor(np.asarray(self.ctx.item_counts), dtype=torch.float64)
        return (counts / counts.sum()).to(self.device, torch.float32)

    def update(
        self, hidden: Tensor, targets: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, int]:
        """One optimiser step on the loss of ``hidden`` against ``targets`` (at
        ``positions``, see :meth:`predictions`); returns the loss (detached) and the
        number of predictions."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.all_candidates:
            loss, count = self.all_candidates_backward(hidden, targets, positions)
        else:
            with self.autocast():
                positive, negative, extra = self.scored(hidden, targets, positions)
            loss = self.loss(positive.float(), negative.float(), **extra)
            loss.backward()
            loss, count = loss.detach(), len(positive)
        if self.options.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.options.clip_norm)
        self.optimizer.step()
        return loss, count

    def all_candidates_backward(
        self, hidden: Tensor, targets: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, int]:
        """Loss and gradients of a loss over every item's score (``cce``), a block of
        predictions at a time: the ``[M, n_items]`` score matrix never exists in full,
        only blocks of about :data:`SCORE_BLOCK` scores. The loss is a mean over
        predictions, so block losses weighted by their share of ``M`` add up to it; the
        gradient reaches the encoder once, through the (detached) representations."""
        if positions is None:
            positions = torch.nonzero((targets != PADDING_ITEM).reshape(-1)).squeeze(1)
        flat_hidden, flat_targets = (
            at_positions(hidden, positions),
            at_positions(targets, positions),
        )
        count = len(flat_targets)
        detached = flat_hidden.detach().requires_grad_()
        block = SCORE_BLOCK.get(self.device.type, SCORE_BLOCK["cuda"])
        rows = max(1, block // (self.train.n_items + 1))
        total = torch.zeros((), device=self.device)
        every_item_loss = None if self.extra_inputs else getattr(self.loss, "every_item_loss", None)
        for start in range(0, count, rows):
            part = slice(start, start + rows)
            with self.autocast():
                scores = self.network.score(detached[part].unsqueeze(0), None).squeeze(0)
            if every_item_loss is not None:
                loss = every_item_loss(scores, flat_targets[part])
            else:
                positive = scores.gather(1, flat_targets[part].unsqueeze(1)).squeeze(1)
                extra = self.every_item_inputs(len(positive))
                loss = self.loss(positive.float(), scores[:, 1:].float(), **extra)
            loss = loss * (len(scores) / count)
            loss.backward()
            total += loss.detach()
        flat_hidden.backward(detached.grad)
        return total, count

    # -- epochs ----------------------------------------------------------------------
    def padded_epoch(self, epoch: int, bar: ProgressBar) -> tuple[float, int]:
        lengths = self.windows[1]
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        predictions = 0
        batches = epoch_batches(
            lengths, self.options.batch_size, self.rng, self.options.sort_by_length
        )
        # Everything a batch needs from the host is computed here and copied to the device
        # once per epoch: a copy from pageable memory, a ``.max()`` read back or a boolean
        # mask per batch would each make a CUDA device wait for the host.
        widths = [int(lengths[batch].max()) for batch in batches]
        positions = [
            prediction_positions(lengths[batch], width)
            for batch, width in zip(batches, widths, strict=True)
        ]
        batch_bounds = np.cumsum([0] + [len(batch) for batch in batches])
        input_lengths = [lengths[batch] - 1 for batch in batches]  # real inputs per row
        position_bounds = np.cumsum([0] + [len(p) for p in positions])
        all_index = torch.as_tensor(np.concatenate(batches), device=self.device)
        all_positions = torch.as_tensor(np.concatenate(positions), device=self.device)
        for number, width in enumerate(widths, 1):
            index = all_index[batch_bounds[number - 1] : batch_bounds[number]]
            where = all_positions[position_bounds[number - 1] : position_bounds[number]]
            window = gather_windows(
                self.items, self.window_starts[index], self.window_lengths[index], width
            )
            with self.autocast():
                if self.group_rows:
                    hidden = encode_by_length(
                        self.encode, window[:, :-1], input_lengths[number - 1], self.group_rows
                    )
                else:
                    hidden = self.encode(window[:, :-1])
            loss, count = self.update(hidden, window[:, 1:], where)
            total += loss * count
            predictions += count
            if number % self.check_every == 0 or number == len(batches):
                self.loop.check_finite(float(total), epoch, number)
            bar.advance(1)
        return float(total) / max(predictions, 1), predictions

    def session_parallel_epoch(self, epoch: int, bar: ProgressBar) -> tuple[float, int]:
        network: Any = self.network
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        predictions = 0
        state: tuple[Tensor, ...] = network.initial_state(
            min(self.options.batch_size, len(self.train))
        )
        for number, (inputs, targets, reset, keep) in enumerate(
            _Lanes(self.train, self.options.batch_size, self.rng), 1
        ):
            if keep is not None:
                index = torch.as_tensor(keep, device=self.device)
                state = tuple(s[index] for s in state)
            if reset.any():
                zero = torch.as_tensor(reset, device=self.device).unsqueeze(1)
                state = tuple(s.masked_fill(zero, 0.0) for s in state)
            items = torch.as_tensor(inputs, dtype=torch.int64, device=self.device)
            target = torch.as_tensor(targets, dtype=torch.int64, device=self.device)
            with self.autocast():
                hidden, state = network.step(items, state)
            loss, count = self.update(
                hidden.unsqueeze(1),
                target.unsqueeze(1),
                torch.arange(len(target), device=self.device),
            )
            state = tuple(s.detach() for s in state)
            total += loss * count
            predictions += count
            if number % self.check_every == 0:
                self.loop.check_finite(float(total), epoch, number)
            bar.advance(count)
        return float(total) / max(predictions, 1), predictions  # checked by the loop

    def run(self) -> TrainingHistory:
        options, ctx = self.options, self.ctx
        started = time.perf_counter()
        self.items = torch.as_tensor(self.train.items, dtype=torch.int64, device=self.device)
        self.windows = training_windows(self.train, options.max_length, options.windows)
        self.window_starts = torch.as_tensor(self.windows[0], device=self.device)
        self.window_lengths = torch.as_tensor(self.windows[1], device=self.device)
        if options.batching == "padded" and len(self.windows[0]) == 0:
            raise ConfigError(
                f"{self.name}: no training sequence has 2 or more items",
                hint="use a larger training set",
            )
        if options.bf16 and not self.use_bf16:
            ctx.progress.log(f"{self.name}: bf16 autocast is for CUDA only; training in float32")
        if options.batching == "padded":
            epoch, steps = self.padded_epoch, -(-len(self.windows[0]) // options.batch_size)
        else:
            epoch = self.session_parallel_epoch
            steps = int(np.maximum(self.train.lengths - 1, 0).sum())
        validate: Callable[[], float] | None = None
        if ctx.validate is not None:
            validate = functools.partial(ctx.validate, self.model)
        history = self.loop.run(
            self.network,
            epoch,
            steps=steps,
            validate=validate,
            checkpoint_dir=ctx.checkpoint_dir,
            device=self.device,
            progress=ctx.progress,
        )
        history.seconds = time.perf_counter() - started
        return history


def length_groups(lengths: np.ndarray, rows: int) -> list[np.ndarray]:
    """The row indices of a batch whose rows have ``lengths``, longest rows first, in
    ``round(len(lengths) / rows)`` groups (at least one) of near-equal size."""
    order = np.argsort(-lengths, kind="stable")
    return np.array_split(order, max(1, round(len(lengths) / rows)))


def encode_by_length(
    encode: Callable[[Tensor], Tensor], inputs: Tensor, lengths: np.ndarray, rows: int
) -> Tensor:
    """``encode(inputs)`` for start-aligned rows of ``lengths`` real items
    (``[B, T]`` -> ``[B, T, ...]``), computed in groups of about ``rows`` rows
    (:func:`length_groups`), each group cut to its longest row. Outputs at padding
    positions mean nothing, as in one call (zeros past a group's longest row).

    Exact for a network that encodes rows independently (what ``length_group_rows``
    declares) and causally: a row's outputs at its real positions depend neither on the
    other rows nor on the padding after it. Only the floating-point order of the weight
    gradients' sums changes.
    """
    groups = length_groups(lengths, rows)
    if len(groups) == 1:
        return encode(inputs)
    steps = inputs.shape[1]
    parts = []
    for group in groups:
        width = max(int(lengths[group[0]]), 1)
        part = encode(inputs[torch.as_tensor(group, device=inputs.device), :width])
        after_steps = [0, 0] * (part.dim() - 2)  # F.pad lists the last axis first
        parts.append(torch.nn.functional.pad(part, [*after_steps, 0, steps - width]))
    order = np.concatenate(groups)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return torch.cat(parts).index_select(0, torch.as_tensor(inverse, device=inputs.device))


def prediction_positions(lengths: np.ndarray, width: int) -> np.ndarray:
    """Flat positions in a ``[B, width - 1]`` target block of start-aligned windows of
    ``lengths`` items: row ``b`` predicts at ``0 .. lengths[b] - 2``. The same positions,
    in the same order, as the boolean mask ``targets != 0``, computed on the host."""
    counts = lengths.astype(np.int64) - 1
    rows = np.repeat(np.arange(len(lengths)), counts)
    steps = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows * (width - 1) + steps


def at_positions(values: Tensor, positions: Tensor) -> Tensor:
    """``values [B, T, ...]`` at the flat ``positions`` of its first two axes,
    ``[len(positions), ...]`` (:func:`prediction_positions`)."""
    return values.reshape(-1, *values.shape[2:]).index_select(0, positions)


def _other_rows(values: Tensor) -> Tensor:
    """``[T, B, B]`` -> ``[B, T, B - 1]``: ``values[t, b]`` without its column ``b`` (row
    ``b``'s own target among the mini-batch's targets at step ``t``)."""
    steps, batch = values.shape[0], values.shape[1]
    return (
        values.reshape(steps, batch * batch)[:, 1:]
        .reshape(steps, batch - 1, batch + 1)[:, :, :-1]
        .reshape(steps, batch, batch - 1)
        .transpose(0, 1)
    )


def fit_network(
    model: Any,
    network: SequenceNetwork,
    train: Sequences,
    ctx: FitContext,
    options: TrainingOptions,
    *,
    name: str,
) -> TrainingHistory:
    """Train ``network`` (already on ``ctx.device``) on ``train``.

    Parameters
    ----------
    model:
        The model object that ``ctx.validate`` evaluates (its ``score`` must use
        ``network``).
    network:
        The :class:`SequenceNetwork` to train, in place.
    train:
        The training sequences.
    ctx:
        Device, seed, item counts, progress and the validation callback.
    options:
        The trainer's options (usually the model's own ``Options``).
    name:
        The model's name in messages.

    Returns
    -------
    TrainingHistory
        Per-epoch loss, validation metric and timing; the network is left in eval mode
        with the best validated weights (the last ones without validation).

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or infinite.
    ConfigError
        For an unknown loss, bad loss options, or options that leave nothing to train.
    """
    return _Trainer(model, network, train, ctx, options, name).run()
