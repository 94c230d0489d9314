"""The Python API. The command line is a thin layer over these functions.

Example::

    import recbench

    result = recbench.run(models=["pop"], dataset="ml-100k", out="runs/pop")
    frame = result.to_dataframe()
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recbench.config.run_config import DEFAULT_CUTOFFS, DEFAULT_PROTOCOLS, RunConfig
from recbench.config.settings import Settings
from recbench.data.files import write_bytes_atomic
from recbench.progress import Progress
from recbench.registry import Registry, discover
from recbench.report.compare import DEFAULT_FACTOR, Comparison, compare_runs
from recbench.results import RunDirectory, read_json, split_key

#: Where a run goes when no ``out`` is given: one line, at WARNING so that Python shows it
#: without any logging set up (the command line passes ``out`` itself and says so).
logger = logging.getLogger(__name__)


def load_registry(settings: Settings) -> Registry:
    """Discover plugins with the allow/deny lists of ``settings``."""
    return discover(allow=settings.loaded_plugins, deny=settings.disabled_plugins)


@dataclass
class RunResult:
    """The results of a run directory."""

    path: Path

    @property
    def cells(self) -> list[dict[str, Any]]:
        return list(RunDirectory.open(self.path).cells())

    def model_labels(self) -> list[str]:
        """The run's model labels in the order of ``--models`` (sweep variants expanded)."""
        config = read_json(self.path / "config.json")["config"]
        return list(config.get("model_order") or config["models"])

    def paired_test(
        self, model_a: str, model_b: str, protocol: str, metric: str
    ) -> dict[str, float]:
        """Two models of this run on the same queries: their means over seeds and the
        two-sided p-value of the paired Wilcoxon signed-rank test on the per-query values
        of ``metric`` (``id@k``), seeds (and the folds of a k-fold run) pooled and, when
        the cells record each query's test user, a user's queries averaged (the test runs
        over users; :mod:`recbench.stats.significance`); not corrected for multiple
        comparisons."""
        from recbench.errors import ConfigError
        from recbench.stats.significance import pooled_paired_test

        run_dir = RunDirectory.open(self.path)
        values: dict[str, dict[Hashable, Any]] = {model_a: {}, model_b: {}}
        read = []
        for cell in run_dir.cells():
            if cell.get("status") != "ok" or cell.get("ablation") or cell["protocol"] != protocol:
                continue
            if cell["model_label"] in values and metric in cell["metrics"]:
                per_query = run_dir.per_query(cell)
                if metric in per_query:
                    values[cell["model_label"]][split_key(cell)] = per_query[metric]
                    read.append((cell, per_query))
        for model, per_seed in values.items():
            if not per_seed:
                raise ConfigError(
                    f"no per-query values of {metric} for {model} under {protocol}",
                    where=str(self.path),
                    hint="name a model, protocol and per-query metric of this run",
                )
        return {
            "mean_a": _mean_over_seeds(values[model_a]),
            "mean_b": _mean_over_seeds(values[model_b]),
            "p_value": pooled_paired_test(
                values[model_a],
                values[model_b],
                same_queries=run_dir.same_queries(),
                users=run_dir.query_users(read),
            ),
        }

    def to_dataframe(self) -> Any:
        """One row per (dataset, model, protocol, seed, metric): a pandas DataFrame with
        columns dataset, model, protocol, seed, metric, cutoff, mean, ci95, status."""
        import pandas as pd

        rows = []
        for cell in self.cells:
            common = {
                "dataset": cell["dataset"],
                "model": cell["model_label"],
                "protocol": cell["protocol"],
                "seed": cell["seed"],
                "status": cell["status"],
            }
            if cell["status"] != "ok":
                rows.append({**common, "metric": None, "cutoff": None, "mean": None, "ci95": None})
                continue
            for name, value in cell["metrics"].items():
                metric, _, k = name.partition("@")
                rows.append(
                    {
                        **common,
                        "metric": metric,
                        "cutoff": int(k) if k else None,
                        "mean": value["mean"],
                        "ci95": value["ci95"],
                    }
                )
        columns = [
            "dataset",
            "model",
            "protocol",
            "seed",
            "metric",
            "cutoff",
            "mean",
            "ci95",
            "status",
        ]
        return pd.DataFrame(rows, columns=columns)

    def report(self) -> str:
        from recbench.report.render import render

        return render(RunDirectory.open(self.path))


def default_run_path(dataset: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset.split("/")[-1])
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{safe}"


def run(
    models: Sequence[str],
    dataset: str,
    *,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    seeds: Sequence[int] = (0,),
    metrics: Sequence[str] = (),
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    overrides: Iterable[str] = (),
    device: str = "auto",
    order_check: str = "auto",
    out: str | Path | None = None,
    resume: bool = False,
    report: bool = True,
    quiet: bool = True,
    settings: Settings | None = None,
    registry: Registry | None = None,
    command: list[str] | None = None,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> RunResult:
    """Train and evaluate ``models`` on ``dataset`` and write a run directory.

    Parameters
    ----------
    models, dataset, protocols, seeds, metrics, cutoffs:
        What to run (ids as in ``recbench list``); an empty ``metrics`` means all.
    options:
        ``{section: {key: value}}`` option values (see :mod:`recbench.config.run_config`).
    overrides:
        ``"SECTION.KEY=VALUE"`` strings applied on top of ``options``.
    order_check:
        The model trained again on order-shuffled sequences for the report's order check
        (:mod:`recbench.tasks.ranking.order_check`): ``auto`` (the first sequence model), a label, ``off``.
    out:
        The run directory (default ``runs/<date>-<dataset>`` under the current directory,
        announced in one line on the ``recbench`` logger). ``resume`` continues an
        existing one, skipping finished cells.
    settings:
        Data and cache locations; default read from the environment.
    jobs, executor, ray_address:
        Where the fits of a model on a seed run (docs/scale.md): ``jobs`` worker
        processes of this machine (1: in this process, one after another), or with
        ``executor="ray"`` as Ray tasks on the cluster at ``ray_address`` (``None``: a
        local Ray started for the run). The results are the same either way.
    tuning:
        How the options were tuned (the ``[tuning]`` table of a ``tuned.toml`` written by
        :func:`tune`), kept as ``tuning.json`` in the run directory for its report.
    """
    from recbench.runner.execute import execute
    from recbench.runner.executor_options import ExecutorOptions

    settings = settings or Settings.from_environ()
    registry = registry or load_registry(settings)
    config = RunConfig(
        models=tuple(models),
        dataset=dataset,
        protocols=tuple(protocols),
        seeds=tuple(int(s) for s in seeds),
        metrics=tuple(metrics),
        cutoffs=tuple(int(k) for k in cutoffs),
        options={k: dict(v) for k, v in (options or {}).items()},
        device=device,
        order_check=order_check,
    ).with_overrides(overrides)
    if out is None:
        path = default_run_path(dataset)
        logger.warning("recbench.run: no out given; writing the run directory to %s", path)
    else:
        path = Path(out)
    run_dir = execute(
        config,
        out=path,
        resume=resume,
        registry=registry,
        settings=settings,
        progress=Progress(quiet=quiet),
        command=command,
        executor=ExecutorOptions(kind=executor, jobs=jobs, ray_address=ray_address),
    )
    if tuning:
        import json

        write_bytes_atomic(
            run_dir.path / "tuning.json", json.dumps(dict(tuning), indent=2).encode()
        )
    if report:
        write_report(run_dir)
    return RunResult(run_dir.path)


def write_report(run_dir: RunDirectory, target: Path | None = None) -> Path:
    """Write the markdown report of ``run_dir`` to ``target`` (default
    ``RUN_DIR/report.md``) with the figures it shows, when matplotlib is installed:
    into ``RUN_DIR/figures/`` for the default target, else into ``<target stem>-figures/``
    beside the report. Returns the report's path."""
    from recbench.report.figures import links, write_figures
    from recbench.report.render import render

    target = Path(target) if target is not None else run_dir.path / "report.md"
    if target.resolve().parent == run_dir.path.resolve():
        folder = run_dir.path / "figures"
    else:
        folder = target.parent / f"{target.stem}-figures"
    figures = write_figures(run_dir, folder)
    report = render(run_dir, links(figures, target), folder=target.resolve().parent)
    write_bytes_atomic(target, report.encode())
    return target


def export(
    path: str | Path,
    *,
    models: Sequence[str] = (),
    force: bool = False,
    overrides: Iterable[str] = (),
    quiet: bool = True,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> RunResult:
    """Export and time the trained models of an existing run directory.

    The models (``models``: labels of the run; empty: every model of the run) are
    trained again with the run's stored configuration and seeds -- the run keeps no
    model objects -- then exported to ONNX and timed (:mod:`recbench.serve.latency`); nothing
    is evaluated again and the run's configuration and results are kept. Without
    ``force`` only models without a latency record are done; models named in
    ``models`` are always redone. ``overrides`` set ``export.*`` options, e.g.
    ``"export.repeats=2000"``. The report is rewritten.
    """
    from recbench.runner.execute import execute

    run_dir = RunDirectory.open(Path(path))
    stored = read_json(run_dir.path / "config.json")
    config = stored_run_config(stored["config"]).with_overrides(overrides)
    known = set(stored["config"]["models"])
    unknown = [m for m in models if m not in known]
    if unknown:
        from recbench.errors import ConfigError, close_matches

        raise ConfigError(
            f"model '{unknown[0]}' is not part of this run",
            where="--models",
            hint=close_matches(unknown[0], known),
        )
    settings = settings or Settings.from_environ()
    registry = registry or load_registry(settings)
    run_dir = execute(
        config,
        out=run_dir.path,
        resume=True,
        registry=registry,
        settings=settings,
        progress=Progress(quiet=quiet),
        export_only=tuple(models),
        force_export=force or bool(models),
    )
    write_report(run_dir)
    return RunResult(run_dir.path)


def stored_run_config(resolved: Mapping[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of a run from its stored, fully resolved configuration
    (``config.json``'s ``config``)."""
    options: dict[str, dict[str, Any]] = {}
    swept: dict[str, dict[str, list[str]]] = {}
    for label, model in resolved["models"].items():
        options.setdefault(model.get("id", label), dict(model.get("options", {})))
        for key, value in model.get("swept", {}).items():
            values = swept.setdefault(model["id"], {}).setdefault(key, [])
            if str(value) not in values:
                values.append(str(value))
    for model_id, keys in swept.items():  # the sweep that made the variants
        options[model_id].update({key: "|".join(values) for key, values in keys.items()})
    dataset = resolved["dataset"]
    if dataset.get("options"):
        options[dataset["name"].partition(":")[0]] = dict(dataset["options"])
    for metric_id, metric in resolved.get("metrics", {}).items():
        if metric.get("options"):
            options[metric_id] = dict(metric["options"])
    from recbench.tasks.catalog import stored_task

    for section in ("preprocess", *stored_task(resolved).sections, "export"):
        if resolved.get(section):
            options[section] = dict(resolved[section])
    return RunConfig(
        models=tuple(dict.fromkeys(m.get("id", label) for label, m in resolved["models"].items())),
        dataset=dataset["name"],
        protocols=tuple(resolved["protocols"]),
        seeds=tuple(resolved["seeds"]),
        metrics=tuple(resolved.get("metrics", {})),
        cutoffs=tuple(resolved["cutoffs"]),
        options=options,
        device=resolved.get("device", "auto"),
    )


def load_results(path: str | Path) -> RunResult:
    """The results of an existing run directory."""
    return RunResult(RunDirectory.open(Path(path)).path)


def compare(
    run_a: str | Path,
    run_b: str | Path,
    *,
    factor: float = DEFAULT_FACTOR,
    metrics: Sequence[str] = (),
    protocols: Sequence[str] = (),
) -> Comparison:
    """Compare run directory ``run_b`` with ``run_a``, metric by metric.

    Every (model, protocol, metric) of both runs gets the ratio ``B / A`` of its means
    over seeds and a mark (``+`` worse by more than ``factor``, ``-`` better, ``~``
    within, ``x`` failed in B, ``!`` not compared); ``metrics`` (names or ids) and
    ``protocols`` narrow it. ``Comparison.regressed`` says whether anything regressed;
    ``Comparison.to_markdown()`` renders the table. See :mod:`recbench.report.compare`.
    """
    return compare_runs(run_a, run_b, factor=factor, metrics=metrics, protocols=protocols)


def _mean_over_seeds(per_split: Mapping[Hashable, Any]) -> float:
    """The mean over seeds of per-query values keyed by seed, or by (seed, fold) in a
    k-fold run, whose folds are pooled into their seed's mean over queries."""
    import numpy as np

    per_seed: dict[Any, list[Any]] = {}
    for split, values in per_split.items():
        per_seed.setdefault(split[0] if isinstance(split, tuple) else split, []).append(values)
    means = [np.concatenate(parts).mean() for parts in per_seed.values()]
    return float(sum(means) / len(means))


def tune(
    models: Sequence[str],
    dataset: str,
    *,
    out: str | Path,
    trials: int | None = None,
    budget: str | float | None = None,
    metric: str = "mrr@20",
    protocol: str = "iterative",
    jobs: int = 1,
    seed: int = 0,
    validation_users: float | None = None,
    storage: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    overrides: Iterable[str] = (),
    defaults_only: Sequence[str] = (),
    pruning: bool = True,
    device: str = "auto",
    quiet: bool = True,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> Path:
    """Tune ``models`` on ``dataset`` with the same budget each, on validation users only.

    One Optuna study per model (seeded TPE sampler, median pruning on the per-epoch
    validation values) is kept in ``out`` (or ``storage``, an RDB URL) and continued when
    the tune is run again; ``jobs`` worker processes share it. The budget is ``trials``
    finished trials per model or ``budget`` trial time per model (``"30m"``, or seconds).
    Validation users (``validation_users``: a fraction of the non-test users or a count)
    are scored under ``protocol`` for ``metric``. ``options`` / ``overrides`` fix options
    (``-o``: model options that tuning keeps, the split, preprocessing). Models without
    a search space are refused unless listed in ``defaults_only`` (one trial with their
    defaults). Writes ``out/tuned.toml`` (``recbench run --config``) and
    ``out/report.md``; returns ``out``. See :mod:`recbench.tuning`.
    """
    from recbench.config.run_config import RunConfig as _Config
    from recbench.tuning.budget import Budget, parse_budget
    from recbench.tuning.objective import DEFAULT_VALIDATION_USERS
    from recbench.tuning.plan import TuneRequest
    from recbench.tuning.tuner import tune as run_tune

    settings = settings or Settings.from_environ()
    registry = registry or load_registry(settings)
    if trials is None and budget is None:
        trials = 20
    seconds = None
    if budget is not None:
        seconds = float(budget) if isinstance(budget, (int, float)) else parse_budget(budget)
    fixed = _Config(
        models=tuple(models), dataset=dataset, options=dict(options or {})
    ).with_overrides(overrides)
    request = TuneRequest(
        models=tuple(models),
        dataset=dataset,
        budget=Budget(trials=trials, seconds=seconds),
        out=Path(out),
        metric=metric,
        protocol=protocol,
        jobs=jobs,
        seed=seed,
        validation_users=DEFAULT_VALIDATION_USERS if validation_users is None else validation_users,
        storage=storage,
        options={k: dict(v) for k, v in fixed.options.items()},
        defaults_only=tuple(defaults_only),
        pruning=pruning,
        device=device,
    )
    return run_tune(request, registry=registry, settings=settings, progress=Progress(quiet=quiet))
