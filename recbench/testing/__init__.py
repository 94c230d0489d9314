"""The conformance kit for recbench plugins, shipped as a pytest plugin.

recbench registers this module as a pytest plugin (entry point ``pytest11``), so the tests
of any environment where recbench is installed get its fixtures without an import:

``recbench_tiny_data``
    A small structured dataset, split and ready (:class:`TinyData`); ``.ratings`` holds
    the same events split for the rating track.
``recbench_registry``
    A fresh, empty :class:`recbench.registry.Registry`: ``add_plugin(name, module,
    distribution, version)`` registers a plugin module through the real validation.
``recbench_plugin_manager``
    The pluggy plugin manager of that registry (recbench's hookspecs, no plugin).
``recbench_installed_registry``
    Every plugin installed in the environment, discovered as ``recbench`` does it.
``recbench_data_context``
    A :class:`recbench.contracts.DataContext` on empty temporary folders, offline.

and :func:`assert_conforms` checks a plugin class (or a whole plugin module) against its
contract, raising :class:`ConformanceError` with a message that says what is wrong::

    from recbench.testing import assert_conforms
    from recbench_foo import FooModel

    def test_foo_conforms():
        assert_conforms(FooModel)

This module is imported by every pytest session in such an environment, so it imports
nothing heavy (no torch, no plugin) until a fixture or a function is used. Disable it with
``pytest -p no:recbench``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import tempfile
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import numpy as np
    import torch

    from recbench.contracts import FitContext, PluginLookup
    from recbench.data.batches import SequenceBatch
    from recbench.data.interactions import Sequences
    from recbench.data.prepare import DataContext
    from recbench.data.protocols import Queries
    from recbench.data.ratings import RatingEvents, RatingSplit
    from recbench.data.splits import Split
    from recbench.ranking import Ranking
    from recbench.registry import PluginInfo, Registry

__all__ = [
    "EPOCH_OPTIONS",
    "TINY_DATA_OPTIONS",
    "ConformanceError",
    "TinyData",
    "assert_conforms",
    "tiny_data",
]

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
#: Names of a model option holding the number of training epochs; the kit sets the first
#: one a model has to ``epochs`` (see :func:`assert_conforms`).
EPOCH_OPTIONS: tuple[str, ...] = ("epochs", "n_epochs", "num_epochs", "max_epochs")
#: The accuracy a model must beat popularity on: the mean of ``mrr@10`` over the
#: ``iterative`` queries of the test users.
LEARNING_METRIC, LEARNING_CUTOFF, LEARNING_PROTOCOL = "mrr", 10, "iterative"
#: Relative tolerance when comparing two computations of the same scores.
SCORE_TOLERANCE = 1e-4


class ConformanceError(AssertionError):
    """A plugin does not honour its contract; the message says what is wrong and how."""


# -- the tiny dataset ------------------------------------------------------------------


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
            position, item, offset = queries.remaining_items(index)
            scores[torch.from_numpy(position), torch.from_numpy(item)] = torch.from_numpy(
                float(self.n_items + 1) - np.minimum(offset, self.n_items)
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
        """The same events as a rating split (:func:`recbench.tasks.rating.rating.split_ratings` with
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
        interactions = synthetic(options).load(_data_context(Path(folder)))
    sequences, _ = preprocess(interactions, PreprocessOptions(min_item_pop=1), dataset="tiny")
    split = make_split(sequences, SplitOptions(valid=0.1, test=0.2), seed)
    return TinyData(sequences, split)


def _data_context(folder: Path) -> DataContext:
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


class _Popularity:
    """The popularity baseline the learning check compares against."""

    id = "popularity"
    max_length = 1

    def __init__(self, item_counts: np.ndarray, device: torch.device):
        import torch

        self._scores = torch.as_tensor(item_counts, dtype=torch.float32, device=device)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return self._scores.unsqueeze(0).expand(batch.items.shape[0], -1)


# -- assert_conforms -------------------------------------------------------------------


def assert_conforms(
    obj: Any,
    *,
    kind: str | None = None,
    learns: bool = True,
    epochs: int | None = 1,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    data: TinyData | None = None,
    data_context: DataContext | None = None,
    skip_missing_data: bool = True,
) -> None:
    """Check that a plugin honours its contract; raise :class:`ConformanceError` if not.

    Parameters
    ----------
    obj:
        A plugin class (model, loss, dataset or metric), a registered
        :class:`recbench.registry.PluginInfo`, or a plugin module: the module is
        registered beside every installed plugin (it must load without a failure: no
        refused plugin API, no duplicate id, no invalid object) and every class it
        registers is checked.
    kind:
        ``"model"``, ``"loss"``, ``"dataset"`` or ``"metric"``; by default told from the
        class's methods.
    learns:
        Models only: require the model to beat popularity on the tiny data (a rating
        model: the global mean rating). Pass ``False`` only for a model that is not
        personalised by design.
    epochs:
        Models only: the value given to the model's epoch option (the first of
        :data:`EPOCH_OPTIONS` it has) unless ``options`` sets it; ``None`` keeps the
        model's default.
    options:
        Option values for the class (``{"dim": 8}``); for a module, per id
        (``{"my-model": {"dim": 8}}``).
    device:
        Where models train and score (``"cpu"``, ``"cuda"``).
    data:
        The models' and metrics' data; default :func:`tiny_data`.
    data_context:
        Where datasets look for files; default empty temporary folders, offline.
    skip_missing_data:
        Datasets only: skip the test (``pytest.skip``) when loading fails with a
        :class:`recbench.errors.DataError` while offline (the files are not there)
        instead of failing.

    The checks, by kind:

    - every class: the metadata the registry validates (``id``, one-line ``summary``
      and ``version``, ``Options`` dataclass with defaults, the kind's methods); every
      option settable from the command line (``-o id.key=value``) with a default of its
      declared type; unknown option keys rejected; built as ``cls(options)``.
    - model: ``max_length`` is ``None`` or a positive integer; ``fit`` trains on the tiny
      data (``epochs`` epochs); ``score`` returns a floating-point tensor
      ``[batch, n_items + 1]`` on the model's device without NaN, also for a batch of
      one; padding never counts: the scores of an input alone equal its scores when
      left-padded in a batch with longer inputs; ``cell()``, if the model has it, is a
      ``torch.nn.Module`` whose step-by-step scores match ``score`` on the same inputs
      (up to a constant per row, e.g. logits against log-probabilities); and the model
      beats popularity (``mrr@10``, ``iterative`` protocol) unless ``learns=False``.
    - loss: the shared signature ``(positive, negative, mask=None)``; ``candidates``, if
      set, is ``"sampled"`` or ``"all"``; a finite scalar for ``positive [B]``/``negative
      [B, N]`` and ``[B, T]``/``[B, T, N]``; ``mask=None`` equals an all-true mask, a
      bool mask equals the same mask as float weights; masked positions change neither
      the value nor get a gradient; the gradient is useful: raising positive scores
      lowers the loss, raising negative ones raises it, and following it ranks
      positives above negatives.
    - metric: ``per_query``/``higher_is_better`` booleans and ``bounds`` a ``(low,
      high or None)`` pair; on random, popularity, perfect and all-tied rankings of the
      three protocols, at cutoffs 1, 10 and deeper than the catalogue (empty ranks), it
      returns one finite value per query (``[Q]``; a 0-d tensor when ``per_query`` is
      false) within ``bounds``, the same on every call, without modifying the ranking.
    - rating model (``task = "rating"``): trained on the tiny data split as the rating
      protocol does (:attr:`TinyData.ratings`); ``max_history`` is ``None`` or an integer
      >= 0; ``predict`` returns finite floating-point ratings ``[batch]`` on the model's
      device, also for a batch of one, the same on every call; left-padding of the
      histories does not change a prediction; and its test RMSE beats the global mean
      rating, unless ``learns=False`` -- a model that predicts one value for every event
      (not personalised by design) must match the global mean instead.
    - rating metric: the metric flags and ``bounds``; ``aggregation`` ``"mean"`` or
      ``"root_mean"``, ``rating_units`` a boolean; on perfect, global-mean, random,
      all-zero and all-one predictions of the tiny data's test ratings, one finite value
      per event (a 0-d tensor when ``per_query`` is false) within ``bounds``, the same on
      every call, without modifying its inputs; perfect predictions score at least as
      well as any other.
    - dataset: ``argument_option`` names one of its options; ``fingerprint`` (its
      checksum in the cache key) is a non-empty string, the same on every call; a
      ``sha256`` attribute, if any, is 64 hex digits; ``load`` returns
      :class:`recbench.data.interactions.Interactions` with events, integer ``user`` and
      ``item`` ids and numeric ``timestamp``/``rating`` columns (or ``None``), which
      recbench's preprocessing turns into sequences.
    """
    from recbench.registry import PluginInfo

    settings = _Settings(
        learns=learns,
        epochs=epochs,
        device=device,
        data=data,
        data_context=data_context,
        skip_missing_data=skip_missing_data,
    )
    if inspect.ismodule(obj):
        _check_module(obj, options or {}, settings)
        return
    if isinstance(obj, PluginInfo):
        kind = kind or obj.kind
        obj = obj.cls
    _check_class(obj, kind or _kind_of(obj), options or {}, settings)


@dataclasses.dataclass
class _Settings:
    learns: bool
    epochs: int | None
    device: str
    data: TinyData | None
    data_context: DataContext | None
    skip_missing_data: bool

    def tiny_data(self) -> TinyData:
        if self.data is None:
            self.data = tiny_data()
        return self.data


def _kind_of(obj: Any) -> str:
    if not isinstance(obj, type):
        raise ConformanceError(
            f"assert_conforms() takes a plugin class or module, got {type(obj).__name__} "
            f"{obj!r}: pass the class you register, not an instance"
        )

    def has(name: str) -> bool:
        return callable(getattr(obj, name, None))

    if has("fit") and (has("score") or has("predict")):
        return "model"
    if has("load") and has("fingerprint"):
        return "dataset"
    if hasattr(obj, "bounds") or hasattr(obj, "per_query"):
        return "metric"
    if any("__call__" in vars(base) for base in obj.__mro__[:-1]):
        return "loss"
    raise ConformanceError(
        f"cannot tell which kind of plugin {_qualname(obj)} is: a model has fit() and "
        "score() (or predict(), for a rating model), a dataset load() and fingerprint(), a metric bounds and __call__(), a "
        "loss __call__(); or pass kind='model' (loss, dataset, metric)"
    )


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


class _Checker:
    """Formats failures as '<kind> '<id>' (<class>) does not conform: <what>'."""

    def __init__(self, kind: str, cls: Any):
        self.kind = kind
        self.cls = cls
        self.name = f"{kind} '{getattr(cls, 'id', '?')}' ({_qualname(cls)})"

    def fail(self, what: str) -> ConformanceError:
        return ConformanceError(f"{self.name} does not conform: {what}")

    def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``; an exception becomes a failure naming ``what``."""
        try:
            return function(*args, **kwargs)
        except (ConformanceError, pytest.skip.Exception):
            raise
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise self.fail(f"{what} raised {type(exc).__name__}: {first_line}") from exc


def _check_class(cls: Any, kind: str, options: Mapping[str, Any], settings: _Settings) -> None:
    from recbench.contracts import KINDS, task_of
    from recbench.errors import PluginError
    from recbench.registry import validate_class

    if kind not in KINDS:
        raise ConformanceError(f"unknown plugin kind {kind!r}: use one of {', '.join(KINDS)}")
    checker = _Checker(kind, cls)
    try:
        validate_class(kind, cls)
    except PluginError as exc:
        raise checker.fail(exc.one_line()) from None
    _check_options(checker)
    rating = kind in ("model", "metric") and task_of(cls) == "rating"
    if kind == "model":
        (_check_rating_model if rating else _check_model)(checker, options, settings)
    elif kind == "loss":
        _check_loss(checker, options)
    elif kind == "metric":
        (_check_rating_metric if rating else _check_metric)(checker, options, settings)
    else:
        _check_dataset(checker, options, settings)


# -- options ---------------------------------------------------------------------------


def _check_options(checker: _Checker) -> None:
    from recbench.config.options import option_fields, parse_options
    from recbench.errors import ConfigError

    options_cls = checker.cls.Options
    owner = f"{checker.kind} '{checker.cls.id}'"
    try:
        fields = option_fields(options_cls)
    except Exception as exc:
        raise checker.fail(f"cannot read the types of its options ({exc})") from None
    try:
        parse_options(options_cls, {"no_such_option": "1"}, owner=owner)
    except ConfigError:
        pass
    else:
        raise checker.fail("its options accepted the unknown key 'no_such_option'")
    defaults = {f.name: getattr(options_cls(), f.name) for f in dataclasses.fields(options_cls)}
    for key, annotation in fields.items():
        default = defaults[key]
        attempts = [(default, "its default"), (_as_text(default), "the text")]
        if attempts[1][0] == "":
            del attempts[1]  # nothing to type on the command line (an empty string or tuple)
        for value, how in attempts:
            try:
                parsed = parse_options(options_cls, {key: value}, owner=owner)
            except TypeError:
                raise checker.fail(
                    f"option '{key}' has type {_type_name(annotation)}, which cannot be set "
                    f"from the command line (-o {checker.cls.id}.{key}=VALUE): use int, "
                    "float, bool, str, a Literal, a tuple or an optional of these"
                ) from None
            except ConfigError as exc:
                raise checker.fail(
                    f"option '{key}': {how} {value!r} is refused ({exc.one_line()}): "
                    f"the default must be a valid {_type_name(annotation)}"
                ) from None
            if (
                how == "the text"
                and not isinstance(default, str)
                and getattr(parsed, key) != default
            ):
                raise checker.fail(
                    f"option '{key}': -o {checker.cls.id}.{key}={value} gives "
                    f"{getattr(parsed, key)!r}, not the default {default!r}"
                )


def _as_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _construct(checker: _Checker, values: Mapping[str, Any]) -> Any:
    from recbench.config.options import parse_options
    from recbench.errors import ConfigError

    try:
        options = parse_options(
            checker.cls.Options, values, owner=f"{checker.kind} '{checker.cls.id}'"
        )
    except ConfigError as exc:
        raise checker.fail(f"the options given to the kit are refused: {exc.one_line()}") from None
    return checker.call(f"{checker.cls.__name__}(options)", checker.cls, options)


def _construct_with_epochs(
    checker: _Checker, options: Mapping[str, Any], settings: _Settings
) -> tuple[Any, str | None, Any]:
    """The model built from ``options``, trained for ``settings.epochs`` when it has one
    of the :data:`EPOCH_OPTIONS` and ``options`` does not set it; also that option's name
    (``None`` when it has none) and its value."""
    from recbench.config.options import option_fields

    values = dict(options)
    fields = option_fields(checker.cls.Options)
    epoch_key = next((key for key in EPOCH_OPTIONS if key in fields), None)
    if epoch_key is not None and settings.epochs is not None:
        values.setdefault(epoch_key, settings.epochs)
    return _construct(checker, values), epoch_key, values.get(epoch_key or "")


def _varied_lengths(lengths: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` rows (sorted indices) with ``lengths`` as varied as possible."""
    import numpy as np

    order = np.argsort(lengths, kind="stable")
    picks = np.linspace(0, len(order) - 1, num=min(count, len(order))).round().astype(np.int64)
    return np.unique(order[picks])


# -- models ----------------------------------------------------------------------------


def _check_model(checker: _Checker, options: Mapping[str, Any], settings: _Settings) -> None:
    import torch

    from recbench.runner.seeding import seed_everything

    model, epoch_key, epochs = _construct_with_epochs(checker, options, settings)
    max_length = checker.call("max_length", getattr, model, "max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise checker.fail(f"max_length must be None or a positive integer, got {max_length!r}")

    data = settings.tiny_data()
    device = torch.device(settings.device)
    seed_everything(0)
    checker.call(
        f"fit() on the tiny data ({len(data.train):,} users, {data.n_items} items)",
        model.fit,
        data.train,
        data.queries("last-item", "valid"),
        data.fit_context(device),
    )
    with torch.no_grad():
        _check_scores(checker, model, data, device)
        _check_padding(checker, model, data, device)
        if hasattr(model, "cell"):
            _check_cell(checker, model, data, device)
    if settings.learns:
        _check_learns(checker, model, data, device, epoch_key, epochs)


def _score(checker: _Checker, model: Any, batch: SequenceBatch, what: str) -> torch.Tensor:
    return checker.call(f"score() on {what}", model.score, batch)


def _check_scores(checker: _Checker, model: Any, data: TinyData, device: torch.device) -> None:
    import torch

    queries = data.queries("iterative")
    index = _varied_lengths(queries.input_length, 16)
    expected = [len(index), data.n_items + 1]
    for rows in (index, index[:1]):
        batch = queries.model_inputs(rows, model.max_length, device)
        scores = _score(checker, model, batch, f"a batch of {len(rows)}")
        if not isinstance(scores, torch.Tensor):
            raise checker.fail(f"score() returned a {type(scores).__name__}, not a torch.Tensor")
        expected[0] = len(rows)
        if list(scores.shape) != expected:
            raise checker.fail(
                f"score() returned shape {list(scores.shape)} for {len(rows)} inputs over "
                f"{data.n_items} items: it must be [batch, n_items + 1] = {expected} "
                "(column 0 is padding)"
            )
        if not scores.is_floating_point():
            raise checker.fail(
                f"score() returned {scores.dtype} scores: they must be floating-point"
            )
        if scores.device != device:
            raise checker.fail(
                f"score() returned scores on {scores.device}, the model was trained on "
                f"{device}: return them on the model's device (ctx.device)"
            )
        if torch.isnan(scores[:, 1:]).any():
            raise checker.fail("score() returned NaN scores")


def _check_padding(checker: _Checker, model: Any, data: TinyData, device: torch.device) -> None:
    """The scores of an input alone equal its scores left-padded among longer inputs."""
    queries = data.queries("iterative")
    index = _varied_lengths(queries.input_length, 12)
    padded = queries.model_inputs(index, model.max_length, device)
    together = _score(checker, model, padded, "a padded batch")
    width = int(padded.items.shape[1])
    for row in range(len(index)):
        length = int(padded.lengths[row])
        if length == width:
            continue  # this row has no padding in the batch
        alone_batch = queries.model_inputs(index[row : row + 1], model.max_length, device)
        alone = _score(checker, model, alone_batch, "a single input")
        difference = _difference(together[row : row + 1, 1:], alone[:, 1:], allow_shift=False)
        if difference is not None:
            raise checker.fail(
                f"padding changes the scores: an input of {length} items scored alone and "
                f"left-padded to {width} in a batch differ by up to {difference:.3g}; item 0 "
                "is padding, not an item: mask it (batch.lengths, or batch.items != 0)"
            )


def _difference(a: torch.Tensor, b: torch.Tensor, *, allow_shift: bool) -> float | None:
    """``None`` when ``a`` and ``b`` agree within :data:`SCORE_TOLERANCE` (after removing
    a constant per row when ``allow_shift``), else the largest difference."""
    import torch

    a = a.detach().to("cpu", torch.float64)
    b = b.detach().to("cpu", torch.float64)
    finite_a, finite_b = torch.isfinite(a), torch.isfinite(b)
    if not torch.equal(finite_a, finite_b) or not torch.equal(a[~finite_a], b[~finite_b]):
        return math.inf
    delta = torch.where(finite_a, a - b, 0.0)
    if allow_shift:
        count = finite_a.sum(dim=1, keepdim=True).clamp(min=1)
        delta = torch.where(finite_a, delta - delta.sum(dim=1, keepdim=True) / count, 0.0)
    scale = max(1.0, float(torch.where(finite_b, b.abs(), 0.0).max()) if b.numel() else 1.0)
    largest = float(delta.abs().max()) if delta.numel() else 0.0
    return None if largest <= SCORE_TOLERANCE * scale else largest


def _check_cell(checker: _Checker, model: Any, data: TinyData, device: torch.device) -> None:
    import numpy as np
    import torch

    cell = checker.call("cell()", model.cell)
    if not isinstance(cell, torch.nn.Module):
        raise checker.fail(f"cell() returned a {type(cell).__name__}, not a torch.nn.Module")
    cell.eval()
    queries = data.queries("iterative")
    steps = min(4, model.max_length or 4)
    candidates = [
        q for q in _varied_lengths(queries.input_length, 64) if queries.input_length[q] >= steps
    ]
    rows = np.asarray(candidates[-8:], dtype=np.int64)
    batch = queries.model_inputs(rows, steps, device)
    full = _score(checker, model, batch, f"{len(rows)} inputs of {steps} items")
    initial = getattr(cell, "initial_state", None)
    state: tuple[Any, ...] = ()
    if initial is not None:
        state = tuple(checker.call("cell.initial_state(batch_size)", initial, len(rows)))
    scores: Any = None
    for step in range(steps):
        output = checker.call(f"the cell at step {step + 1}", cell, batch.items[:, step], *state)
        if isinstance(output, torch.Tensor):
            scores, state = output, ()
        elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            scores, state = output[0], tuple(output[1:])
        else:
            raise checker.fail(
                f"the cell returned a {type(output).__name__}: it must return the scores, or a "
                "tuple (scores, *new_state)"
            )
    n_items = data.n_items
    if list(scores.shape) == [len(rows), n_items + 1]:
        scores = scores[:, 1:]
    elif list(scores.shape) != [len(rows), n_items]:
        raise checker.fail(
            f"the cell returned scores of shape {list(scores.shape)}: they must be [batch, "
            f"n_items] = {[len(rows), n_items]} (or [batch, n_items + 1] with padding first)"
        )
    difference = _difference(scores, full[:, 1:], allow_shift=True)
    if difference is not None:
        raise checker.fail(
            f"cell() does not match score(): after feeding {steps} items one step at a time, "
            f"its scores differ from score() on the same inputs by up to {difference:.3g} "
            "(beyond a constant per row); the exported cell must compute what the model "
            "ranks with"
        )


def _check_learns(
    checker: _Checker,
    model: Any,
    data: TinyData,
    device: torch.device,
    epoch_key: str | None,
    epochs: Any,
) -> None:
    value = checker.call("the evaluation", data.evaluate, model, device=device)
    baseline = data.evaluate(_Popularity(data.item_counts, device), device=device)
    if value > baseline:
        return
    trained = f"after {epochs} epoch(s)" if epoch_key is not None else "after fit()"
    name = f"{LEARNING_METRIC}@{LEARNING_CUTOFF}"
    raise checker.fail(
        f"it does not beat popularity on the tiny data {trained}: {name} {value:.4f} against "
        f"{baseline:.4f} for popularity ({LEARNING_PROTOCOL} protocol, "
        f"{len(data.queries(LEARNING_PROTOCOL)):,} test queries); check that it learns "
        "(or give it more epochs with assert_conforms(..., epochs=N)); pass learns=False "
        "only for a model that is not personalised by design"
    )


# -- losses ----------------------------------------------------------------------------


def _check_loss(checker: _Checker, options: Mapping[str, Any]) -> None:
    import torch

    candidates = getattr(checker.cls, "candidates", "sampled")
    if candidates not in ("sampled", "all"):
        raise checker.fail(f"'candidates' must be 'sampled' or 'all', got {candidates!r}")
    loss = _construct(checker, options)
    _check_loss_signature(checker, loss)
    generator = torch.Generator().manual_seed(0)
    for lead, negatives in (((32,), 4), ((4, 6), 5)):
        positive = torch.randn(*lead, generator=generator, requires_grad=True)
        negative = torch.randn(*lead, negatives, generator=generator, requires_grad=True)
        mask = torch.rand(*lead, generator=generator) > 0.3
        mask.view(-1)[:2] = torch.tensor([True, False])
        shapes = f"positive {list(positive.shape)}, negative {list(negative.shape)}"
        unmasked = _loss_value(checker, loss, positive, negative, None, shapes)
        all_true = _loss_value(checker, loss, positive, negative, torch.ones_like(mask), shapes)
        if _difference(unmasked.reshape(1, 1), all_true.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"mask=None gives {float(unmasked):.6g} but an all-true mask gives "
                f"{float(all_true):.6g} ({shapes}): no mask means every position counts"
            )
        masked = _loss_value(checker, loss, positive, negative, mask, shapes + ", with a mask")
        weights = _loss_value(checker, loss, positive, negative, mask.float(), shapes)
        if _difference(masked.reshape(1, 1), weights.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"a bool mask gives {float(masked):.6g} but the same mask as float weights "
                f"(0 and 1) gives {float(weights):.6g} ({shapes}): a mask may be either"
            )
        gradients = torch.autograd.grad(masked, [positive, negative], allow_unused=True)
        for name, gradient in zip(("positive", "negative"), gradients, strict=True):
            if gradient is not None and gradient[~mask].abs().max() > 0:
                raise checker.fail(
                    f"masked-out positions get a gradient through '{name}' ({shapes}): "
                    "positions where mask is false must not count"
                )
        with torch.no_grad():
            moved_positive = torch.where(mask, positive, positive * 50 + 7)
            moved_negative = torch.where(mask.unsqueeze(-1), negative, negative * 50 - 7)
            moved = loss(moved_positive, moved_negative, mask)
        if _difference(masked.reshape(1, 1), moved.reshape(1, 1), allow_shift=False):
            raise checker.fail(
                f"changing the scores of masked-out positions changes the loss from "
                f"{float(masked):.6g} to {float(moved):.6g} ({shapes}): positions where mask "
                "is false must not count"
            )
    _check_loss_gradient(checker, loss, generator)


def _check_loss_signature(checker: _Checker, loss: Any) -> None:
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError) as exc:
        raise checker.fail(f"cannot read the signature of __call__ ({exc})") from None
    parameters = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    extra_required = [
        p
        for p in parameters[3:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if (
        [p.name for p in parameters[:3]] != ["positive", "negative", "mask"]
        or any(p.kind not in positional for p in parameters[:3])
        or parameters[2].default is not None
        or extra_required
    ):
        raise checker.fail(
            f"__call__{signature} does not have the shared loss signature "
            "(positive, negative, mask=None): every loss must take the scores of the "
            "positive items [..], of the sampled negatives [.., N] and an optional mask [..]"
        )


def _loss_value(
    checker: _Checker, loss: Any, positive: Any, negative: Any, mask: Any, shapes: str
) -> torch.Tensor:
    import torch

    value = checker.call(f"the loss on {shapes}", loss, positive, negative, mask)
    if not isinstance(value, torch.Tensor):
        raise checker.fail(f"the loss returned a {type(value).__name__}, not a torch.Tensor")
    if value.dim() != 0:
        raise checker.fail(
            f"the loss returned shape {list(value.shape)} for {shapes}: it must reduce to a "
            "scalar (a 0-d tensor), e.g. the mean over the unmasked positions"
        )
    if not value.is_floating_point() or not bool(torch.isfinite(value)):
        raise checker.fail(f"the loss returned {value.item()!r} ({value.dtype}) for {shapes}")
    if not value.requires_grad:
        raise checker.fail(
            "the loss does not depend on its inputs through autograd (its value does not "
            "require grad): compute it with torch operations, without detaching"
        )
    return value


def _check_loss_gradient(checker: _Checker, loss: Any, generator: torch.Generator) -> None:
    """Raising positives lowers the loss, raising negatives raises it, and descending it
    ranks the positives above the negatives."""
    import torch

    positive = torch.randn(64, generator=generator).requires_grad_()
    negative = torch.randn(64, 8, generator=generator).requires_grad_()
    value = _loss_value(checker, loss, positive, negative, None, "positive [64], negative [64, 8]")
    gradient_positive, gradient_negative = torch.autograd.grad(
        value, [positive, negative], allow_unused=True
    )
    for name, gradient, sign in (
        ("positive", gradient_positive, -1.0),
        ("negative", gradient_negative, 1.0),
    ):
        total = 0.0 if gradient is None else float(gradient.sum())
        if not math.isfinite(total) or total * sign <= 0:
            direction = "lower" if name == "positive" else "raise"
            raise checker.fail(
                f"raising the {name} scores does not {direction} the loss (the sum of "
                f"d loss / d {name} is {total:+.3g}): the gradient is not useful for training"
            )
    before = _pairwise_accuracy(positive, negative)
    for _ in range(100):  # sign descent: as scale-free as Adam, without its start-up cost
        steps = torch.autograd.grad(loss(positive, negative, None), [positive, negative])
        with torch.no_grad():
            for scores, step in zip((positive, negative), steps, strict=True):
                scores -= 0.05 * step.sign()
    after = _pairwise_accuracy(positive, negative)
    if not (after >= 0.9 and after > before):
        raise checker.fail(
            f"following its gradient does not rank positives above negatives: 100 descent "
            f"steps on free scores move the share of (positive > negative) pairs from "
            f"{before:.2f} to {after:.2f} (at least 0.90 expected)"
        )


def _pairwise_accuracy(positive: torch.Tensor, negative: torch.Tensor) -> float:
    return float((positive.detach().unsqueeze(-1) > negative.detach()).double().mean())


# -- metrics ---------------------------------------------------------------------------


def _check_metric(checker: _Checker, options: Mapping[str, Any], settings: _Settings) -> None:
    import torch

    from recbench.contracts import MetricContext
    from recbench.data.protocols import PROTOCOLS

    _check_metric_metadata(checker)
    metric = _construct(checker, options)
    data = settings.tiny_data()
    device = torch.device(settings.device)
    context = MetricContext(
        n_items=data.n_items,
        item_counts=torch.as_tensor(data.item_counts, device=device),
        n_users=0,
    )
    depth = data.n_items + 5  # deeper than the catalogue: the last ranks are empty
    for protocol in PROTOCOLS:
        for scenario in ("random", "popularity", "perfect", "all-tied"):
            ranking, n_users = data.ranking(scenario, protocol, depth, device)
            context = dataclasses.replace(context, n_users=n_users)
            for k in (1, 10, depth):
                where = f"{scenario} ranking, {protocol} protocol, k={k}"
                try:
                    _check_metric_values(checker, metric, ranking, k, context, where)
                except ConformanceError:
                    data.forget_rankings()  # the metric may have modified the ranking
                    raise


def _check_metric_metadata(checker: _Checker) -> None:
    """``per_query`` and ``higher_is_better`` are booleans, ``bounds`` a valid pair."""
    cls = checker.cls
    for flag in ("per_query", "higher_is_better"):
        if not isinstance(getattr(cls, flag), bool):
            raise checker.fail(f"'{flag}' must be True or False, got {getattr(cls, flag)!r}")
    bounds = cls.bounds
    if not (
        isinstance(bounds, tuple)
        and len(bounds) == 2
        and _is_number(bounds[0])
        and (bounds[1] is None or (_is_number(bounds[1]) and bounds[1] > bounds[0]))
    ):
        raise checker.fail(
            f"'bounds' must be (low, high) with low < high, or (low, None) when unbounded "
            f"above; got {bounds!r}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_metric_values(
    checker: _Checker, metric: Any, ranking: Ranking, k: int, context: Any, where: str
) -> None:
    import torch

    snapshot = {f.name: getattr(ranking, f.name).clone() for f in dataclasses.fields(ranking)}
    call = functools.partial(checker.call, f"the metric ({where})", metric, ranking, k, context)
    values = _metric_output(checker, call(), len(ranking), where, unit="query", units="queries")
    for name, before in snapshot.items():
        if not torch.equal(getattr(ranking, name), before):
            raise checker.fail(f"it modified ranking.{name} in place ({where})")
    _check_metric_range(
        checker, values, call, where, name_query=checker.cls.per_query, same="ranking"
    )


def _metric_output(
    checker: _Checker, values: Any, count: int, where: str, *, unit: str, units: str
) -> torch.Tensor:
    """``values``, checked to be floats of the shape ``per_query`` says: one per
    ``unit`` of the ``count`` given, or a 0-d tensor."""
    import torch

    per_query = checker.cls.per_query
    expected = [count] if per_query else []
    if not isinstance(values, torch.Tensor) or list(values.shape) != expected:
        got = (
            f"shape {list(values.shape)}"
            if isinstance(values, torch.Tensor)
            else f"a {type(values).__name__}"
        )
        wanted = (
            f"one value per {unit}, a tensor of shape {expected}"
            if per_query
            else "a 0-d tensor (per_query is False)"
        )
        raise checker.fail(f"it returned {got} for {count} {units} ({where}): return {wanted}")
    if not values.is_floating_point():
        raise checker.fail(f"it returned {values.dtype} values ({where}): return floats")
    return values


def _check_metric_range(
    checker: _Checker,
    values: torch.Tensor,
    call: Callable[[], Any],
    where: str,
    *,
    name_query: bool,
    same: str,
) -> torch.Tensor:
    """``values`` as float64 on the CPU, checked to lie within the metric's ``bounds``
    and to come again from a second ``call()`` on the same ``same`` inputs; with
    ``name_query`` a value out of bounds is named by its query."""
    import torch

    array = values.detach().to("cpu", torch.float64)
    low, high = checker.cls.bounds
    outside = ~torch.isfinite(array) | (array < low - 1e-9)
    if high is not None:
        outside |= array > high + 1e-9
    if outside.any():
        bad = float(array[outside][0])
        what = f"{bad!r} for query {int(outside.nonzero()[0])}" if name_query else repr(bad)
        raise checker.fail(
            f"it returned {what} ({where}), outside its documented bounds "
            f"[{low}, {'+inf' if high is None else high}]"
        )
    again = call()
    if not torch.equal(again.detach().to("cpu", torch.float64), array):
        raise checker.fail(f"it returned different values for the same {same} ({where})")
    return array


# -- rating models and metrics -----------------------------------------------------------

#: Absolute tolerance when comparing two predictions of the same rating event.
RATING_TOLERANCE = 1e-5


def _check_rating_model(checker: _Checker, options: Mapping[str, Any], settings: _Settings) -> None:
    import torch

    from recbench.errors import PluginError
    from recbench.runner.seeding import seed_everything
    from recbench.tasks.rating.rating import max_history_of, rating_fit_context

    model, epoch_key, epochs = _construct_with_epochs(checker, options, settings)
    try:
        max_history = max_history_of(model)
    except PluginError as exc:
        raise checker.fail(exc.what) from None
    split = settings.tiny_data().ratings
    device = torch.device(settings.device)
    seed_everything(0)
    checker.call(
        f"fit() on the tiny rating data ({len(split.train):,} training ratings, "
        f"{split.n_users:,} users, {split.n_items} items)",
        model.fit,
        split.train,
        split.valid,
        rating_fit_context(split, device),
    )
    with torch.no_grad():
        _check_rating_predictions(checker, model, split.test, max_history, device)
        if max_history != 0:
            _check_rating_padding(checker, model, split.test, max_history, device)
    if settings.learns:
        _check_rating_learns(checker, model, split, device, epoch_key, epochs)


def _predict(checker: _Checker, model: Any, batch: Any, what: str) -> torch.Tensor:
    return checker.call(f"predict() on {what}", model.predict, batch)


def _check_rating_predictions(
    checker: _Checker,
    model: Any,
    events: RatingEvents,
    max_history: int | None,
    device: torch.device,
) -> None:
    import torch

    index = _varied_lengths(events.history_lengths, 16)
    for rows in (index, index[:1]):
        batch = events.batch(rows, max_history, device)
        predicted = _predict(checker, model, batch, f"a batch of {len(rows)}")
        if not isinstance(predicted, torch.Tensor):
            raise checker.fail(
                f"predict() returned a {type(predicted).__name__}, not a torch.Tensor"
            )
        if list(predicted.shape) != [len(rows)]:
            raise checker.fail(
                f"predict() returned shape {list(predicted.shape)} for {len(rows)} events: it "
                f"must be [batch] = [{len(rows)}], one rating per event"
            )
        if not predicted.is_floating_point():
            raise checker.fail(f"predict() returned {predicted.dtype} ratings: return floats")
        if predicted.device != device:
            raise checker.fail(
                f"predict() returned ratings on {predicted.device}, the model was trained on "
                f"{device}: return them on the model's device (ctx.device)"
            )
        if not bool(torch.isfinite(predicted).all()):
            raise checker.fail("predict() returned NaN or infinite ratings")
        again = _predict(checker, model, batch, f"a batch of {len(rows)}")
        if not torch.allclose(again, predicted, atol=RATING_TOLERANCE, rtol=0):
            raise checker.fail(
                "predict() returned different ratings for the same batch: after fit() the "
                "model must predict deterministically (eval mode, no dropout)"
            )


def _check_rating_padding(
    checker: _Checker,
    model: Any,
    events: RatingEvents,
    max_history: int | None,
    device: torch.device,
) -> None:
    """An event predicted alone equals its prediction left-padded among longer histories."""
    index = _varied_lengths(events.history_lengths, 12)
    together = events.batch(index, max_history, device)
    predicted = _predict(checker, model, together, "a padded batch")
    width = int(together.history_items.shape[1])
    for row in range(len(index)):
        length = int(together.history_lengths[row])
        if length == width:
            continue
        alone = _predict(
            checker,
            model,
            events.batch(index[row : row + 1], max_history, device),
            "a single event",
        )
        difference = float((alone[0] - predicted[row]).abs())
        if difference > RATING_TOLERANCE:
            raise checker.fail(
                f"padding changes the predictions: an event with {length} earlier training "
                f"events predicted alone and left-padded to {width} in a batch differ by "
                f"{difference:.3g}; item 0 and rating 0 are padding: use batch.history_lengths"
            )


def _check_rating_learns(
    checker: _Checker,
    model: Any,
    split: RatingSplit,
    device: torch.device,
    epoch_key: str | None,
    epochs: Any,
) -> None:
    """A model whose predictions vary must beat the global mean; one that predicts a
    single value (not personalised by design) must match it."""
    import numpy as np

    from recbench.tasks.rating.rating import predict_events

    test = split.test
    predicted = checker.call(
        "predicting the test ratings", predict_events, model, test, device=device
    )
    rmse = float(np.sqrt(np.mean((predicted - test.ratings) ** 2)))
    baseline = float(np.sqrt(np.mean((split.train.mean_rating - test.ratings) ** 2)))
    if float(np.ptp(predicted)) <= 1e-9:
        if rmse <= baseline * (1 + 1e-6) + 1e-12:
            return
        raise checker.fail(
            f"it predicts one rating for every event ({predicted[0]:.4f}) with RMSE {rmse:.4f}, "
            f"worse than the mean training rating ({split.train.mean_rating:.4f}, RMSE "
            f"{baseline:.4f}): a constant predictor should predict the mean training rating"
        )
    if rmse < baseline:
        return
    trained = f"after {epochs} epoch(s)" if epoch_key is not None else "after fit()"
    raise checker.fail(
        f"it does not beat the global mean on the tiny rating data {trained}: RMSE {rmse:.4f} "
        f"against {baseline:.4f} for the mean training rating ({len(test):,} test ratings, "
        "[0, 1] scale); check that it learns (or give it more epochs with "
        "assert_conforms(..., epochs=N)); pass learns=False only for a model that is not "
        "personalised by design"
    )


def _check_rating_metric(
    checker: _Checker, options: Mapping[str, Any], settings: _Settings
) -> None:
    import numpy as np
    import torch

    from recbench.contracts import RatingMetricContext
    from recbench.tasks.rating.rating import AGGREGATIONS, aggregate

    _check_metric_metadata(checker)
    cls = checker.cls
    aggregation = getattr(cls, "aggregation", "mean")
    if aggregation not in AGGREGATIONS:
        raise checker.fail(
            f"'aggregation' must be one of {', '.join(map(repr, AGGREGATIONS))}, got "
            f"{aggregation!r}"
        )
    if not isinstance(getattr(cls, "rating_units", True), bool):
        raise checker.fail(f"'rating_units' must be True or False, got {cls.rating_units!r}")
    metric = _construct(checker, options)
    split = settings.tiny_data().ratings
    test = split.test
    actual = torch.from_numpy(test.ratings.astype(np.float64))
    context = RatingMetricContext(
        users=torch.from_numpy(test.users), items=torch.from_numpy(test.items), n_items=test.n_items
    )
    generator = torch.Generator().manual_seed(0)
    scenarios = {
        "perfect": actual.clone(),
        "mean": torch.full_like(actual, split.train.mean_rating),
        "random": torch.rand(len(actual), generator=generator, dtype=torch.float64),
        "all-zero": torch.zeros_like(actual),
        "all-one": torch.ones_like(actual),
    }
    reported: dict[str, float] = {}
    for scenario, predicted in scenarios.items():
        where = f"{scenario} predictions of {len(actual):,} test ratings"
        values = _rating_metric_values(checker, metric, predicted, actual, context, where)
        reported[scenario] = (
            aggregate(values.numpy(), aggregation).mean if cls.per_query else float(values)
        )
    perfect = reported["perfect"]
    for scenario, value in reported.items():
        worse = value > perfect + 1e-9 if cls.higher_is_better else value < perfect - 1e-9
        if worse:
            raise checker.fail(
                f"{scenario} predictions score {value:.6g}, better than perfect ones "
                f"({perfect:.6g}, higher_is_better={cls.higher_is_better})"
            )


def _rating_metric_values(
    checker: _Checker,
    metric: Any,
    predicted: torch.Tensor,
    actual: torch.Tensor,
    context: Any,
    where: str,
) -> torch.Tensor:
    import torch

    before = (predicted.clone(), actual.clone())
    call = functools.partial(
        checker.call, f"the metric ({where})", metric, predicted, actual, context
    )
    values = _metric_output(checker, call(), len(actual), where, unit="event", units="events")
    if not (torch.equal(predicted, before[0]) and torch.equal(actual, before[1])):
        raise checker.fail(f"it modified its inputs in place ({where})")
    return _check_metric_range(checker, values, call, where, name_query=False, same="predictions")


# -- datasets --------------------------------------------------------------------------


def _check_dataset(checker: _Checker, options: Mapping[str, Any], settings: _Settings) -> None:
    from recbench.config.options import option_fields

    cls = checker.cls
    argument = getattr(cls, "argument_option", None)
    if argument is not None and argument not in option_fields(cls.Options):
        raise checker.fail(
            f"argument_option {argument!r} is not one of its options "
            f"({', '.join(option_fields(cls.Options)) or 'it has none'})"
        )
    checksum = getattr(cls, "sha256", None)
    if checksum is not None and not (
        isinstance(checksum, str)
        and len(checksum) == 64
        and all(c in "0123456789abcdef" for c in checksum)
    ):
        raise checker.fail(f"sha256 must be 64 lower-case hex digits, got {checksum!r}")
    dataset = _construct(checker, options)
    if settings.data_context is not None:
        _check_loading(checker, dataset, settings.data_context, settings)
        return
    with tempfile.TemporaryDirectory() as folder:
        _check_loading(checker, dataset, _data_context(Path(folder)), settings)


def _check_loading(
    checker: _Checker, dataset: Any, context: DataContext, settings: _Settings
) -> None:
    import numpy as np

    from recbench.data.interactions import Interactions
    from recbench.data.preprocess import PreprocessOptions, preprocess
    from recbench.errors import DataError

    def call(method: str) -> Any:
        try:
            return getattr(dataset, method)(context)
        except DataError as exc:
            if settings.skip_missing_data and context.offline:
                pytest.skip(f"{checker.name}: its data is not there offline ({exc.one_line()})")
            raise checker.fail(f"{method}() raised DataError: {exc.one_line()}") from exc
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise checker.fail(f"{method}() raised {type(exc).__name__}: {first_line}") from exc

    fingerprint = call("fingerprint")
    interactions = call("load")
    for value in (fingerprint, call("fingerprint")):
        if not isinstance(value, str) or not value.strip():
            raise checker.fail(
                f"fingerprint() returned {value!r}: it must be a non-empty string that "
                "changes whenever the data would (checksums, sizes and times, parameters)"
            )
    if not isinstance(interactions, Interactions):
        raise checker.fail(
            f"load() returned a {type(interactions).__name__}, not a "
            "recbench.data.interactions.Interactions"
        )
    if len(interactions) == 0:
        raise checker.fail("load() returned no events")
    for column in ("user", "item", "timestamp", "rating"):
        array = getattr(interactions, column)
        if array is None and column in ("timestamp", "rating"):
            continue
        if not isinstance(array, np.ndarray) or array.ndim != 1:
            raise checker.fail(f"the '{column}' column must be a 1-d numpy array")
        if len(array) != len(interactions):
            raise checker.fail(
                f"the '{column}' column has {len(array):,} rows, 'user' has {len(interactions):,}"
            )
        integer = np.issubdtype(array.dtype, np.integer)
        if column in ("user", "item") and not integer:
            raise checker.fail(f"the '{column}' ids must be integers, got {array.dtype}")
        if not integer and not (
            np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all()
        ):
            raise checker.fail(f"the '{column}' column must be finite numbers, got {array.dtype}")
    sequences, _ = checker.call(
        "recbench's preprocessing of the loaded events",
        preprocess,
        interactions,
        PreprocessOptions(min_item_pop=1, min_user_activity=1),
    )
    if len(sequences) == 0:
        raise checker.fail("its events give no sequence")


# -- plugin modules --------------------------------------------------------------------


def _check_module(module: Any, options: Mapping[str, Any], settings: _Settings) -> None:
    from recbench.cli import build_parser
    from recbench.registry import HOOK_NAMES, discover

    registry = discover()
    name = registry.manager.get_name(module) if registry.manager.is_registered(module) else None
    if name is None:
        name = module.__name__
        distribution, version = _distribution_of(module)
        registry.add_plugin(name, module, distribution, version)
    hooks = registry.hooks_of(name)
    if "register_commands" in hooks:
        build_parser(registry)
    failures = list(dict.fromkeys(f.one_line() for f in registry.failures if f.plugin == name))
    if failures:
        raise ConformanceError(
            f"plugin module {module.__name__} does not load cleanly: " + "; ".join(failures)
        )
    if not hooks:
        raise ConformanceError(
            f"plugin module {module.__name__} implements no recbench hook: decorate functions "
            f"named {', '.join(HOOK_NAMES)} with @recbench.hookimpl"
        )
    registered = _registered(registry, name)
    unknown = sorted(set(options) - {info.id for info in registered})
    if unknown:
        raise ConformanceError(
            f"options for plugin module {module.__name__} are keyed by the id they apply to "
            f"({', '.join(info.id for info in registered)}); got {', '.join(unknown)}"
        )
    skipped: list[str] = []
    for info in registered:
        try:
            _check_class(info.cls, info.kind, dict(options.get(info.id, {})), settings)
        except pytest.skip.Exception as exc:
            skipped.append(str(exc.msg))
    if skipped:
        pytest.skip("; ".join(skipped))


def _registered(registry: Registry, name: str) -> list[PluginInfo]:
    from recbench.contracts import KINDS

    return [info for kind in KINDS for info in registry.all(kind) if info.plugin == name]


def _distribution_of(module: Any) -> tuple[str, str]:
    """The installed distribution that provides ``module`` (name, version), if any."""
    import importlib.metadata as metadata

    from recbench.registry import normalize_distribution

    top = module.__name__.partition(".")[0]
    for distribution in metadata.packages_distributions().get(top, []):
        try:
            return normalize_distribution(distribution), metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown", ""


# -- the pytest plugin -----------------------------------------------------------------


@pytest.fixture(scope="session")
def recbench_tiny_data() -> TinyData:
    """A small structured dataset, preprocessed and split (:class:`TinyData`)."""
    return tiny_data()


@pytest.fixture
def recbench_registry() -> Registry:
    """A fresh, empty plugin registry; ``add_plugin(name, module, distribution, version)``
    registers a plugin module through recbench's validation."""
    from recbench.registry import Registry

    return Registry()


@pytest.fixture
def recbench_plugin_manager(recbench_registry: Registry) -> Any:
    """The pluggy plugin manager of ``recbench_registry``: recbench's hookspecs, no plugin."""
    return recbench_registry.manager


@pytest.fixture
def recbench_installed_registry() -> Registry:
    """Every plugin installed in this environment, discovered as the CLI does it."""
    from recbench.registry import discover

    return discover()


@pytest.fixture
def recbench_data_context(tmp_path: Path) -> DataContext:
    """A data context on empty temporary folders, offline."""
    return _data_context(tmp_path)
