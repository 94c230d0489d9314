"""The pieces both attention models are built from: multi-head attention with an explicit
mask, rotary position encoding, the point-wise feed-forward network.

Attention is written out (``softmax(q kᵀ / √d_h + mask) v``) rather than taken from
``torch.nn.MultiheadAttention``, so that the same code runs over a whole sequence in
training, over one new item and a key/value cache in the serving cell (exported to
ONNX), and over chunks of a long history in one-pass scoring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The epochs cap of a tuning trial (early stopping and pruning end most trials sooner).
TUNING_EPOCHS = 25

#: The base of the rotary frequencies (Su et al., 2021).
ROTARY_BASE = 10_000.0


def attend(query: Tensor, keys: Tensor, values: Tensor, allowed: Tensor) -> Tensor:
    """Scaled dot-product attention: ``query`` ``[B, H, Tq, d]``, ``keys`` and ``values``
    ``[B, H, Tk, d]``, ``allowed`` bool broadcastable to ``[B, H, Tq, Tk]`` (every query
    must be allowed at least one key) -> ``[B, H, Tq, d]``."""
    logits = query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1])
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1) @ values


def rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary position encoding (RoPE, Su et al., 2021) of ``x`` ``[..., T, d]`` (``d``
    even) at integer ``positions`` ``[T]``: the pair ``(x_i, x_{i + d/2})`` is turned by
    the angle ``position · base^(-2i/d)``. The dot product of a rotated query and a
    rotated key depends only on the difference of their positions, so keys cached
    *before* rotation stay valid whatever position the window starts at."""
    half = x.shape[-1] // 2
    frequencies = ROTARY_BASE ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = positions.to(torch.float32).unsqueeze(-1) * frequencies  # [T, d/2]
    cos, sin = angles.cos(), angles.sin()
    first, second = x[..., :half], x[..., half:]
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class MultiHeadProjections(nn.Module):
    """The query, key, value and output projections of ``heads`` attention heads over
    ``dim`` features (``dim`` divisible by ``heads``)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, T, D]`` -> query, key, value, each ``[B, H, T, D / H]``."""
        batch, steps, _ = x.shape
        qkv = self.qkv(x).reshape(batch, steps, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def merge(self, x: Tensor) -> Tensor:
        """``[B, H, T, D / H]`` -> the output projection ``[B, T, D]``."""
        batch, _, steps, _ = x.shape
        return self.out(x.transpose(1, 2).reshape(batch, steps, -1))


class FeedForward(nn.Module):
    """The point-wise feed-forward network ``W₂ act(W₁ x + b₁) + b₂``, applied to every
    position alike, with dropout after the activation."""

    def __init__(self, dim: int, inner: int, activation: str, dropout: float):
        super().__init__()
        self.inner = nn.Linear(dim, inner)
        self.outer = nn.Linear(inner, dim)
        self.activation = F.gelu if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.outer(self.dropout(self.activation(self.inner(x))))
