"""Search spaces: the values of a plugin's options that tuning may try.

A model declares its space next to its ``Options``, as a class attribute mapping option
names to value types::

    search_space = {
        "learning_rate": FloatRange(1e-4, 3e-2, log=True),
        "embedding_dim": IntRange(32, 256, step=32),
        "loss": Choice(("bpr", "cce")),
        "negatives": IntRange(8, 512, log=True, when={"loss": ("bpr",)}),
    }

:class:`FloatRange` and :class:`IntRange` are ranges (``low`` and ``high`` included, on a
log scale with ``log=True``), :class:`Choice` a list of values; ``when`` makes an entry
conditional: it is tried only when the named earlier entries took one of the given values
(otherwise the option keeps its value from the run's configuration or its default). A
one-value ``Choice`` fixes an option for tuning (e.g. an epochs cap). An empty space is a
valid declaration: the model has nothing worth tuning.

:func:`space_problem` checks a space against the ``Options`` it belongs to when the
plugin is registered (:func:`recbench.registry.validate_class`). The tuner turns entries
into Optuna suggestions (:mod:`recbench.tuning.space`); this module imports no Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recbench.config.options import coerce, option_fields
from recbench.errors import ConfigError

#: When an entry is active: (option name, the values it must have) pairs, all required.
Condition = tuple[tuple[str, tuple[Any, ...]], ...]


def _condition(when: Mapping[str, Any] | Condition | None) -> Condition:
    if not when:
        return ()
    pairs = when.items() if isinstance(when, Mapping) else when
    return tuple(
        (str(name), tuple(values) if isinstance(values, (tuple, list)) else (values,))
        for name, values in pairs
    )


@dataclass(frozen=True)
class FloatRange:
    """Real values from ``low`` to ``high`` (both included); ``log``: sampled uniformly on
    a log scale (``low`` must be positive). ``when``: see :mod:`recbench.config.search_space`."""

    low: float
    high: float
    log: bool = False
    when: Condition = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _condition(self.when))

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` (both included) in steps of ``step``; ``log``:
    sampled on a log scale (``low`` positive, ``step`` 1)."""

    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Condition = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _condition(self.when))

    def describe(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"{self.low} to {self.high}{step}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (``None``, booleans, numbers or strings)."""

    values: tuple[Any, ...]
    when: Condition = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        values = self.values
        object.__setattr__(
            self, "values", tuple(values) if isinstance(values, (tuple, list)) else (values,)
        )
        object.__setattr__(self, "when", _condition(self.when))

    def describe(self) -> str:
        return ", ".join(map(repr, self.values))


SpaceEntry = FloatRange | IntRange | Choice
#: Option name -> what tuning may try, in the order options are sampled.
SearchSpace = Mapping[str, SpaceEntry]


def is_active(entry: SpaceEntry, chosen: Mapping[str, Any]) -> bool:
    """Whether ``entry`` is tried, given the values ``chosen`` for earlier entries."""
    return all(chosen.get(name, _UNSET) in values for name, values in entry.when)


_UNSET = object()


def space_problem(space: Any, options_cls: type) -> str | None:
    """Why ``space`` is not a valid search space of ``options_cls``, or ``None``.

    Every name must be an option, every range non-empty (``low < high``) with bounds of
    the option's type (a log range positive, a step that fits it), every choice non-empty,
    without repeats, of values of the option's type (``Literal`` choices included), and
    every condition must name an earlier entry of the space and values it can take.
    """
    if not isinstance(space, Mapping):
        return f"'search_space' must be a dict of option name -> range or choice, got {space!r}"
    fields = option_fields(options_cls)
    seen: dict[str, SpaceEntry] = {}
    for name, entry in space.items():
        if name not in fields:
            return f"search space names '{name}', which is not one of its options"
        problem = _entry_problem(name, entry, fields[name], seen)
        if problem is not None:
            return f"search space entry '{name}': {problem}"
        seen[name] = entry
    return None


def _entry_problem(
    name: str, entry: Any, annotation: Any, earlier: Mapping[str, SpaceEntry]
) -> str | None:
    if not isinstance(entry, (FloatRange, IntRange, Choice)):
        return f"must be a FloatRange, IntRange or Choice, got {entry!r}"
    for other, values in entry.when:
        if other not in earlier:
            return f"its condition names '{other}', which is not an earlier entry of the space"
        condition_on = earlier[other]
        if isinstance(condition_on, Choice):
            missing = [v for v in values if v not in condition_on.values]
            if missing:
                return f"its condition asks for {other}={missing[0]!r}, which is not a choice"
    if isinstance(entry, Choice):
        if not entry.values:
            return "the choice is empty"
        if len(set(map(repr, entry.values))) != len(entry.values):
            return "a choice is listed twice"
        return _values_problem(name, entry.values, annotation)
    if isinstance(entry, IntRange) and not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (entry.low, entry.high, entry.step)
    ):
        return "an IntRange takes integer bounds and step"
    if not (
        isinstance(entry.low, (int, float))
        and isinstance(entry.high, (int, float))
        and math.isfinite(entry.low)
        and math.isfinite(entry.high)
    ):
        return "the bounds must be finite numbers"
    if not entry.low < entry.high:
        return f"the range {entry.low} to {entry.high} is empty or inverted (low must be < high)"
    if entry.log and entry.low <= 0:
        return f"a log range must be positive, got low={entry.low}"
    if isinstance(entry, IntRange):
        if entry.step < 1:
            return f"the step must be at least 1, got {entry.step}"
        if entry.log and entry.step != 1:
            return "a log IntRange takes step 1"
    return _values_problem(name, (entry.low, entry.high), annotation)


def _values_problem(name: str, values: tuple[Any, ...], annotation: Any) -> str | None:
    for value in values:
        try:
            converted = coerce(value, annotation, owner="the model", key=name)
        except ConfigError:
            converted = _UNSET
        if converted is _UNSET or (converted != value and not _same_number(converted, value)):
            return f"{value!r} is not a value of the option's type"
    return None


def _same_number(converted: Any, value: Any) -> bool:
    return isinstance(converted, float) and isinstance(value, int) and converted == value


def describe_space(space: SearchSpace) -> dict[str, str]:
    """Option name -> the entry in words (with its condition), for reports and listings."""
    described = {}
    for name, entry in space.items():
        text = entry.describe()
        if entry.when:
            text += " when " + " and ".join(
                f"{other} in {{{', '.join(map(repr, values))}}}" for other, values in entry.when
            )
        described[name] = text
    return described
