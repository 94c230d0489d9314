"""Compare two run directories metric by metric, as ``asv compare`` does for timings.

For every (model label, protocol, metric) of the two runs, the value of a run is the mean
over seeds of its finished cells -- over the seeds that finished in both runs, when they
share any -- and the ratio is ``B / A``. Each row gets a mark:

- ``+`` worse by more than the factor: ``B / A`` below ``1 / factor`` for a metric where
  higher is better, above ``factor`` where lower is better (``higher_is_better`` of the
  metric's entry in the cells when they record it, as rating cells do for ``rmse`` and
  ``rmse_stars``, else of the metric in ``config.json``; B's when the runs disagree). A
  regression.
- ``-`` better by more than the factor.
- ``~`` within the factor either way.
- ``x`` failed in B: one row per (model, protocol), a regression when the failed seeds
  finished in A, not one when the cell failed in both runs.
- ``!`` not compared: a (model, protocol) or a metric in one run only, or a metric without
  a value (NaN) in one of them.

The runs' setups are compared too (:func:`setup_differences`: dataset, preprocessing,
split, seen-item exclusion and ties): where they differ, their metrics measure different
things, and ``recbench compare`` warns in one line.

A zero in A leaves the ratio undefined (shown as ``n/a``): 0 -> 0 is within the factor,
0 -> a positive value is an improvement where higher is better and a regression where
lower is better. Metrics are compared as non-negative quantities (rates, shares and
counts such as ``item_coverage`` alike); a negative value leaves the ratio undefined and
the row within. A model that finished in B after failing in A is marked ``-``.

The comparison reads only the result files of both runs; nothing is recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbench.errors import ConfigError, close_matches
from recbench.report.markdown import markdown_table
from recbench.results import RunDirectory, read_json

DEFAULT_FACTOR = 1.05

REGRESSED = "+"
IMPROVED = "-"
WITHIN = "~"
FAILED = "x"
NOT_COMPARED = "!"

#: The metric column of a row about a whole (model, protocol) cell rather than a metric.
ALL_METRICS = "(all)"


@dataclass(frozen=True)
class ComparisonRow:
    """One (model, protocol, metric) of a comparison.

    ``a`` and ``b`` are the means over seeds (``None`` where the run has no value),
    ``ratio`` is ``b / a`` (``None`` where undefined), ``mark`` one of ``+ - ~ x !`` and
    ``regressed`` whether the row counts as a regression. ``note_a`` and ``note_b`` say
    why a value is missing (``"failed (seed 1)"``, ``"not in B"``, ``"missing"``).
    """

    model: str
    protocol: str
    metric: str
    higher_is_better: bool
    a: float | None
    b: float | None
    ratio: float | None
    mark: str
    regressed: bool
    note_a: str = ""
    note_b: str = ""

    @property
    def changed(self) -> bool:
        return self.mark != WITHIN


@dataclass
class Comparison:
    """The comparison of run ``run_b`` against run ``run_a`` (see the module docstring)."""

    run_a: Path
    run_b: Path
    factor: float
    rows: list[ComparisonRow]
    notes: list[str] = field(default_factory=list)
    #: How the runs' data and evaluation setups differ (:func:`setup_differences`).
    setup_differences: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [row for row in self.rows if row.regressed]

    @property
    def improvements(self) -> list[ComparisonRow]:
        return [row for row in self.rows if row.mark == IMPROVED]

    @property
    def regressed(self) -> bool:
        """Whether any row regressed beyond the factor, or a cell that finished in A
        failed in B."""
        return any(row.regressed for row in self.rows)

    def legend(self) -> str:
        f = _format_factor(self.factor)
        return (
            f"Marks: `{REGRESSED}` worse by more than ×{f} (a regression), "
            f"`{IMPROVED}` better by more than ×{f}, `{WITHIN}` within ×{f}, "
            f"`{FAILED}` failed in B (a regression when it finished in A), "
            f"`{NOT_COMPARED}` not compared (in one run only, or no value). "
            "Ratio = B / A of the means over seeds; ↑ higher is better, ↓ lower is better; "
            "n/a where undefined (A is 0, or a value is missing)."
        )

    def verdict(self) -> str:
        """One line: ``REGRESSION: ...`` or ``OK: ...``, then how many rows improved,
        stayed within the factor, still fail or were not compared."""
        counts = {mark: 0 for mark in (REGRESSED, IMPROVED, WITHIN, FAILED, NOT_COMPARED)}
        for row in self.rows:
            counts[row.mark] += 1
        newly_failed = sum(1 for row in self.rows if row.mark == FAILED and row.regressed)
        f = _format_factor(self.factor)
        regressions = []
        if counts[REGRESSED]:
            regressions.append(f"{counts[REGRESSED]} regressed beyond ×{f}")
        if newly_failed:
            regressions.append(f"{newly_failed} failed in B")
        head = (
            "REGRESSION: " + ", ".join(regressions)
            if regressions
            else f"OK: no regression beyond ×{f}"
        )
        parts = [f"{counts[IMPROVED]} improved", f"{counts[WITHIN]} within the factor"]
        if counts[FAILED] - newly_failed:
            parts.append(f"{counts[FAILED] - newly_failed} still failing")
        if counts[NOT_COMPARED]:
            parts.append(f"{counts[NOT_COMPARED]} not compared")
        return f"{head}; " + ", ".join(parts) + "."

    def to_markdown(self, *, only_changed: bool = False) -> str:
        """The header, the table (``only_changed``: without ``~`` rows), the legend and the
        verdict, as markdown."""
        lines = [f"A: {self.run_a}", f"B: {self.run_b}", ""]
        lines += [f"Note: {note}" for note in self.notes]
        if self.notes:
            lines.append("")
        rows = [row for row in self.rows if row.changed or not only_changed]
        if rows:
            table = [
                [
                    row.mark,
                    row.model,
                    row.protocol,
                    row.metric
                    if row.metric == ALL_METRICS
                    else f"{row.metric} {'↑' if row.higher_is_better else '↓'}",
                    _format_value(row.a, row.note_a),
                    _format_value(row.b, row.note_b),
                    "n/a" if row.ratio is None else f"{row.ratio:.3f}",
                ]
                for row in rows
            ]
            lines += [markdown_table(table, ["", "model", "protocol", "metric", "A", "B", "ratio"])]
        else:
            lines += [f"No change beyond ×{_format_factor(self.factor)}."]
        lines += ["", self.legend(), "", self.verdict()]
        return "\n".join(lines) + "\n"


def _format_factor(factor: float) -> str:
    return f"{factor:g}"


def _format_value(value: float | None, note: str) -> str:
    if value is None:
        return note or "–"
    if math.isnan(value):
        return "n/a"
    if value.is_integer() and abs(value) >= 1:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


@dataclass
class _Run:
    path: Path
    config: Mapping[str, Any]
    # (model, protocol) -> seed -> cell
    ok: dict[tuple[str, str], dict[int, Mapping[str, Any]]]
    failed: dict[tuple[str, str], dict[int, Mapping[str, Any]]]
    datasets: set[str]

    @classmethod
    def load(cls, path: str | Path) -> _Run:
        run_dir = RunDirectory.open(Path(path))
        config = read_json(run_dir.path / "config.json").get("config", {})
        ok: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
        failed: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
        datasets = set()
        for cell in run_dir.cells():
            if cell.get("fold") is not None:
                raise ConfigError(
                    "compare does not read k-fold runs (split.method=kfold): its cells are "
                    "per seed",
                    where=str(run_dir.path),
                    hint="compare the reports of the k-fold runs (recbench report RUN_DIR)",
                )
            key = (str(cell["model_label"]), str(cell["protocol"]))
            target = ok if cell.get("status") == "ok" else failed
            target.setdefault(key, {})[int(cell["seed"])] = cell
            datasets.add(str(cell.get("dataset")))
        return cls(run_dir.path, config, ok, failed, datasets)

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return set(self.ok) | set(self.failed)

    def model_order(self) -> list[str]:
        return [str(m) for m in self.config.get("models", {})]

    def protocol_order(self) -> list[str]:
        return [str(p) for p in self.config.get("protocols", [])]

    def metric_names(self, key: tuple[str, str]) -> list[str]:
        names: dict[str, None] = {}
        for cell in self.ok.get(key, {}).values():
            names.update(dict.fromkeys(cell.get("metrics", {})))
        return list(names)

    def higher_is_better(self, key: tuple[str, str], name: str) -> bool | None:
        """The direction of metric ``name`` in the cells of ``key``: their metric entry's
        ``higher_is_better``, else that of the metric's id in ``config.json``; ``None``
        when neither says."""
        for cell in self.ok.get(key, {}).values():
            entry = cell.get("metrics", {}).get(name)
            if isinstance(entry, Mapping) and "higher_is_better" in entry:
                return bool(entry["higher_is_better"])
        meta = self.config.get("metrics", {}).get(_metric_id(name))
        if isinstance(meta, Mapping) and "higher_is_better" in meta:
            return bool(meta["higher_is_better"])
        return None


def _metric_id(name: str) -> str:
    return name.partition("@")[0]


def _metric_sort_key(name: str) -> tuple[int, str]:
    metric_id, _, k = name.partition("@")
    return (int(k) if k.isdigit() else -1, metric_id)


def _mean(cells: Iterable[Mapping[str, Any]], name: str) -> float | None:
    values = [
        float(cell["metrics"][name]["mean"])
        if cell["metrics"][name]["mean"] is not None
        else math.nan
        for cell in cells
        if name in cell.get("metrics", {})
    ]
    if not values:
        return None
    return math.fsum(values) / len(values)


def _order(preferred: Sequence[str], present: Iterable[str]) -> list[str]:
    present = set(present)
    ordered = [item for item in dict.fromkeys(preferred) if item in present]
    return ordered + sorted(present - set(ordered))


def _mark(a: float, b: float, factor: float, higher_is_better: bool) -> tuple[float | None, str]:
    """The ratio ``b / a`` (``None`` when undefined) and the mark of a change."""
    if a < 0 or b < 0:
        return None, WITHIN
    if a == 0:
        if b == 0:
            return None, WITHIN
        return None, IMPROVED if higher_is_better else REGRESSED
    ratio = b / a
    if ratio > factor:
        return ratio, IMPROVED if higher_is_better else REGRESSED
    if ratio < 1 / factor:
        return ratio, REGRESSED if higher_is_better else IMPROVED
    return ratio, WITHIN


def _seeds_text(seeds: Iterable[int]) -> str:
    seeds = sorted(seeds)
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    factor: float = DEFAULT_FACTOR,
    metrics: Sequence[str] = (),
    protocols: Sequence[str] = (),
) -> Comparison:
    """Compare run directory ``run_b`` against ``run_a`` (see the module docstring).

    Parameters
    ----------
    factor:
        A change counts when ``B / A`` leaves ``[1 / factor, factor]``; must exceed 1.
    metrics:
        Only these metrics: full names (``sps@10``) or ids for every cutoff (``sps``).
    protocols:
        Only these protocols.

    Raises
    ------
    ConfigError
        When a path is not a run directory, ``factor`` is not above 1, a metric or
        protocol is in neither run, or the runs share no (model, protocol) cell.
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise ConfigError(
            f"the factor must be a number above 1, got {factor}",
            where="--factor",
            hint="e.g. --factor 1.05 flags changes of more than 5%",
        )
    a = _Run.load(run_a)
    b = _Run.load(run_b)

    pairs = a.pairs | b.pairs
    all_protocols = {protocol for _, protocol in pairs}
    for protocol in protocols:
        if protocol not in all_protocols:
            raise ConfigError(
                f"protocol '{protocol}' is in neither run",
                where="--protocol",
                hint=close_matches(protocol, all_protocols),
            )
    if protocols:
        pairs = {pair for pair in pairs if pair[1] in protocols}

    all_names = {name for run in (a, b) for key in run.ok for name in run.metric_names(key)}
    all_ids = {_metric_id(name) for name in all_names}
    for metric in metrics:
        if metric not in all_names and metric not in all_ids:
            raise ConfigError(
                f"metric '{metric}' is in neither run",
                where="--metrics",
                hint=close_matches(metric, all_names | all_ids),
            )

    def wanted(name: str) -> bool:
        return not metrics or name in metrics or _metric_id(name) in metrics

    common = {pair for pair in pairs if pair in a.pairs and pair in b.pairs}
    if not common:
        raise ConfigError(
            "the two runs share no (model, protocol) cell"
            + (f" under protocol {', '.join(protocols)}" if protocols else ""),
            where=f"{a.path} and {b.path}",
            hint="compare runs of the same models and protocols",
        )

    notes = []
    if a.datasets != b.datasets:
        notes.append(
            f"the runs are on different datasets (A: {', '.join(sorted(a.datasets))}; "
            f"B: {', '.join(sorted(b.datasets))})"
        )
    seeds_a = {seed for cells in a.ok.values() for seed in cells}
    seeds_b = {seed for cells in b.ok.values() for seed in cells}
    if seeds_a != seeds_b:
        notes.append(
            f"the runs finished different seeds (A: {_seeds_text(seeds_a)}; "
            f"B: {_seeds_text(seeds_b)}); means are over the seeds both finished where "
            "they share any"
        )

    models = _order(a.model_order() + b.model_order(), {model for model, _ in pairs})
    protocol_order = _order(a.protocol_order() + b.protocol_order(), {p for _, p in pairs})
    rows: list[ComparisonRow] = []
    for model in models:
        for protocol in protocol_order:
            key = (model, protocol)
            if key in pairs:
                rows += _cell_rows(key, a, b, factor, wanted)
    return Comparison(a.path, b.path, factor, rows, notes, setup_differences(a.config, b.config))


#: The parts of a resolved configuration that decide what the metrics are computed on:
#: the data (dataset and its options, preprocessing), who is held out (split) and how
#: rankings are scored (seen-item exclusion, ties).
SETUP_KEYS = ("dataset", "preprocess", "split", "eval.exclude_seen", "eval.ties")


def setup_differences(config_a: Mapping[str, Any], config_b: Mapping[str, Any]) -> list[str]:
    """``key: A → B`` for every setting of :data:`SETUP_KEYS` (down to single options)
    that differs between two resolved configurations (``config.json``'s ``config``)."""
    differences = []
    for key in SETUP_KEYS:
        a, b = _lookup(config_a, key), _lookup(config_b, key)
        differences += [f"{path}: {x} → {y}" for path, x, y in _differing(key, a, b)]
    return differences


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _differing(path: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        a = a if isinstance(a, Mapping) else {}
        b = b if isinstance(b, Mapping) else {}
        return [
            difference
            for key in dict.fromkeys([*a, *b])
            for difference in _differing(f"{path}.{key}", a.get(key), b.get(key))
        ]
    return [] if a == b else [(path, a, b)]


def _cell_rows(
    key: tuple[str, str], a: _Run, b: _Run, factor: float, wanted: Callable[[str], bool]
) -> list[ComparisonRow]:
    model, protocol = key

    def whole_cell(mark: str, note_a: str, note_b: str, regressed: bool) -> ComparisonRow:
        return ComparisonRow(
            model, protocol, ALL_METRICS, True, None, None, None, mark, regressed, note_a, note_b
        )

    if key not in b.pairs:
        return [whole_cell(NOT_COMPARED, "", "not in B", False)]
    if key not in a.pairs:
        return [whole_cell(NOT_COMPARED, "not in A", "", False)]
    ok_a, ok_b = a.ok.get(key, {}), b.ok.get(key, {})
    failed_a, failed_b = a.failed.get(key, {}), b.failed.get(key, {})
    if not ok_a and not ok_b:
        return [whole_cell(FAILED, "failed", f"failed ({_seeds_text(failed_b)})", False)]
    if not ok_a:
        return [whole_cell(IMPROVED, f"failed ({_seeds_text(failed_a)})", "finished", False)]

    rows: list[ComparisonRow] = []
    newly_failed = sorted(set(failed_b) & set(ok_a))
    if newly_failed:
        rows.append(whole_cell(FAILED, "finished", f"failed ({_seeds_text(newly_failed)})", True))
    if not ok_b:
        return rows

    shared = sorted(set(ok_a) & set(ok_b))
    cells_a = [ok_a[s] for s in shared] if shared else list(ok_a.values())
    cells_b = [ok_b[s] for s in shared] if shared else list(ok_b.values())
    names = dict.fromkeys(a.metric_names(key) + b.metric_names(key))
    for name in sorted((n for n in names if wanted(n)), key=_metric_sort_key):
        higher = b.higher_is_better(key, name)
        if higher is None:
            higher = a.higher_is_better(key, name)
        higher = True if higher is None else higher
        value_a, value_b = _mean(cells_a, name), _mean(cells_b, name)
        if value_a is None or value_b is None:
            mark, ratio = NOT_COMPARED, None
        elif math.isnan(value_a) or math.isnan(value_b):
            both = math.isnan(value_a) and math.isnan(value_b)
            mark, ratio = (WITHIN if both else NOT_COMPARED), None
        else:
            ratio, mark = _mark(value_a, value_b, factor, higher)
        rows.append(
            ComparisonRow(
                model,
                protocol,
                name,
                higher,
                value_a,
                value_b,
                ratio,
                mark,
                regressed=mark == REGRESSED,
                note_a="missing" if value_a is None else "",
                note_b="missing" if value_b is None else "",
            )
        )
    return rows
