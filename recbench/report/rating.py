"""The report of a rating run (:mod:`recbench.tasks.rating.rating`), rendered from its result files.

:func:`render_rating_report` is what :func:`recbench.report.render.render` gives for a rating run:
a title and a one-sentence summary; the environment and the dataset (as in the ranking
report); the protocol (split, scale, clipping, histories, metrics, uncertainty); one table
of every model's errors on the [0, 1] scale and in stars (mean ± 95% half-width, the best
of each column in bold); timing; failures. :func:`summary_table` is the console table
that ``recbench run`` prints after a rating run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recbench.data.protocols import RATING_PROTOCOL
from recbench.data.ratings import RatingScale
from recbench.report.render import dataset_section, environment_section, escape, markdown_table
from recbench.results import RunDirectory, read_json
from recbench.stats.summary import over_seeds
from recbench.tasks.rating.rating import OPTION_SECTION, STARS_SUFFIX


def is_rating_run(config: Mapping[str, Any]) -> bool:
    """Whether a stored run configuration (``config.json``'s ``config``) is a rating run."""
    return RATING_PROTOCOL in config.get("protocols", ())


def render_rating_report(run_dir: RunDirectory) -> str:
    """The markdown report of a rating run: environment, dataset, protocol, a table of
    every model's errors on the [0, 1] scale and in stars (mean ± 95% half-width, the best
    of each column in bold), timing and failures."""
    config_file = read_json(run_dir.path / "config.json")
    config = config_file["config"]
    environment = read_json(run_dir.path / "environment.json")
    dataset_path = run_dir.path / "dataset.json"
    dataset = read_json(dataset_path) if dataset_path.is_file() else None
    cells = [c for c in run_dir.cells() if c.get("protocol") == RATING_PROTOCOL]
    ok = [c for c in cells if c.get("status") == "ok"]
    failed = [c for c in cells if c.get("status") != "ok"]
    models = config.get("model_order") or list(config["models"])
    meta = config.get("metrics", {})
    seeds = config.get("seeds", [])

    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for cell in ok:
        grouped.setdefault(cell["model_label"], []).append(cell)
    metric_ids = config.get("metric_order") or sorted(meta, key=_metric_rank)
    names = [*metric_ids] + [
        m + STARS_SUFFIX for m in metric_ids if meta.get(m, {}).get("rating_units", True)
    ]
    names = [n for n in names if any(n in c["metrics"] for c in ok)]
    aggregated: dict[tuple[str, str], tuple[float, float | None]] = {}
    for label, group in grouped.items():
        for name in names:
            present = [g["metrics"][name] for g in group if name in g["metrics"]]
            if present:
                aggregated[(label, name)] = over_seeds(
                    [p["mean"] for p in present], [p["ci95"] for p in present]
                )

    def higher(name: str) -> bool:
        return bool(meta.get(name.removesuffix(STARS_SUFFIX), {}).get("higher_is_better", False))

    title = dataset["name"] if dataset else config["dataset"]["name"]
    lines = [f"# recbench report: {escape(title)} (rating prediction)", ""]
    lines += [_rating_summary(models, names, aggregated, higher, config, len(seeds)), ""]

    lines += environment_section(config_file, environment)
    if dataset:
        lines += dataset_section(dataset)

    options = config.get(OPTION_SECTION, {})
    test, valid = float(options.get("test", 0.2)), float(options.get("valid", 0.1))
    lines += ["## Protocol", ""]
    lines += [
        f"- Split: a seeded random split of the rating events: {test:.0%} test; "
        f"{valid:.0%} of the rest for validation (early stopping and model selection "
        "only); training the rest. Seeds "
        + ", ".join(map(str, seeds))
        + " (each seed re-splits and re-trains).",
    ]
    if ok:
        split, scale = ok[0]["split"], ok[0]["scale"]
        scale_text = RatingScale(scale["method"], scale["low"], scale["high"]).describe()
        lines += [
            f"- Ratings: {split['train_events']:,} training, {split['valid_events']:,} "
            f"validation, {split['test_events']:,} test (seed {ok[0]['seed']}).",
            f"- Scale: {scale_text}; an error in stars is the scaled error × "
            f"{scale['stars_per_unit']:g}.",
        ]
    lines += [
        "- Predictions are "
        + ("clipped to [0, 1]" if options.get("clip", True) else "not clipped")
        + " before the metrics.",
        "- History (models that read one): the user's training events before the predicted "
        "event, in time order (timestamp, then file order); held-out ratings never enter it.",
        "- Metrics per test event: rmse from squared errors (square root of the mean), mae "
        "from absolute errors (mean); ↓ lower is better.",
        "- Uncertainty: ± is the 95% confidence half-width — over test events (normal "
        "approximation; the delta method for rmse) for one seed, over seeds (Student t) for "
        "several.",
        "",
    ]

    lines += ["## Results: rating", ""]
    if ok:
        lines += [
            f"{ok[0]['n_queries']:,} test ratings from {ok[0]['n_users']:,} users.",
            "",
        ]
    best: dict[str, float] = {}
    for name in names:
        values = [aggregated[(m, name)][0] for m in models if (m, name) in aggregated]
        values = [v for v in values if not math.isnan(v)]
        if len(values) > 1:
            best[name] = max(values) if higher(name) else min(values)
    rows = []
    for model in models:
        if not any((model, n) in aggregated for n in names):
            continue
        row = [model]
        for name in names:
            if (model, name) not in aggregated:
                row.append("–")
                continue
            mean, ci = aggregated[(model, name)]
            text = f"{mean:.4f}"
            if name in best and mean == best[name]:
                text = f"**{text}**"
            if ci is not None and not math.isnan(ci):
                text += f" ± {ci:.4f}"
            row.append(text)
        rows.append(row)
    headers = ["model"] + [
        (n.removesuffix(STARS_SUFFIX) + " (stars)" if n.endswith(STARS_SUFFIX) else n)
        + (" ↑" if higher(n) else " ↓")
        for n in names
    ]
    lines += [markdown_table(rows, headers), ""]

    lines += ["## Timing", ""]
    timing_rows = []
    for model in models:
        group = grouped.get(model, [])
        if not group:
            continue
        fit = np.mean([g["timing"]["fit_seconds"] for g in group])
        ev = np.mean([g["timing"]["eval_seconds"] for g in group])
        rate = np.mean([g["timing"]["queries_per_second"] for g in group])
        timing_rows.append([model, f"{fit:.2f}", f"{ev:.2f}", f"{rate:,.0f}"])
    lines += [
        markdown_table(timing_rows, ["model", "fit s", "evaluation s", "ratings/s"]),
        "",
        "Times are means over seeds. Rating models have no one-step cell: no latency is measured.",
        "",
    ]
    if failed:
        lines += ["## Failures", ""]
        rows = [[c["model_label"], c["seed"], c.get("error", "")] for c in failed]
        lines += [markdown_table(rows, ["model", "seed", "reason"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _metric_rank(name: str) -> tuple[int, str]:
    """rmse, then mae, then the others by name."""
    base = name.removesuffix(STARS_SUFFIX)
    return ({"rmse": 0, "mae": 1}.get(base, 2), name)


def summary_table(frame: Any, model_labels: Sequence[str]) -> Any:
    """A console table of a rating run's results (``frame``: the ok rows of
    :meth:`recbench.api.RunResult.to_dataframe`): each model's metrics, means over seeds."""
    from rich.markup import escape as escape_markup
    from rich.table import Table

    names = sorted(dict.fromkeys(frame["metric"]), key=_metric_rank)
    names = [n for n in names if not n.endswith(STARS_SUFFIX)] + [
        n for n in names if n.endswith(STARS_SUFFIX)
    ]
    means = frame.groupby(["model", "metric"], sort=False)["mean"].mean()
    order = {label: i for i, label in enumerate(model_labels)}
    table = Table(title=f"{frame['dataset'].iloc[0]} — rating prediction, mean over seeds")
    for column in ("model", *names):
        table.add_column(column)
    for model in sorted(dict.fromkeys(frame["model"]), key=lambda m: (order.get(m, len(order)), m)):
        values = (f"{means.get((model, n), float('nan')):.4f}" for n in names)
        table.add_row(escape_markup(model), *values)  # labels of sweeps hold brackets
    return table


def _rating_summary(
    models: Sequence[str],
    names: Sequence[str],
    aggregated: Mapping[tuple[str, str], tuple[float, float | None]],
    higher: Any,
    config: Mapping[str, Any],
    n_seeds: int,
) -> str:
    if not aggregated or not names:
        return "No model finished: see Failures below."
    name = "rmse" if "rmse" in names else names[0]
    scored = sorted(
        ((aggregated[(m, name)], m) for m in models if (m, name) in aggregated),
        key=lambda item: item[0][0],
        reverse=higher(name),
    )
    stars = name + STARS_SUFFIX
    (best_mean, best_ci), best = scored[0]

    def value(model: str, mean: float) -> str:
        text = f"{name} {mean:.4f}"
        if (model, stars) in aggregated:
            text += f" ({aggregated[(model, stars)][0]:.3f} stars)"
        return text

    sentence = f"{best} predicts ratings best: {value(best, best_mean)}"
    baselines = [m for m in models if config["models"].get(m, {}).get("baseline")]
    reference = next((s for s in scored if s[1] in baselines and s[1] != best), None)
    if reference is None and len(scored) > 1:
        reference = scored[1]
    if reference is not None:
        (other_mean, other_ci), other = reference
        separated = (
            best_ci is not None
            and other_ci is not None
            and abs(best_mean - other_mean) > best_ci + other_ci
        )
        sentence += f", against {value(other, other_mean)} for {other}; the 95% intervals " + (
            "do not overlap" if separated else "overlap"
        )
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return sentence + f". Results over {seeds}; details and policies below."
