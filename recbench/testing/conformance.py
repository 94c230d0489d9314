""":func:`assert_conforms`: the kit's one entry point, for a plugin class or module."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recbench.testing.checker import Settings
from recbench.testing.classes import check_class, kind_of
from recbench.testing.modules import check_module

if TYPE_CHECKING:
    from recbench.data.prepare import DataContext
    from recbench.testing.data import TinyData


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
    - model: its ``search_space``, if any, names only its options, with valid ranges
      and choices of the options' types, each value accepted by ``Options``;
      ``max_length`` is ``None`` or a positive integer; ``fit`` trains on the tiny
      data (``epochs`` epochs); ``score`` returns a floating-point tensor
      ``[batch, n_items + 1]`` on the model's device without NaN, also for a batch of
      one; padding never counts: the scores of an input alone equal its scores when
      left-padded in a batch with longer inputs; ``cell()``, if the model has it, is a
      ``torch.nn.Module`` whose step-by-step scores match ``score`` on the same inputs
      (up to a constant per row, e.g. logits against log-probabilities);
      ``score_prefixes``, if the model has it (the optional one-pass method), yields one
      ``[batch, w, n_items + 1]`` chunk per ``steps`` columns whose rows equal ``score``
      on every prefix of at most ``max_length`` items and the cell stepped over the
      whole history (:mod:`recbench.testing.prefixes`); the model
      beats popularity (``mrr@10``, ``iterative`` protocol) unless ``learns=False``; and
      the cell exports to ONNX as a run exports it, ONNX Runtime matching torch
      (:func:`recbench.serve.export.export_and_check`, default export options; skipped
      with a warning where onnx, onnxruntime or onnxscript cannot be imported).
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

    settings = Settings(
        learns=learns,
        epochs=epochs,
        device=device,
        data=data,
        data_context=data_context,
        skip_missing_data=skip_missing_data,
    )
    if inspect.ismodule(obj):
        check_module(obj, options or {}, settings)
        return
    if isinstance(obj, PluginInfo):
        kind = kind or obj.kind
        obj = obj.cls
    check_class(obj, kind or kind_of(obj), options or {}, settings)
