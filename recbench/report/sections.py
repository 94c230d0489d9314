"""What every report shows, whatever the run's task, and what a task's sections receive.

:class:`RunView` is a run directory as the report reads it (result files only). The
sections here are shared by every task: environment (with the plugins that were
skipped), dataset, the models' losses and changed options, timing and failures; the sections that
differ (summary, protocol, results and what follows them) are a task's
:class:`TaskSections` (:mod:`recbench.report.ranking_sections`,
:mod:`recbench.report.rating_sections`). :mod:`recbench.report.render` puts them in order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recbench.report.markdown import escape, markdown_table
from recbench.report.metric_display import MetricDisplay
from recbench.results import RunDirectory, read_json
from recbench.stats.summary import MetricSummary, over_seeds, pool_folds
from recbench.tasks.base import Task
from recbench.tasks.catalog import stored_task
from recbench.tasks.ranking import order_check

STATISTICS_ORDER = [
    "users",
    "items",
    "events",
    "raw_events",
    "density",
    "sequence_length",
    "same_timestamp_share",
    "has_repeats",
    "has_timestamps",
    "has_ratings",
]
#: Options shown in the Models table's loss column rather than among the changed options.
LOSS_OPTIONS = ("loss", "loss_options")


@dataclass(frozen=True)
class RunView:
    """A run directory as the report reads it.

    ``cells`` are the benchmark's cells (``ablations`` those of ablations such as the
    order check); ``ok`` the finished ones among ``cells``; ``failed`` every cell that
    did not finish, ablations included. ``grouped[(protocol, model label)]`` holds the
    ``ok`` cells of each model under each protocol (one per seed, or one per seed and
    fold in a k-fold run).
    """

    run_dir: RunDirectory
    config_file: Mapping[str, Any]
    config: Mapping[str, Any]
    environment: Mapping[str, Any]
    dataset: Mapping[str, Any] | None
    task: Task
    cells: Sequence[Mapping[str, Any]]
    ablations: Sequence[Mapping[str, Any]]
    ok: Sequence[Mapping[str, Any]]
    failed: Sequence[Mapping[str, Any]]
    protocols: Sequence[str]
    model_order: Sequence[str]
    baselines: set[str]
    grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]
    display: MetricDisplay

    @classmethod
    def read(cls, run_dir: RunDirectory) -> RunView:
        config_file = read_json(run_dir.path / "config.json")
        config = config_file["config"]
        dataset_path = run_dir.path / "dataset.json"
        every_cell = list(run_dir.cells())
        cells = [c for c in every_cell if not order_check.is_ablation(c)]
        ok = [c for c in cells if c.get("status") == "ok"]
        grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for cell in ok:
            grouped[(cell["protocol"], cell["model_label"])].append(cell)
        return cls(
            run_dir=run_dir,
            config_file=config_file,
            config=config,
            environment=read_json(run_dir.path / "environment.json"),
            dataset=read_json(dataset_path) if dataset_path.is_file() else None,
            task=stored_task(config),
            cells=cells,
            ablations=[c for c in every_cell if order_check.is_ablation(c)],
            ok=ok,
            failed=[c for c in every_cell if c.get("status") != "ok"],
            protocols=[p for p in config["protocols"] if any(c["protocol"] == p for c in cells)],
            model_order=config.get("model_order") or list(config["models"]),
            baselines={label for label, entry in config["models"].items() if entry.get("baseline")},
            grouped=grouped,
            display=MetricDisplay.of(config),
        )

    @property
    def title(self) -> str:
        return str(self.dataset["name"] if self.dataset else self.config["dataset"]["name"])

    @property
    def seeds(self) -> list[int]:
        """The run's seeds, as configured."""
        return list(self.config.get("seeds", []))

    @property
    def finished(self) -> dict[str, list[int]]:
        """Each model's seeds with at least one finished cell."""
        return {
            label: sorted({c["seed"] for c in self.ok if c["model_label"] == label})
            for label in self.model_order
        }

    @property
    def finished_seeds(self) -> list[int]:
        """The seeds some model finished."""
        return sorted({seed for values in self.finished.values() for seed in values})

    def aggregate(
        self, names: Iterable[str]
    ) -> dict[tuple[str, str, str], tuple[float, float | None]]:
        """``(protocol, model, metric name) -> (mean, 95% half-width)`` over seeds
        (:func:`recbench.stats.summary.over_seeds`); the folds of a k-fold seed are pooled
        first (:func:`recbench.stats.summary.pool_folds`)."""
        names = list(names)
        aggregated: dict[tuple[str, str, str], tuple[float, float | None]] = {}
        for (protocol, label), group in self.grouped.items():
            for name in names:
                per_seed: dict[int, list[MetricSummary]] = {}
                for g in group:
                    if name in g["metrics"]:
                        entry = g["metrics"][name]
                        per_seed.setdefault(g["seed"], []).append(
                            MetricSummary(entry["mean"], entry["ci95"], entry.get("n", 0))
                        )
                if per_seed:
                    seeds = [pool_folds(folds) for folds in per_seed.values()]
                    aggregated[(protocol, label, name)] = over_seeds(
                        [s.mean for s in seeds], [s.ci95 for s in seeds]
                    )
        return aggregated

    @property
    def n_folds(self) -> int | None:
        """The number of folds of a k-fold run (``split.method=kfold``), else ``None``."""
        split = self.config.get("split") or {}
        return int(split["folds"]) if split.get("method") == "kfold" else None

    def seeds_of(self, protocol: str, model: str, name: str) -> int:
        """How many seeds ``model`` finished with metric ``name`` under ``protocol``."""
        return len(
            {c["seed"] for c in self.grouped.get((protocol, model), []) if name in c["metrics"]}
        )

    def first_seed_cells(self, protocol: str) -> list[Mapping[str, Any]]:
        """The finished cells of the first model and seed under ``protocol``: one, or one
        per fold of a k-fold run (whose test users together are all users)."""
        sample = next((c for c in self.ok if c["protocol"] == protocol), None)
        if sample is None:
            return []
        return [
            c
            for c in self.grouped[(protocol, sample["model_label"])]
            if c["seed"] == sample["seed"]
        ]


class TaskSections(Protocol):
    """The sections of a task's report, built from a :class:`RunView` (``cls(run)``).

    ``title_suffix`` follows the dataset in the title; ``rate_unit`` names the timing
    table's throughput column (``queries`` per second); ``timing_note`` follows it.
    """

    title_suffix: str
    rate_unit: str
    timing_note: str

    def summary(self) -> str:
        """Which model wins what, and how sure that is (one paragraph)."""
        ...

    def protocol(self) -> list[str]:
        """The ``## Protocol`` section."""
        ...

    def results(self, figures: Mapping[str, str]) -> list[str]:
        """The results sections (metric tables)."""
        ...

    def after_results(self) -> list[str]:
        """Sections between the results and the timing (option sweeps, ablations)."""
        ...


class TaskSectionsFactory(Protocol):
    """The class of a task's sections: builds them from a run, and draws the console
    table that ``recbench run`` prints (``frame``: the ok rows of
    :meth:`recbench.api.RunResult.to_dataframe`)."""

    def __call__(self, run: RunView) -> TaskSections: ...

    def console_table(
        self, frame: Any, model_labels: Sequence[str], display: MetricDisplay
    ) -> Any: ...


def partial_seeds(run: RunView) -> list[str]:
    """A Protocol bullet naming the models that did not finish every seed (none: empty)."""
    finished, finished_seeds = run.finished, run.finished_seeds
    partial = {
        label: values
        for label, values in finished.items()
        if values and set(values) != set(finished_seeds)
    }
    if not partial:
        return []
    return [
        "- **Not every model finished every seed**: "
        + "; ".join(
            f"{escape(label)} seed{'s' if len(values) > 1 else ''} " + ", ".join(map(str, values))
            for label, values in partial.items()
        )
        + f" (of {', '.join(map(str, finished_seeds))}); their means are over those seeds.",
    ]


def environment_section(
    config_file: Mapping[str, Any], environment: Mapping[str, Any]
) -> list[str]:
    """The lines of the Environment section: the command line (from ``config.json``),
    versions, device and plugins, and the plugins that were skipped when there are any
    (from ``environment.json``)."""
    lines = ["## Environment", ""]
    if config_file.get("command"):
        lines += [f"- Command: `{config_file['command']}`"]
    for command in config_file.get("earlier_commands", []):
        lines += [f"- Earlier invocation of this run directory: `{command}`"]
    earlier = environment.get("earlier_git", [])
    lines += [
        f"- recbench {environment.get('recbench')} (git {environment.get('git') or 'unknown'}"
        + (
            f"; earlier invocations of this run directory: git {', '.join(earlier)}"
            if earlier
            else ""
        )
        + f"), plugin API {environment.get('plugin_api')}",
        f"- Python {environment.get('python')}, torch {environment.get('torch')}, "
        f"numpy {environment.get('numpy')}, {environment.get('platform')}",
        f"- Device: {environment.get('device')}"
        + (f" ({environment['gpu']})" if environment.get("gpu") else "")
        + f", torch threads: {environment.get('torch_threads')}",
        "- Plugins: " + ", ".join(f"{d} {v}" for d, v in environment.get("plugins", [])),
    ]
    skipped = environment.get("plugin_failures") or []
    if skipped:
        lines += ["- Skipped plugins (their models, losses, datasets and metrics were missing):"]
        lines += [f"  - {escape(failure)}" for failure in skipped]
    return [*lines, ""]


def dataset_section(dataset: Mapping[str, Any]) -> list[str]:
    """The lines of the Dataset section: the statistics, preprocessing options and
    warnings (when there are any) of ``dataset.json``."""
    rows = [list(row) for row in dataset_statistics_rows(dataset["statistics"])]
    prep = ", ".join(f"{k}={v}" for k, v in dataset.get("preprocessing", {}).items())
    warnings = [f"- {escape(str(warning))}" for warning in dataset.get("warnings", [])]
    return [
        "## Dataset",
        "",
        markdown_table(rows, ["statistic", "value"]),
        "",
        f"Preprocessing: {escape(prep)}.",
        "",
        *(["Warnings about the data:", "", *warnings, ""] if warnings else []),
    ]


def dataset_statistics_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of dataset statistics, in :data:`STATISTICS_ORDER` (others
    after, by name), formatted for reading."""
    ordered = sorted(
        stats,
        key=lambda key: (
            STATISTICS_ORDER.index(key) if key in STATISTICS_ORDER else len(STATISTICS_ORDER),
            key,
        ),
    )
    return [(key.replace("_", " "), _format_stat(stats[key])) for key in ordered]


def _format_stat(value: Any) -> str:
    if isinstance(value, dict):
        order = ["min", "p25", "median", "p75", "max", "mean"]
        keys = sorted(value, key=lambda k: order.index(k) if k in order else len(order))
        return " · ".join(f"{key} {_format_stat(value[key])}" for key in keys)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def models_section(run: RunView) -> list[str]:
    """The Models section: each model's loss and the options it changed from its class's
    defaults (``config.json``'s ``model_defaults``); shown when some model trains with a
    loss or changed an option. Runs stored without the defaults show none."""
    defaults = run.config.get("model_defaults") or {}
    rows = []
    changed_any = has_loss = False
    for label in run.model_order:
        entry = run.config["models"].get(label, {})
        base = defaults.get(entry.get("id"))
        if base is None:
            continue
        options = entry.get("options", {})
        changed = {k: v for k, v in options.items() if k not in base or base[k] != v}
        changed_any = changed_any or bool(changed)
        loss = options.get("loss")
        loss_text = "–"
        if loss is not None:
            has_loss = True
            loss_text = str(loss) + (
                f" ({options['loss_options']})" if options.get("loss_options") else ""
            )
        shown = [f"{k}={_option_text(v)}" for k, v in changed.items() if k not in LOSS_OPTIONS]
        rows.append([label, loss_text, ", ".join(shown) or "defaults"])
    if not (changed_any or has_loss):
        return []
    return [
        "## Models",
        "",
        "Each model's loss (for models trained with one) and the options this run changed "
        "from the model's defaults; `config.json` holds every option.",
        "",
        markdown_table(rows, ["model", "loss", "options changed from the defaults"]),
        "",
    ]


def _option_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def timing_section(run: RunView, rate_unit: str, note: str) -> list[str]:
    """Fit and evaluation times and throughput per model (and protocol, for tasks with
    several), means over seeds."""
    by_protocol = len(run.task.protocols) > 1
    rows = []
    for label in run.model_order:
        for protocol in run.protocols:
            group = run.grouped.get((protocol, label), [])
            if not group:
                continue
            fit = np.mean([g["timing"]["fit_seconds"] for g in group])
            ev = np.mean([g["timing"]["eval_seconds"] for g in group])
            rate = np.mean([g["timing"]["queries_per_second"] for g in group])
            rows.append(
                [
                    label,
                    *([protocol] if by_protocol else []),
                    f"{fit:.2f}",
                    f"{ev:.2f}",
                    f"{rate:,.0f}",
                ]
            )
    headers = [
        "model",
        *(["protocol"] if by_protocol else []),
        "fit s",
        "evaluation s",
        f"{rate_unit}/s",
    ]
    return ["## Timing", "", markdown_table(rows, headers), "", note, ""]


def failures_section(run: RunView) -> list[str]:
    """Every cell that did not finish, and why."""
    if not run.failed:
        return []
    by_protocol = len(run.task.protocols) > 1
    rows = [
        [c["model_label"], *([c["protocol"]] if by_protocol else []), c["seed"], c.get("error", "")]
        for c in run.failed
    ]
    headers = ["model", *(["protocol"] if by_protocol else []), "seed", "reason"]
    return ["## Failures", "", markdown_table(rows, headers), ""]
