"""The kit's checks of a ranking metric (their shared parts also check rating metrics)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from recbench.testing.checker import Checker, ConformanceError, Settings, construct

if TYPE_CHECKING:
    import torch

    from recbench.ranking import Ranking


def check_metric(checker: Checker, options: Mapping[str, Any], settings: Settings) -> None:
    """Values per query, within bounds, repeatable, on random, popularity, perfect and
    all-tied rankings of every protocol, at cutoffs 1, 10 and deeper than the catalogue."""
    import torch

    from recbench.contracts import MetricContext
    from recbench.data.protocols import PROTOCOLS

    check_metric_metadata(checker)
    metric = construct(checker, options)
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


def check_metric_metadata(checker: Checker) -> None:
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
    checker: Checker, metric: Any, ranking: Ranking, k: int, context: Any, where: str
) -> None:
    import torch

    snapshot = {f.name: getattr(ranking, f.name).clone() for f in dataclasses.fields(ranking)}
    call = functools.partial(checker.call, f"the metric ({where})", metric, ranking, k, context)
    values = metric_output(checker, call(), len(ranking), where, unit="query", units="queries")
    for name, before in snapshot.items():
        if not torch.equal(getattr(ranking, name), before):
            raise checker.fail(f"it modified ranking.{name} in place ({where})")
    check_metric_range(
        checker, values, call, where, name_query=checker.cls.per_query, same="ranking"
    )


def metric_output(
    checker: Checker, values: Any, count: int, where: str, *, unit: str, units: str
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


def check_metric_range(
    checker: Checker,
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
