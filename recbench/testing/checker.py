"""What every check of the kit shares: :class:`ConformanceError`, the :class:`Checker` that
words failures, the :class:`Settings` of one call, building a plugin from its options, and
comparing two computations of the same scores."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from recbench.testing.data import TinyData, tiny_data

if TYPE_CHECKING:
    import numpy as np
    import torch

    from recbench.data.prepare import DataContext

#: Names of a model option holding the number of training epochs; the kit sets the first
#: one a model has to ``epochs`` (see :func:`assert_conforms`).
EPOCH_OPTIONS: tuple[str, ...] = ("epochs", "n_epochs", "num_epochs", "max_epochs")
#: Relative tolerance when comparing two computations of the same scores.
SCORE_TOLERANCE = 1e-4


class ConformanceError(AssertionError):
    """A plugin does not honour its contract; the message says what is wrong and how."""


@dataclasses.dataclass
class Settings:
    """The options of one :func:`recbench.testing.assert_conforms` call."""

    learns: bool
    epochs: int | None
    device: str
    data: TinyData | None
    data_context: DataContext | None
    skip_missing_data: bool

    def tiny_data(self) -> TinyData:
        """The data models and metrics are checked on (built on first use)."""
        if self.data is None:
            self.data = tiny_data()
        return self.data


def qualname(obj: Any) -> str:
    """``module.QualifiedName`` of a class (or function)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


class Checker:
    """Formats failures as '<kind> '<id>' (<class>) does not conform: <what>'."""

    def __init__(self, kind: str, cls: Any):
        self.kind = kind
        self.cls = cls
        self.name = f"{kind} '{getattr(cls, 'id', '?')}' ({qualname(cls)})"

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


def construct(checker: Checker, values: Mapping[str, Any]) -> Any:
    """The plugin built as recbench builds it: ``cls(parse_options(cls.Options, values))``."""
    from recbench.config.options import parse_options
    from recbench.errors import ConfigError

    try:
        options = parse_options(
            checker.cls.Options, values, owner=f"{checker.kind} '{checker.cls.id}'"
        )
    except ConfigError as exc:
        raise checker.fail(f"the options given to the kit are refused: {exc.one_line()}") from None
    return checker.call(f"{checker.cls.__name__}(options)", checker.cls, options)


def construct_with_epochs(
    checker: Checker, options: Mapping[str, Any], settings: Settings
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
    return construct(checker, values), epoch_key, values.get(epoch_key or "")


def varied_lengths(lengths: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` rows (sorted indices) with ``lengths`` as varied as possible."""
    import numpy as np

    order = np.argsort(lengths, kind="stable")
    picks = np.linspace(0, len(order) - 1, num=min(count, len(order))).round().astype(np.int64)
    return np.unique(order[picks])


def score_difference(a: torch.Tensor, b: torch.Tensor, *, allow_shift: bool) -> float | None:
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
