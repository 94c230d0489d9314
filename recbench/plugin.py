"""The declared plugin API: everything a recbench plugin imports, from one module.

Plugins -- recbench's own under ``plugins/`` and third-party ones -- import recbench only
through this module (and :mod:`recbench.testing` in their tests). Every other recbench
module is internal and may move between releases; the names here change only as the
deprecation policy of ``docs/plugins.md`` says, with :data:`PLUGIN_API_VERSION`.

Hooks
    :data:`hookimpl` marks a hook implementation; :data:`PLUGIN_API_VERSION` is the
    version of this API (declare the one you support as ``RECBENCH_PLUGIN_API``).
Contracts (what each kind of plugin class provides)
    :class:`Model`, :class:`Loss`, :class:`Dataset`, :class:`Metric`, and for the rating
    track :class:`RatingModel` and :class:`RatingMetric`.
What the core hands a plugin
    :class:`FitContext` (a model's ``fit``), :class:`MetricContext` (a metric's
    ``__call__``), :class:`RatingFitContext`, :class:`RatingMetricContext`,
    :class:`DataContext` (a dataset's ``load`` and ``fingerprint``).
Data
    :class:`Interactions` (what a dataset returns), :class:`Sequences` (training
    sequences, CSR), :data:`PADDING_ITEM` (item id 0), :func:`ragged_indices`,
    :class:`Queries` (validation queries), :class:`SequenceBatch` (a model's input),
    :class:`Ranking` (a metric's input), :class:`RatingEvents`, :class:`RatingHistory`
    and :class:`RatingBatch` (the rating track).
Errors
    :class:`ConfigError` (bad options or names), :class:`DataError` (missing or
    malformed data), :class:`PluginError` (a plugin that breaks its contract).
Options
    :func:`parse_options` (build an options dataclass from key/value pairs, strictly),
    :func:`as_dict` (an options instance as a JSON-friendly dict).
Search spaces (a model's ``search_space``, what ``recbench tune`` may try)
    :class:`FloatRange`, :class:`IntRange` and :class:`Choice`, each conditional with
    ``when={"option": (values...)}``.
The shared trainer (neural next-item models)
    :class:`TrainingOptions` (a model's ``Options`` inherit them), :class:`SequenceNetwork`
    (what the trainer needs of a network), :func:`fit_network`, :class:`TrainingHistory`,
    :class:`TrainingDiverged`, :class:`NegativeSampler`, and the helpers
    :func:`linear_scores`, :func:`start_aligned`, :func:`last_positions` and
    :func:`scores_of_rows` (a one-pass ``score_prefixes`` scoring only the rows asked for);
    :class:`EpochLoop`, the epoch loop itself (epochs, validation, patience, best
    weights, atomic checkpoints) for a model that trains outside :func:`fit_network`.
Serving
    :class:`ScoringCell`: the base of a one-step cell that is exported to ONNX and timed.
Utilities
    :class:`Progress` (progress bars and log lines; :class:`ProgressBar` is the handle
    of one bar), :func:`fetch` (download with a
    SHA-256 check) and :func:`safe_extract` (unpack a zip archive safely).
"""

from __future__ import annotations

from recbench.config.options import as_dict, parse_options
from recbench.config.search_space import Choice, FloatRange, IntRange
from recbench.contracts import (
    Dataset,
    FitContext,
    Loss,
    Metric,
    MetricContext,
    Model,
    RatingFitContext,
    RatingMetric,
    RatingMetricContext,
    RatingModel,
)
from recbench.data.batches import RatingBatch, SequenceBatch
from recbench.data.download import fetch, safe_extract
from recbench.data.interactions import PADDING_ITEM, Interactions, Sequences, ragged_indices
from recbench.data.prepare import DataContext
from recbench.data.protocols import Queries
from recbench.data.ratings import RatingEvents, RatingHistory
from recbench.errors import ConfigError, DataError, PluginError
from recbench.hookspecs import PLUGIN_API_VERSION, hookimpl
from recbench.progress import Progress, ProgressBar
from recbench.ranking import Ranking
from recbench.serve.cell import ScoringCell
from recbench.train.loop import EpochLoop
from recbench.train.sampling import NegativeSampler
from recbench.train.trainer import (
    SequenceNetwork,
    TrainingDiverged,
    TrainingHistory,
    TrainingOptions,
    fit_network,
    last_positions,
    linear_scores,
    scores_of_rows,
    start_aligned,
)

__all__ = [
    "PADDING_ITEM",
    "PLUGIN_API_VERSION",
    "Choice",
    "ConfigError",
    "DataContext",
    "DataError",
    "Dataset",
    "EpochLoop",
    "FitContext",
    "FloatRange",
    "IntRange",
    "Interactions",
    "Loss",
    "Metric",
    "MetricContext",
    "Model",
    "NegativeSampler",
    "PluginError",
    "Progress",
    "ProgressBar",
    "Queries",
    "Ranking",
    "RatingBatch",
    "RatingEvents",
    "RatingFitContext",
    "RatingHistory",
    "RatingMetric",
    "RatingMetricContext",
    "RatingModel",
    "ScoringCell",
    "SequenceBatch",
    "SequenceNetwork",
    "Sequences",
    "TrainingDiverged",
    "TrainingHistory",
    "TrainingOptions",
    "as_dict",
    "fetch",
    "fit_network",
    "hookimpl",
    "last_positions",
    "linear_scores",
    "parse_options",
    "ragged_indices",
    "safe_extract",
    "scores_of_rows",
    "start_aligned",
]
