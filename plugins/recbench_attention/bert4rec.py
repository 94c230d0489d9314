"""BERT4Rec: a bidirectional transformer trained with the cloze objective (Sun et al., 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbench.plugin import (
    PADDING_ITEM,
    Choice,
    EpochLoop,
    FitContext,
    FloatRange,
    IntRange,
    ProgressBar,
    Queries,
    ScoringCell,
    SequenceBatch,
    Sequences,
    TrainingHistory,
)
from recbench_attention.layers import FeedForward, MultiHeadProjections, attend

State = tuple[Tensor, ...]


#: The epochs cap of a tuning trial (early stopping and pruning end most trials sooner).
CLOZE_TUNING_EPOCHS = 100


@dataclass(frozen=True)
class BERT4RecOptions:
    """Options of ``bert4rec``.

    max_length:
        ``N``, the tokens the encoder reads: in training a window of ``N`` items, in
        prediction the last ``N - 1`` items and the mask token. 200, the paper's ``N``
        for MovieLens-1M and -20M (50 for Beauty and Steam).
    mask_probability:
        ``ρ``, the share of a training window's items replaced by the mask token (each
        item independently): 0.2, the paper's best value for MovieLens-1M and -20M (0.6
        for Beauty, 0.4 for Steam). A window left without a mask gets its last item
        masked.
    embedding_dim, layers, heads:
        ``d = 64``, 2 blocks of 2 heads: the paper's.
    dropout:
        0.1, the paper's, on the embeddings, attention outputs and feed-forward network.
    epochs, batch_size, learning_rate, l2:
        Adam with batches of 32 at 1e-3 and L2 (weight decay) 0, up to 200 epochs.
        The paper: batches of 256 at 1e-4 with L2 0.01 and a linear decay, for 400,000
        steps -- far beyond a CPU budget; the larger rate and small batches give many
        steps per epoch on a small dataset (27 on ML-100K's 855 windows).
    validate_every, patience:
        Validate every epoch; stop after 20 validations without improvement. Only the
        masked fifth of the items teaches the cloze objective, so it learns slowly and
        its validation values wander: on ML-100K's validation users (last item of 200
        users) the earlier defaults (batches of 128, patience 5) stopped after 16
        epochs at mrr@20 0.0430 (epoch 11), little above popularity (0.0366), while
        batches of 32 reached 0.0633 by epoch 17 and 0.0835 by epoch 36, where patience
        20 keeps them (sasrec's defaults: 0.067), with drops of up to 0.03 between
        those peaks.
    """

    max_length: int = 200
    mask_probability: float = 0.2
    embedding_dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    l2: float = 0.0
    validate_every: int = 1
    patience: int = 20

    def __post_init__(self) -> None:
        for name in ("max_length", "epochs", "batch_size", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_length < 2:
            raise ValueError("max_length must be at least 2 (one item and the mask)")
        if self.layers < 1 or self.heads < 1 or self.embedding_dim % self.heads:
            raise ValueError("layers and heads must be positive, heads dividing embedding_dim")
        if not 0.0 < self.mask_probability <= 1.0:
            raise ValueError("mask_probability must be in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if not self.learning_rate > 0 or self.l2 < 0 or self.patience < 0:
            raise ValueError("learning_rate must be positive, l2 and patience not negative")


class BidirectionalBlock(nn.Module):
    """One transformer block as in BERT (post-normalised): ``x = LN(x + Drop(MH(x)))``,
    ``x = LN(x + Drop(FFN(x)))``, the FFN with GELU and inner size ``4d``. Attention is
    bidirectional; only padding is masked out."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadProjections(dim, heads)
        self.attention_norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, 4 * dim, "gelu", dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        query, key, value = self.attention.split(x)
        out = self.attention.merge(attend(query, key, value, allowed))
        x = self.attention_norm(x + self.dropout(out))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class BERT4RecNetwork(nn.Module):
    """Token embeddings (the items, padding 0 and the mask token ``n_items + 1``) plus
    learned position embeddings -> layer norm, dropout -> ``layers`` bidirectional
    blocks -> ``h``; the output layer of the paper, ``GELU(h W + b) Eᵀ + b_O``, with the
    item embeddings ``E`` shared.

    Positions count back from the end of the input (0: the last token), so that the
    token to predict -- the appended mask -- always has position 0 and a left-padded
    input needs no shifting.
    """

    def __init__(self, n_items: int, options: BERT4RecOptions):
        super().__init__()
        dim = options.embedding_dim
        self.n_items, self.length = n_items, options.max_length
        self.mask_token = n_items + 1
        self.tokens = nn.Embedding(n_items + 2, dim, padding_idx=PADDING_ITEM)
        self.positions = nn.Embedding(options.max_length, dim)
        for embedding in (self.tokens, self.positions):
            nn.init.trunc_normal_(embedding.weight, std=0.02, a=-0.04, b=0.04)
        with torch.no_grad():
            self.tokens.weight[PADDING_ITEM].zero_()
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(options.dropout)
        self.blocks = nn.ModuleList(
            BidirectionalBlock(dim, options.heads, options.dropout) for _ in range(options.layers)
        )
        self.transform = nn.Linear(dim, dim)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))

    def encode(self, tokens: Tensor) -> Tensor:
        """Left-padded tokens ``[B, T]`` (``T <= max_length``) -> ``[B, T, D]``, the
        output transform applied."""
        steps = tokens.shape[1]
        recency = torch.arange(steps - 1, -1, -1, device=tokens.device)
        x = self.tokens(tokens) + self.positions(recency)
        x = self.dropout(self.input_norm(x))
        allowed = (tokens != PADDING_ITEM).unsqueeze(1).unsqueeze(1)  # [B, 1, 1, T]
        for block in self.blocks:
            x = block(x, allowed)
        return F.gelu(self.transform(x))

    def output_weights(self) -> tuple[Tensor, Tensor]:
        """The item vectors ``[n_items + 1, D]`` (the mask token left out) and bias."""
        return self.tokens.weight[: self.n_items + 1], self.item_bias

    def scores(self, hidden: Tensor) -> Tensor:
        """``[..., D]`` -> ``[..., n_items + 1]``."""
        weight, bias = self.output_weights()
        return hidden @ weight.t() + bias

    def predict(self, window: Tensor) -> Tensor:
        """Left-padded items ``[B, N - 1]`` -> the output at the appended mask ``[B, D]``."""
        mask = torch.full_like(window[:, :1], self.mask_token)
        return self.encode(torch.cat((window, mask), dim=1))[:, -1]

    # -- what the one-step cell calls --
    def initial_state(self, batch_size: int) -> State:
        """``window`` int64 ``[B, N - 1]``: the last items, 0 before the first."""
        device = self.item_bias.device
        return (torch.zeros(batch_size, self.length - 1, dtype=torch.int64, device=device),)

    def step(self, items: Tensor, state: State) -> tuple[Tensor, State]:
        (window,) = state
        window = torch.cat((window[:, 1:], items.unsqueeze(1)), dim=1)
        return self.predict(window), (window,)


class BERT4RecCell(ScoringCell):
    """One ``bert4rec`` step: ``(item_ids [B], window [B, N - 1] int64) -> (scores,
    window)``. The honest cell of a bidirectional model: every step re-encodes the whole
    window with the mask appended, ``O(layers · N² · d)``; no cache helps, since a new
    item changes every earlier position's output."""

    state_names = ("window",)
    serving_note = (
        "re-encodes the last max_length - 1 items with the mask appended at every step "
        "(a bidirectional model has no incremental state: a new item changes every "
        "earlier position's output), so a step costs a whole forward pass"
    )


class BERT4RecModel:
    """BERT4Rec, sequential recommendation with bidirectional encoder representations
    from transformers (Sun et al., 2019).

    Items (and learned position embeddings) pass through ``layers`` bidirectional
    transformer blocks. **Training** is the cloze task: in every window of
    ``max_length`` items each item is replaced by a mask token with probability
    ``mask_probability`` and the model predicts the masked items, with a full softmax
    cross-entropy over the catalogue (windows left without a mask get their last item
    masked, like the paper's extra samples that mask only the last item).
    **Prediction** appends a mask token to the last ``max_length - 1`` items and scores
    every item at its position: ``GELU(h W + b) Eᵀ + b_O``.

    Not trained by the shared next-item trainer (the objective differs), but by its
    epoch loop (:class:`recbench.plugin.EpochLoop`): early stopping on the validation
    users, best weights kept.

    Defaults (:class:`BERT4RecOptions`): the paper's architecture for MovieLens-1M
    (``d = 64``, 2 layers, 2 heads, dropout 0.1, ``N = 200``, ``ρ = 0.2``) with a larger
    learning rate than its 1e-4 and batches of 32, so that it trains in minutes on a CPU,
    and a patience of 20 validations.

    References
    ----------
    Sun, Liu, Wu, Pei, Lin, Ou, Jiang. BERT4Rec: sequential recommendation with
    bidirectional encoder representations from transformer. CIKM 2019.
    Petrov, Macdonald. A systematic review and replicability study of BERT4Rec for
    sequential recommendation. RecSys 2022.
    """

    id = "bert4rec"
    summary = "BERT4Rec: bidirectional transformer, cloze objective, full cross-entropy"
    version = "1"
    Options = BERT4RecOptions
    #: What ``recbench tune`` tries: the paper's mask probabilities (0.1 to 0.6 across
    #: its datasets), learning rates from its 1e-4 up, batches from 32, dropout, ``d``,
    #: blocks, heads and ``N``; epochs capped at :data:`CLOZE_TUNING_EPOCHS` (the cloze
    #: objective learns from a fifth of the items, so it needs more epochs than the
    #: next-item models' :data:`TUNING_EPOCHS`), early stopping and pruning doing the rest.
    search_space: ClassVar[dict[str, Any]] = {
        "learning_rate": FloatRange(1e-4, 1e-2, log=True),
        "batch_size": Choice((32, 64, 128, 256)),
        "l2": Choice((0.0, 1e-6, 1e-5, 1e-4)),
        "epochs": Choice((CLOZE_TUNING_EPOCHS,)),
        "mask_probability": FloatRange(0.1, 0.6),
        "max_length": Choice((50, 100, 200)),
        "embedding_dim": IntRange(32, 128, step=32),
        "layers": IntRange(1, 3),
        "heads": Choice((1, 2)),
        "dropout": FloatRange(0.1, 0.6),
    }

    def __init__(self, options: BERT4RecOptions | None = None):
        self.options = options if options is not None else BERT4RecOptions()
        self.network: BERT4RecNetwork | None = None
        self.history: TrainingHistory | None = None

    @property
    def max_length(self) -> int:
        """The items read: ``max_length - 1`` (the last token is the mask)."""
        return self.options.max_length - 1

    def build_network(self, n_items: int) -> BERT4RecNetwork:
        return BERT4RecNetwork(n_items, self.options)

    def fit(self, train: Sequences, valid: Queries | None, ctx: FitContext) -> None:
        options = self.options
        torch.manual_seed(ctx.seed)
        network = self.network = self.build_network(train.n_items).to(ctx.device)
        windows = cloze_windows(train, options.max_length)
        optimizer = torch.optim.Adam(
            network.parameters(), lr=options.learning_rate, weight_decay=options.l2
        )
        rng = np.random.default_rng(ctx.seed)
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)

        def train_epoch(epoch: int, bar: ProgressBar) -> tuple[float, int]:
            total = torch.zeros((), dtype=torch.float64, device=ctx.device)
            count = 0
            order = rng.permutation(len(windows))
            for start in range(0, len(order), options.batch_size):
                batch = torch.as_tensor(windows[order[start : start + options.batch_size]])
                tokens, targets = mask_items(
                    batch.to(ctx.device), options.mask_probability, network.mask_token, generator
                )
                hidden = network.encode(tokens)
                chosen = targets != PADDING_ITEM
                logits = network.scores(hidden[chosen])[:, 1:]
                loss = F.cross_entropy(logits, targets[chosen] - 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().double() * int(chosen.sum())
                count += int(chosen.sum())
                bar.advance()
            return float(total) / max(count, 1), count

        loop = EpochLoop(
            self.id,
            epochs=options.epochs,
            patience=options.patience,
            validate_every=options.validate_every,
            metric_name=ctx.validation_metric or "validation metric",
        )
        self.history = loop.run(
            network,
            train_epoch,
            steps=-(-len(windows) // options.batch_size),
            validate=None if ctx.validate is None else lambda: ctx.validate(self),  # type: ignore[misc]
            checkpoint_dir=ctx.checkpoint_dir,
            device=torch.device(ctx.device),
            progress=ctx.progress,
        )

    def _trained(self) -> BERT4RecNetwork:
        if self.network is None:
            raise RuntimeError("BERT4RecModel: score() or cell() called before fit()")
        return self.network

    def score(self, batch: SequenceBatch) -> Tensor:
        network = self._trained()
        window = batch.items[:, -(network.length - 1) :]
        return network.scores(network.predict(window))

    def cell(self) -> BERT4RecCell:
        """The one-step module that re-encodes its window (:class:`BERT4RecCell`)."""
        return BERT4RecCell(self._trained())


def cloze_windows(sequences: Sequences, length: int) -> np.ndarray:
    """Every sequence of 2 or more items cut into windows of at most ``length`` items,
    counted from its end, as left-padded rows int64 ``[windows, length]``."""
    rows: list[np.ndarray] = []
    for user in np.flatnonzero(sequences.lengths >= 2):
        items = sequences.items[sequences.offsets[user] : sequences.offsets[user + 1]]
        for end in range(len(items), 1, -length):
            rows.append(items[max(0, end - length) : end])
    windows = np.zeros((len(rows), length), dtype=np.int64)
    for row, items in enumerate(rows):
        windows[row, length - len(items) :] = items
    return windows


def mask_items(
    windows: Tensor, probability: float, mask_token: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The cloze task of left-padded ``windows`` ``[B, N]``: each item masked with
    ``probability`` (the last item of a row left without a mask); returns the tokens and
    the targets (the masked items, 0 elsewhere)."""
    real = windows != PADDING_ITEM
    draws = torch.rand(windows.shape, generator=generator, device=windows.device)
    masked = real & (draws < probability)
    masked[:, -1] |= ~masked.any(dim=1)
    tokens = windows.masked_fill(masked, mask_token)
    return tokens, windows.masked_fill(~masked, PADDING_ITEM)
