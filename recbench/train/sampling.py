"""Negative sampling: items drawn uniformly or by popularity, never the padding item.

Item ids run from 1 to ``n_items`` (0 is padding, :mod:`recbench.data.interactions`). A
:class:`NegativeSampler` draws ids from

- ``uniform``: every item with the same probability;
- ``popularity``: item ``j`` with probability proportional to ``count_j ** alpha``, where
  ``count_j`` is its number of training events (``alpha = 1``: as often as it occurs,
  ``alpha = 0``: uniform over the items seen in training; 0.75 is word2vec's and
  GRU4Rec's usual choice).

Draws happen on the sampler's device with its own seeded :class:`torch.Generator`, so a
run is reproducible and nothing crosses between host and device.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

SamplingDistribution = Literal["uniform", "popularity"]

#: Redraws of a popularity sample that hit the excluded item before falling back to a
#: uniform draw among the other items.
POPULARITY_REDRAWS = 4


class NegativeSampler:
    """Draws negative item ids on a device.

    Parameters
    ----------
    n_items:
        Items are ``1 .. n_items``.
    distribution:
        ``"uniform"`` or ``"popularity"``.
    item_counts:
        int ``[n_items + 1]``: training events per item id (index 0 is padding). Needed
        for ``"popularity"``; items with no event are never drawn then.
    alpha:
        The popularity exponent.
    device:
        Where samples are drawn and returned.
    seed:
        Seeds the sampler's generator.
    """

    def __init__(
        self,
        n_items: int,
        distribution: SamplingDistribution = "uniform",
        *,
        item_counts: np.ndarray | None = None,
        alpha: float = 1.0,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if n_items < 1:
            raise ValueError("n_items must be at least 1")
        if distribution not in ("uniform", "popularity"):
            raise ValueError(
                f"distribution must be 'uniform' or 'popularity', got {distribution!r}"
            )
        self.n_items = n_items
        self.distribution = distribution
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._cdf: torch.Tensor | None = None
        self._pmf: torch.Tensor | None = None
        if distribution == "popularity":
            if item_counts is None or len(item_counts) != n_items + 1:
                raise ValueError("popularity sampling needs item_counts of length n_items + 1")
            weights = np.asarray(item_counts[1:], dtype=np.float64) ** alpha
            weights[np.asarray(item_counts[1:]) <= 0] = 0.0
            if weights.sum() <= 0:
                raise ValueError("popularity sampling needs at least one item with events")
            pmf = weights / weights.sum()
            cdf = np.cumsum(pmf)
            cdf[-1] = 1.0
            self._cdf = torch.as_tensor(cdf, device=self.device)
            self._pmf = torch.as_tensor(np.concatenate([[0.0], pmf]), device=self.device)

    def sample(self, shape: tuple[int, ...], exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Item ids, int64 of ``shape``, in ``1 .. n_items``.

        Parameters
        ----------
        shape:
            The shape of the result.
        exclude:
            int64 with the leading dimensions of ``shape`` (``shape[:-1]``): an item that
            must not be drawn in the matching row (the positive). Uniform sampling
            excludes it exactly; popularity sampling redraws the rare hits a few times
            and then draws uniformly among the other items.
        """
        if self._cdf is None:
            return self._uniform(shape, exclude)
        uniform = torch.rand(
            shape, generator=self.generator, device=self.device, dtype=torch.float64
        )
        items = torch.searchsorted(self._cdf, uniform, right=True).clamp_(max=self.n_items - 1) + 1
        if exclude is None or self.n_items < 2:
            return items
        excluded = exclude.unsqueeze(-1).expand(shape)
        for _ in range(POPULARITY_REDRAWS):
            hits = items == excluded
            if not bool(hits.any()):
                return items
            redraw = torch.rand(
                shape, generator=self.generator, device=self.device, dtype=torch.float64
            )
            redrawn = torch.searchsorted(self._cdf, redraw, right=True).clamp_(max=self.n_items - 1)
            items = torch.where(hits, redrawn + 1, items)
        hits = items == excluded
        return torch.where(hits, self._uniform(shape, exclude), items)

    def probabilities(self, items: torch.Tensor) -> torch.Tensor:
        """float32 of ``items``' shape: the probability that one draw gives each item.

        ``1 / n_items`` for ``uniform``; ``count ** alpha`` over its sum for
        ``popularity`` (0 for padding and for items without training events). This is
        the distribution a draw comes from; :meth:`sample`'s exclusion of the positive
        changes it only for the row of that positive (a log-Q correction leaves that
        aside, as is usual).
        """
        if self._pmf is None:
            return torch.full(items.shape, 1.0 / self.n_items, device=items.device)
        return self._pmf[items].float()

    def _uniform(self, shape: tuple[int, ...], exclude: torch.Tensor | None) -> torch.Tensor:
        if exclude is None or self.n_items < 2:
            return torch.randint(
                1, self.n_items + 1, shape, generator=self.generator, device=self.device
            )
        # Uniform over the n_items - 1 other items: draw from 1..n-1, shift those >= exclude.
        items = torch.randint(1, self.n_items, shape, generator=self.generator, device=self.device)
        return items + (items >= exclude.unsqueeze(-1)).long()
