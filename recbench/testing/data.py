"""The kit's tiny dataset: small structured sequences, split and ready, for testing plugins.

:func:`tiny_data` builds it (through the ``synthetic`` dataset plugin, found by discovery as
any dataset is) and :class:`TinyData` holds it, with the queries, rankings, rating split,
fit context and evaluation a plugin's tests need.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from recbench.contracts import FitContext, PluginLookup
    from recbench.data.interactions import Sequences
    from recbench.data.prepare import DataContext
    from recbench.data.protocols import Queries
    from recbench.data.ratings import RatingSplit
    from recbench.data.splits import Split
    from recbench.ranking import Ranking

#: Options of the ``synthetic`` dataset that make the kit's tiny data: a first-order
#: structure (each item has two likely successors, four topics) that a sequence model
#: learns within one epoch and popularity cannot. Many short sequences: an epoch costs
#: little (32,000 events) but holds many mini-batches (2,800 training users).
TINY_DATA_OPTIONS: dict[str, Any] = {
    "size": "tiny",
    "n_users": 4000,
    "n_items": 60,
    "n_events": 32_000,
    "n_topics": 4,
    "min_length": 4,
    "follow_probability": 0.8,
    "n_successors": 2,
}


#: The accuracy a model must beat popularity on: the mean of ``mrr@10`` over the
#: ``iterative`` queries of the test users.
LEARNING_METRIC, LEARNING_CUTOFF, LEARNING_PROTOCOL = "mrr", 10, "iterative"


class TinyData:
    """A small structured dataset, preprocessed and split, for testing plugins.

    Synthetic sequences (:data:`TINY_DATA_OPTIONS`) without repeats, split by users
    (10% validation, 20% test users, seed 0). Build it with :func:`tiny_data` (cached)
    or take the ``recbench_tiny_data`` fixture; treat it as read-only.

    Attributes
    ----------
    sequences:
        Every user's chronological sequence (item ids ``1..n_items``, 0 is padding).
    split:
        The training, validation and test users (:class:`recbench.data.splits.Split`).
    """

    def __init__(self, sequences: Sequences, split: Split):
        self.sequences = sequences
        self.split = split
        self._queries: dict[tuple[str, str], Queries] = {}
        self._rankings: dict[tuple[str, str, int, str], tuple[Ranking, int]] = {}

    @property
    def train(self) -> Sequences:
        return self.split.train

    @property
    def valid(self) -> Sequences:
        return self.split.valid

    @property
    def test(self) -> Sequences:
        return self.split.test

    @property
    def n_items(self) -> int:
        return int(self.sequences.n_items)

    @functools.cached_property
    def item_counts(self) -> np.ndarray:
        """int64 ``[n_items + 1]``: training events per item id."""
        return self.train.item_counts()

    def queries(self, protocol: str = "iterative", part: str = "test") -> Queries:
        """The queries of ``protocol`` (``half-split``, ``iterative``, ``last-item``) over
        the ``test`` or ``valid`` users."""
        from recbench.data.protocols import build_queries

        key = (protocol, part)
        if key not in self._queries:
            if part not in ("test", "valid"):
                raise ValueError(f"part must be 'test' or 'valid', got {part!r}")
            self._queries[key] = build_queries(protocol, getattr(self.split, part))
        return self._queries[key]

    def ranking(
        self, scenario: str, protocol: str, depth: int, device: str | torch.device = "cpu"
    ) -> tuple[Ranking, int]:
        """A top-``depth`` ranking of (at most 1,000) test queries of ``protocol``, and their
        number of users. ``scenario``: ``random``, ``popularity``, ``perfect`` (the next
        item first, then the other targets, then the rest of the sequence) or
        ``all-tied`` scores. Cached: do not modify it."""
        import numpy as np
        import torch

        from recbench.ranking import rank

        key = (scenario, protocol, depth, str(device))
        if key in self._rankings:
            return self._rankings[key]
        queries = self.queries(protocol)
        index = np.arange(min(len(queries), 1000), dtype=np.int64)
        shape = (len(index), self.n_items + 1)
        if scenario == "random":
            scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        elif scenario == "popularity":
            scores = torch.as_tensor(self.item_counts, dtype=torch.float32).expand(shape)
        elif scenario == "perfect":
            scores = torch.zeros(shape, dtype=torch.float64)
            around = queries.items_of(index, "cpu")
            scores[around.remaining_position, around.remaining_item] = (
                float(self.n_items + 1) - around.remaining_offset.clamp(max=self.n_items).double()
            )
        elif scenario == "all-tied":
            scores = torch.zeros(shape)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        ranking = rank(scores.to(device), queries, index, depth, exclude_seen=True)
        n_users = len(np.unique(queries.row[index]))
        self._rankings[key] = (ranking, n_users)
        return ranking, n_users

    def forget_rankings(self) -> None:
        """Drop the cached rankings (after a metric modified one)."""
        self._rankings.clear()

    @functools.cached_property
    def ratings(self) -> RatingSplit:
        """The same events as a rating split (:func:`recbench.tasks.rating.evaluation.split_ratings` with
        the default options, seed 0: 72% training, 8% validation, 20% test events), for
        rating models and metrics. Its ``fit_context(device)`` gives a model what a run
        would."""
        from recbench.data.ratings import RatingOptions, split_ratings

        return split_ratings(self.sequences, RatingOptions(), 0)

    def fit_context(
        self,
        device: str | torch.device = "cpu",
        seed: int = 0,
        registry: PluginLookup | None = None,
    ) -> FitContext:
        """The :class:`recbench.contracts.FitContext` a run would give a model: its
        ``validate(model)`` returns ``mrr@20`` on the validation users' last items; the
        trainer looks up losses in ``registry`` (default: the installed plugins)."""
        import torch

        from recbench.contracts import FitContext
        from recbench.registry import discover

        def validate(model: Any) -> float:
            return self.evaluate(model, protocol="last-item", part="valid", k=20, device=device)

        return FitContext(
            n_items=self.n_items,
            device=torch.device(device),
            seed=seed,
            item_counts=self.item_counts,
            validate=validate,
            validation_metric="mrr@20",
            registry=registry if registry is not None else discover(),
        )

    def evaluate(
        self,
        model: Any,
        *,
        protocol: str = LEARNING_PROTOCOL,
        part: str = "test",
        metric: str = LEARNING_METRIC,
        k: int = LEARNING_CUTOFF,
        device: str | torch.device = "cpu",
    ) -> float:
        """The mean of ``metric@k`` (``sps`` or ``mrr``) of a fitted model, through
        recbench's evaluation (batched ranking, seen items excluded, pessimistic ties)."""
        import torch

        from recbench.progress import Progress
        from recbench.tasks.ranking.evaluation import evaluate

        result = evaluate(
            model,
            self.queries(protocol, part),
            {metric: _KitMetric(metric)},
            cutoffs=(k,),
            item_counts=self.item_counts,
            device=torch.device(device),
            exclude_seen=True,
            ties="pessimistic",
            progress=Progress.silent(),
        )
        return result.summaries[f"{metric}@{k}"].mean


@functools.lru_cache(maxsize=4)
def tiny_data(seed: int = 0) -> TinyData:
    """The kit's tiny dataset (:class:`TinyData`); ``seed`` seeds the generator and the
    split. Cached: the same object for the same seed."""
    from recbench.config.options import parse_options
    from recbench.data.preprocess import PreprocessOptions, preprocess
    from recbench.data.splits import SplitOptions, make_split
    from recbench.registry import discover

    # Through the registry, as any dataset: the core imports no plugin module by name.
    synthetic = discover(allow=()).get("dataset", "synthetic").cls
    options = parse_options(
        synthetic.Options, {**TINY_DATA_OPTIONS, "seed": seed}, owner="the tiny data"
    )
    with tempfile.TemporaryDirectory() as folder:
        interactions = synthetic(options).load(data_context(Path(folder)))
    sequences, _ = preprocess(interactions, PreprocessOptions(min_item_pop=1), dataset="tiny")
    split = make_split(sequences, SplitOptions(valid=0.1, test=0.2), seed)
    return TinyData(sequences, split)


def data_context(folder: Path) -> DataContext:
    """A data context whose data, download and cache folders lie in ``folder``, offline."""
    from recbench.data.prepare import DataContext

    return DataContext(
        data_root=folder / "data",
        download_root=folder / "data",
        cache_root=folder / "cache",
        offline=True,
    )


class _KitMetric:
    """``sps`` or ``mrr`` computed by the kit itself, so that checking a plugin never
    depends on which metric plugins are installed."""

    version = "kit"
    per_query = True
    higher_is_better = True
    bounds = (0.0, 1.0)

    def __init__(self, name: str):
        if name not in ("sps", "mrr"):
            raise ValueError(f"the kit computes sps or mrr, not {name!r}")
        self.id = name

    def __call__(self, ranking: Ranking, k: int, ctx: Any) -> torch.Tensor:
        import torch

        if self.id == "sps":
            return ranking.is_next[:, :k].any(dim=1).to(torch.float64)
        hits = ranking.is_target[:, :k]
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
        return torch.where(hits, 1.0 / ranks, 0.0).max(dim=1).values
