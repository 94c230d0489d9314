"""The report's figures, drawn from a run directory's result files with matplotlib.

Optional: ``pip install recbench[plot]``. Without matplotlib (or without the results a
figure needs) no file is written and the report simply shows no image. Figures:

``metric_curves``
    Every metric at every cutoff (x: k), one panel per (protocol, metric), a line per model:
    ``metric-curves.png``.
``accuracy_latency``
    The accuracy of each model against its batch-1 latency (log scale):
    ``accuracy-latency.png``.

:func:`write_figures` writes them into a folder and returns their paths; the caller gives
the report links relative to where it writes the report, so a report written elsewhere
(``recbench report RUN -o reports/x.md``) keeps working images.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.files import write_bytes_atomic
from recbench.report.metric_display import MetricDisplay
from recbench.results import RunDirectory, read_json
from recbench.tasks.ranking.order_check import is_ablation

FILES = {"metric_curves": "metric-curves.png", "accuracy_latency": "accuracy-latency.png"}
#: The metrics drawn in the metric-curve figure, when the run has them.
#: How many of the run's headline metrics the metric@k curves show.
CURVE_METRICS = 4


def write_figures(run_dir: RunDirectory, folder: Path) -> dict[str, Path]:
    """Draw every figure the run's results allow into ``folder``; ``{figure id: path}``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return {}
    config = read_json(run_dir.path / "config.json")["config"]
    cells = [c for c in run_dir.cells() if c.get("status") == "ok" and not is_ablation(c)]
    models = config.get("model_order") or list(config["models"])
    protocols = [p for p in config["protocols"] if any(c["protocol"] == p for c in cells)]
    curve_metrics = MetricDisplay.of(config).headlines()[:CURVE_METRICS]
    written = {}
    for figure_id, draw in (
        ("metric_curves", lambda: _metric_curves(cells, models, protocols, curve_metrics)),
        ("accuracy_latency", lambda: _accuracy_latency(run_dir, config, models, protocols, cells)),
    ):
        figure = draw()
        if figure is None:
            continue
        target = folder / FILES[figure_id]
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
        try:
            write_bytes_atomic(target, buffer.getvalue())
        except OSError:
            continue
        written[figure_id] = target
    return written


def links(paths: Mapping[str, Path], report: Path) -> dict[str, str]:
    """Figure paths as links relative to the report file ``report``."""
    base = Path(report).resolve().parent
    return {
        key: Path(os.path.relpath(Path(path).resolve(), base)).as_posix()
        for key, path in paths.items()
    }


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _metric_curves(
    cells: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    protocols: Sequence[str],
    curve_metrics: Sequence[str],
) -> Any:
    # (protocol, metric id, model) -> cutoff -> means over seeds
    values: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for cell in cells:
        for name, summary in cell["metrics"].items():
            metric_id, _, k = name.partition("@")
            if metric_id in curve_metrics and k.isdigit():
                key = (cell["protocol"], metric_id, cell["model_label"])
                values[key][int(k)].append(summary["mean"])
    metrics = [m for m in curve_metrics if any(key[1] == m for key in values)]
    if not metrics or not protocols:
        return None
    figure = _new_figure(3.2 * len(metrics), 2.8 * len(protocols))
    axes = figure.subplots(len(protocols), len(metrics), squeeze=False)
    for row, protocol in enumerate(protocols):
        for column, metric_id in enumerate(metrics):
            ax = axes[row][column]
            for index, model in enumerate(models):
                series = values.get((protocol, metric_id, model))
                if not series:
                    continue
                ks = sorted(series)
                ax.plot(ks, [np.mean(series[k]) for k in ks], label=model, **_line_style(index))
            ax.set_title(f"{metric_id} — {protocol}", fontsize=9)
            ax.set_xlabel("k", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def _line_style(index: int) -> dict[str, str]:
    """Ten colours, then the same colours dashed with another marker, and so on: no two
    of the first thirty models look alike."""
    round_ = index // 10
    return {
        "color": f"C{index % 10}",
        "linestyle": ("-", "--", ":")[round_ % 3],
        "marker": ("o", "s", "^")[round_ % 3],
    }


def _accuracy_latency(
    run_dir: RunDirectory,
    config: Mapping[str, Any],
    models: Sequence[str],
    protocols: Sequence[str],
    cells: Sequence[Mapping[str, Any]],
) -> Any:
    from recbench.report.latency import accuracy_latency_points

    points = accuracy_latency_points(run_dir, config, models, protocols, cells)
    if not points:
        return None
    figure = _new_figure(6.4, 4.4)
    axes = figure.add_subplot()
    for key, marker, name in (
        ("score_p50", "o", "score() + top-k (batch 1)"),
        ("step_p50", "^", "fastest step (batch 1)"),
    ):
        xs = [p[key] for p in points if p[key] is not None]
        ys = [p["accuracy"] for p in points if p[key] is not None]
        if xs:
            axes.scatter(xs, ys, marker=marker, label=name)
        for p in points:
            if p[key] is not None:
                axes.annotate(
                    p["model"],
                    (p[key], p["accuracy"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency, ms (log scale)")
    axes.set_ylabel(f"{points[0]['metric']} ({points[0]['protocol']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure
