"""The significance marks of the reports' metric tables, and how p-values read in words.

In a table (a protocol at a cutoff for ranking; the rating table) every model is tested
against the column's best baseline (†) and best model (‡): a two-sided Wilcoxon
signed-rank test on the per-query (per-event) values of the cells, paired within a seed
(within a seed's fold, in a k-fold run) and pooled over seeds and folds
(:func:`recbench.stats.significance.pooled_paired_test`; a query that several seeds test,
with a fixed ``split.seed``, counts once, with its differences averaged; when the cells
record each query's test user, :data:`recbench.results.QUERY_USER`, a user's queries are
averaged too and the test runs over users), the p-values Holm-adjusted over every test
of the table. Baselines are the models whose class declares ``baseline = True``
(``config.json``: ``models[label].baseline``).

Beside the marks, a table states the *minimum detectable difference* of each metric
(:mod:`recbench.stats.power`) between its two best models: from the standard deviation of
their pooled paired differences, at the two-sided level of Holm's strictest step over the
table's tests (``ALPHA / m``) and power :data:`recbench.stats.power.POWER`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbench.results import RunDirectory, split_key
from recbench.stats import significance
from recbench.stats.power import POWER, DetectableDifference, detectable_difference

#: Adjusted p-values below this mark a difference as significant.
ALPHA = 0.05
#: The paired test of the significance marks (:mod:`recbench.stats.significance`).
TEST: significance.Test = "wilcoxon"
VS_BASELINE_MARK = "†"
VS_BEST_MARK = "‡"


@dataclass(frozen=True)
class TableTests:
    """The significance tests of one table.

    ``references[metric] = (best baseline, best model)`` (either ``None``);
    ``adjusted[(model, metric)] = (p vs best baseline, p vs best model)``, Holm-adjusted
    over every test of the table (NaN: not tested); ``n_tests`` the size of that family;
    ``detectable[metric] = (best model, second model, their minimum detectable
    difference)`` where both have per-query values; ``unit`` what was paired:
    ``"users"`` (a user's queries averaged) or ``"queries"``.
    """

    references: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    adjusted: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    n_tests: int = 0
    detectable: Mapping[str, tuple[str, str, DetectableDifference]] = field(default_factory=dict)
    unit: str = "queries"

    def marks(self, model: str, metric: str) -> str:
        p_baseline, p_best = self.adjusted.get((model, metric), (math.nan, math.nan))
        return (VS_BASELINE_MARK if p_baseline < ALPHA else "") + (
            VS_BEST_MARK if p_best < ALPHA else ""
        )


def table_tests(
    run_dir: RunDirectory,
    grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    protocol: str,
    names: Sequence[str],
    models: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    higher_is_better: Callable[[str], bool],
    baselines: set[str],
) -> TableTests:
    """Every model against the column's best baseline and best model, per metric name of
    ``names`` (each with per-query arrays in the cells of ``grouped[(protocol, model)]``;
    ``aggregated[(protocol, model, name)]`` ranks the models)."""
    # Each cell's per-query arrays, read once for every metric and the query users.
    loaded = {
        model: [(cell, run_dir.per_query(cell)) for cell in grouped.get((protocol, model), [])]
        for model in models
    }
    same_queries = run_dir.same_queries()
    users = run_dir.query_users([pair for pairs in loaded.values() for pair in pairs])

    def values(model: str, name: str) -> dict[Hashable, np.ndarray]:
        """``{seed: values}``, or ``{(seed, fold): values}`` for the cells of a k-fold run."""
        return {
            split_key(cell): per_query[name]
            for cell, per_query in loaded.get(model, [])
            if name in per_query
        }

    references: dict[str, tuple[str | None, str | None]] = {}
    raw: dict[tuple[str, str, int], float] = {}
    leaders: dict[str, tuple[str, str]] = {}
    for name in names:
        higher = higher_is_better(name)
        present = [m for m in models if (protocol, m, name) in aggregated]
        ranked = sorted(
            present,
            key=lambda m: aggregated[(protocol, m, name)][0] * (-1 if higher else 1),
        )
        best_baseline = next((m for m in ranked if m in baselines), None)
        best = ranked[0] if ranked else None
        references[name] = (best_baseline, best)
        if len(ranked) > 1:
            leaders[name] = (ranked[0], ranked[1])
        for model in present:
            for slot, reference in enumerate((best_baseline, best)):
                if reference is None or reference == model:
                    continue
                raw[(model, name, slot)] = significance.pooled_paired_test(
                    values(model, name), values(reference, name), TEST, same_queries, users
                )
    keys = list(raw)
    adjusted_values = significance.holm([raw[key] for key in keys]) if keys else np.zeros(0)
    adjusted: dict[tuple[str, str], list[float]] = {}
    for (model, name, slot), p in zip(keys, adjusted_values, strict=True):
        adjusted.setdefault((model, name), [math.nan, math.nan])[slot] = float(p)
    alpha = ALPHA / max(len(keys), 1)
    detectable = {}
    for name, (best, second) in leaders.items():
        differences = significance.pooled_differences(
            values(best, name), values(second, name), same_queries, users
        )
        if differences.size > 1:
            detectable[name] = (
                best,
                second,
                detectable_difference(differences, alpha=alpha, power=POWER),
            )
    return TableTests(
        references,
        {key: (v[0], v[1]) for key, v in adjusted.items()},
        len(keys),
        detectable,
        "queries" if users is None else "users",
    )


def detectable_line(tests: TableTests, name: str, unit: str, values: str = "") -> list[str]:
    """The sentence under a table that states metric ``name``'s minimum detectable
    difference between the table's two best models (none: empty), ``unit`` naming what
    was paired (``queries``, ``users``, ``test events``), ``values`` what the difference
    is a difference of, when it is not the metric itself."""
    if name not in tests.detectable:
        return []
    best, second, detectable = tests.detectable[name]
    m = tests.n_tests
    level = f"α = {ALPHA}" + (
        f"/{m} (Holm's strictest step over the table's {m} tests)" if m > 1 else ""
    )
    return [
        f"Minimum detectable difference on {name}{values}: **{detectable.difference:.4f}** "
        f"between {best} and {second} (the two best; {detectable.n:,} paired {unit}, "
        f"sd of the differences {detectable.sd:.3f}, observed difference "
        f"{abs(detectable.observed):.4f}): the smallest true difference a paired test at "
        f"two-sided {level} detects with power {detectable.power:g} (normal approximation).",
        "",
    ]


def p_text(p: float) -> str:
    """``p < 0.001`` or ``p = 0.012``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
