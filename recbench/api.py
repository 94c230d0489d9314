"""The Python API. The command line is a thin layer over these functions.

Example::

    import recbench

    result = recbench.run(models=["pop"], dataset="ml-100k", out="runs/pop")
    frame = result.to_dataframe()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recbench.config import DEFAULT_CUTOFFS, DEFAULT_PROTOCOLS, RunConfig
from recbench.progress import Progress
from recbench.registry import Registry, discover
from recbench.results import RunDirectory, read_json, write_atomic
from recbench.settings import Settings


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
        from recbench.report import render

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
    out: str | Path | None = None,
    resume: bool = False,
    report: bool = True,
    quiet: bool = True,
    settings: Settings | None = None,
    registry: Registry | None = None,
    command: list[str] | None = None,
) -> RunResult:
    """Train and evaluate ``models`` on ``dataset`` and write a run directory.

    Parameters
    ----------
    models, dataset, protocols, seeds, metrics, cutoffs:
        What to run (ids as in ``recbench list``); an empty ``metrics`` means all.
    options:
        ``{section: {key: value}}`` option values (see :mod:`recbench.config`).
    overrides:
        ``"SECTION.KEY=VALUE"`` strings applied on top of ``options``.
    out:
        The run directory (default ``runs/<date>-<dataset>``). ``resume`` continues an
        existing one, skipping finished cells.
    settings:
        Data and cache locations; default read from the environment.
    """
    from recbench.runner import execute

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
    ).with_overrides(overrides)
    path = Path(out) if out is not None else default_run_path(dataset)
    run_dir = execute(
        config,
        out=path,
        resume=resume,
        registry=registry,
        settings=settings,
        progress=Progress(quiet=quiet),
        command=command,
    )
    if report:
        write_report(run_dir)
    return RunResult(run_dir.path)


def write_report(run_dir: RunDirectory) -> None:
    """Write ``report.md`` (and the accuracy-vs-latency plot it shows, when matplotlib
    is installed) into ``run_dir``."""
    from recbench.latency_report import write_accuracy_latency_plot
    from recbench.report import render

    write_accuracy_latency_plot(run_dir)
    write_atomic(run_dir.path / "report.md", render(run_dir).encode())


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
    model objects -- then exported to ONNX and timed (:mod:`recbench.latency`); nothing
    is evaluated again and the run's configuration and results are kept. Without
    ``force`` only models without a latency record are done; models named in
    ``models`` are always redone. ``overrides`` set ``export.*`` options, e.g.
    ``"export.repeats=2000"``. The report is rewritten.
    """
    from recbench.runner import execute

    run_dir = RunDirectory.open(Path(path))
    stored = read_json(run_dir.path / "config.json")
    config = stored_run_config(stored["config"]).with_overrides(overrides)
    known = set(config.models)
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
    for label, model in resolved["models"].items():
        options[label] = dict(model.get("options", {}))
    dataset = resolved["dataset"]
    if dataset.get("options"):
        options[dataset["name"].partition(":")[0]] = dict(dataset["options"])
    for metric_id, metric in resolved.get("metrics", {}).items():
        if metric.get("options"):
            options[metric_id] = dict(metric["options"])
    for section in ("preprocess", "split", "eval", "export"):
        if resolved.get(section):
            options[section] = dict(resolved[section])
    return RunConfig(
        models=tuple(resolved["models"]),
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
