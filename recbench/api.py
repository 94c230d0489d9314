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
from recbench.results import RunDirectory, write_atomic
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
    from recbench.report import render
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
        write_atomic(run_dir.path / "report.md", render(run_dir).encode())
    return RunResult(run_dir.path)


def load_results(path: str | Path) -> RunResult:
    """The results of an existing run directory."""
    return RunResult(RunDirectory.open(Path(path)).path)
