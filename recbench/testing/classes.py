"""Checking one plugin class: telling its kind, then running the checks of that kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recbench.testing.checker import Checker, ConformanceError, Settings, qualname
from recbench.testing.datasets import check_dataset
from recbench.testing.losses import check_loss
from recbench.testing.metrics import check_metric
from recbench.testing.models import check_model
from recbench.testing.options import check_options
from recbench.testing.rating import check_rating_metric, check_rating_model
from recbench.testing.search_space import check_search_space


def kind_of(obj: Any) -> str:
    """``model``, ``dataset``, ``metric`` or ``loss``, told from the class's methods."""
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
        f"cannot tell which kind of plugin {qualname(obj)} is: a model has fit() and "
        "score() (or predict(), for a rating model), a dataset load() and fingerprint(), a metric bounds and __call__(), a "
        "loss __call__(); or pass kind='model' (loss, dataset, metric)"
    )


def check_class(cls: Any, kind: str, options: Mapping[str, Any], settings: Settings) -> None:
    """Check ``cls`` as a plugin of ``kind``: what the registry validates, its options,
    then the checks of its kind (and task)."""
    from recbench.contracts import KINDS, task_of
    from recbench.errors import PluginError
    from recbench.registry import validate_class

    if kind not in KINDS:
        raise ConformanceError(f"unknown plugin kind {kind!r}: use one of {', '.join(KINDS)}")
    checker = Checker(kind, cls)
    try:
        validate_class(kind, cls)
    except PluginError as exc:
        raise checker.fail(exc.one_line()) from None
    check_options(checker)
    if kind == "model":
        check_search_space(checker)
    rating = kind in ("model", "metric") and task_of(cls) == "rating"
    if kind == "model":
        (check_rating_model if rating else check_model)(checker, options, settings)
    elif kind == "loss":
        check_loss(checker, options)
    elif kind == "metric":
        (check_rating_metric if rating else check_metric)(checker, options, settings)
    else:
        check_dataset(checker, options, settings)
