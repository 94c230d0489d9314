"""The rating task's report sections (:mod:`recbench.tasks.rating.task`).

A one-sentence summary (the best model against the best baseline, with the paired test);
the protocol (split, scale, clipping, histories, metrics, uncertainty, significance); one
table of every model's errors on the [0, 1] scale and in stars (mean ± 95% half-width,
the best of each column in bold, paired significance marks against the best baseline †
and the best model ‡ on the per-event errors, Holm-corrected across the table,
:mod:`recbench.report.marks`). :meth:`RatingSections.console_table` is the console table
that ``recbench run`` prints after a rating run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from recbench.data.ratings import RatingScale
from recbench.report.intervals import (
    MIN_SEEDS_FOR_T,
    ZERO_NOTE,
    few_seeds_note,
    format_half_width,
    format_mean,
)
from recbench.report.markdown import markdown_table
from recbench.report.marks import (
    ALPHA,
    VS_BASELINE_MARK,
    VS_BEST_MARK,
    detectable_line,
    p_text,
    table_tests,
)
from recbench.report.metric_display import MetricDisplay
from recbench.report.sections import RunView, partial_seeds
from recbench.stats.power import POWER
from recbench.tasks.rating.evaluation import OPTION_SECTION, STARS_SUFFIX


class RatingSections:
    """The sections of a rating run's report (see the module docstring)."""

    title_suffix = " (rating prediction)"
    rate_unit = "ratings"
    timing_note = (
        "Times are means over seeds. Rating models have no one-step cell: no latency is measured."
    )

    def __init__(self, run: RunView):
        self.run = run
        self.meta: Mapping[str, Any] = run.config.get("metrics", {})
        metric_ids = run.config.get("metric_order") or sorted(
            self.meta, key=lambda name: (run.display.rank(name.removesuffix(STARS_SUFFIX))[0], name)
        )
        names = [*metric_ids] + [
            m + STARS_SUFFIX for m in metric_ids if self.meta.get(m, {}).get("rating_units", True)
        ]
        self.names = [n for n in names if any(n in c["metrics"] for c in run.ok)]
        self.protocol_name = run.task.protocols[0]
        self.aggregated = run.aggregate(self.names)
        # The stars columns are the scaled ones times a constant: they share their tests.
        tested = [
            n
            for n in self.names
            if not n.endswith(STARS_SUFFIX)
            and any(c["metrics"][n].get("per_query") for c in run.ok if n in c["metrics"])
        ]
        self.tests = table_tests(
            run.run_dir,
            run.grouped,
            self.protocol_name,
            tested,
            run.model_order,
            self.aggregated,
            self.higher_is_better,
            run.baselines,
        )

    def higher_is_better(self, name: str) -> bool:
        return bool(
            self.meta.get(name.removesuffix(STARS_SUFFIX), {}).get("higher_is_better", False)
        )

    def value(self, model: str, name: str) -> tuple[float, float | None] | None:
        """``(mean, half-width)`` of ``model`` on metric ``name``, over seeds."""
        return self.aggregated.get((self.protocol_name, model, name))

    # -- sections ----------------------------------------------------------------------

    def summary(self) -> str:
        run, names = self.run, self.names
        if not self.aggregated or not names:
            return "No model finished: see Failures below."
        name = next(iter(run.display.headlines(present=names)), names[0])
        stars = name + STARS_SUFFIX
        scored = sorted(
            (
                (value[0], model)
                for model in run.model_order
                if (value := self.value(model, name)) is not None
            ),
            key=lambda item: item[0],
            reverse=self.higher_is_better(name),
        )
        best_mean, best = scored[0]

        def text(model: str, mean: float) -> str:
            shown = f"{name} {mean:.4f}"
            in_stars = self.value(model, stars)
            if in_stars is not None:
                shown += f" ({in_stars[0]:.3f} stars)"
            return shown

        sentence = f"{best} predicts ratings best: {text(best, best_mean)}"
        reference = next((s for s in scored if s[1] in run.baselines and s[1] != best), None)
        if reference is None and len(scored) > 1:
            reference = scored[1]
        if reference is not None:
            other_mean, other = reference
            p = self.tests.adjusted.get((other, name), (math.nan, math.nan))[1]
            role = " (the best baseline)" if other in run.baselines else ""
            sentence += f", against {text(other, other_mean)} for {other}{role}; " + (
                "the difference was not tested"
                if math.isnan(p)
                else f"{other} is significantly worse ({p_text(p)})"
                if p < ALPHA
                else f"the two are not significantly different ({p_text(p)})"
            )
        n_seeds = len(run.finished_seeds)
        seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
        return (
            sentence + f". Results over {seeds}; the p-value is a Holm-adjusted paired Wilcoxon "
            "test on the per-event errors (details and policies below)."
        )

    def protocol(self) -> list[str]:
        run = self.run
        options = run.config.get(OPTION_SECTION, {})
        test, valid = float(options.get("test", 0.2)), float(options.get("valid", 0.1))
        lines = ["## Protocol", ""]
        lines += [
            f"- Split: a seeded random split of the rating events: {test:.0%} test; "
            f"{valid:.0%} of the rest for validation (early stopping and model selection "
            "only); training the rest. Seeds "
            + ", ".join(map(str, run.seeds))
            + " (each seed re-splits and re-trains).",
        ]
        lines += partial_seeds(run)
        if run.ok:
            split, scale = run.ok[0]["split"], run.ok[0]["scale"]
            scale_text = RatingScale(scale["method"], scale["low"], scale["high"]).describe()
            lines += [
                f"- Ratings: {split['train_events']:,} training, {split['valid_events']:,} "
                f"validation, {split['test_events']:,} test (seed {run.ok[0]['seed']}).",
                f"- Scale: {scale_text}; an error in stars is the scaled error × "
                f"{scale['stars_per_unit']:g}.",
            ]
        roots = [m for m, entry in self.meta.items() if entry.get("aggregation") == "root_mean"]
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
            "several — shown to 2 significant digits, the mean to the same decimal place.",
            f"- Significance: {VS_BASELINE_MARK} differs from the best baseline of the column "
            f"({', '.join(sorted(run.baselines)) or 'none in this run'}), {VS_BEST_MARK} from "
            "the best model of the column; two-sided Wilcoxon signed-rank test on the per-event "
            "errors, paired over the same test events (seeds pooled), Holm-corrected across "
            f"the table, adjusted p < {ALPHA}; a column in stars has the marks of its scaled "
            "column (the same test)."
            + (
                " Under the table, the minimum detectable difference of the headline metric: "
                f"the smallest true mean difference between the two best models that a paired "
                f"test detects with power {POWER:g} at two-sided α = {ALPHA}/m, m the table's "
                "number of tests (Holm's strictest step), from the standard deviation s of "
                "their paired per-event values' differences over n events: "
                "(z(1 − α/2) + z(power)) · s / √n, the normal approximation of a paired test."
            )
            + (
                f" {', '.join(roots)} (the square root of a mean) is tested on the per-event "
                "values under the root, the squared errors: the root keeps the models' order, "
                "so the test compares their mean squared errors (the roots of the per-event "
                "values, the absolute errors, would compare mae instead)."
                if roots
                else ""
            ),
            "",
        ]
        return lines

    def results(self, figures: Mapping[str, str]) -> list[str]:
        run, names = self.run, self.names
        lines = [f"## Results: {self.protocol_name}", ""]
        if run.ok:
            lines += [
                f"{run.ok[0]['n_queries']:,} test ratings from {run.ok[0]['n_users']:,} users.",
                "",
            ]
        best: dict[str, float] = {}
        for name in names:
            values = [v[0] for m in run.model_order if (v := self.value(m, name)) is not None]
            values = [v for v in values if not math.isnan(v)]
            if len(values) > 1:
                best[name] = max(values) if self.higher_is_better(name) else min(values)
        rows = []
        zero, few_seeds = False, set()
        for model in run.model_order:
            if not any(self.value(model, n) is not None for n in names):
                continue
            row = [model]
            for name in names:
                value = self.value(model, name)
                if value is None:
                    row.append("–")
                    continue
                mean, ci = value
                text = format_mean(mean, ci)
                if name in best and mean == best[name]:
                    text = f"**{text}**"
                if ci is not None and not math.isnan(ci):
                    text += " " + format_half_width(ci)
                    zero = zero or ci == 0
                    n_seeds = run.seeds_of(self.protocol_name, model, name)
                    if 1 < n_seeds < MIN_SEEDS_FOR_T:
                        few_seeds.add(n_seeds)
                text += self.tests.marks(model, name.removesuffix(STARS_SUFFIX))
                row.append(text)
            rows.append(row)
        headers = ["model"] + [
            (n.removesuffix(STARS_SUFFIX) + " (stars)" if n.endswith(STARS_SUFFIX) else n)
            + (" ↑" if self.higher_is_better(n) else " ↓")
            for n in names
        ]
        notes = [few_seeds_note(n) for n in sorted(few_seeds)] + ([ZERO_NOTE] if zero else [])
        headline = next(iter(run.display.headlines(present=names)), names[0] if names else None)
        detectable = []
        if headline is not None:
            roots = self.meta.get(headline, {}).get("aggregation") == "root_mean"
            detectable = detectable_line(
                self.tests,
                headline,
                "test ratings",
                " (on the squared errors it is tested on: a difference of mean squared errors)"
                if roots
                else "",
            )
        return [
            *lines,
            markdown_table(rows, headers),
            "",
            *([*notes, ""] if notes else []),
            *detectable,
        ]

    def after_results(self) -> list[str]:
        return []

    @staticmethod
    def console_table(frame: Any, model_labels: Sequence[str], display: MetricDisplay) -> Any:
        """A console table of a rating run's results (``frame``: the ok rows of
        :meth:`recbench.api.RunResult.to_dataframe`): each model's metrics, means over
        seeds."""
        from rich.markup import escape as escape_markup
        from rich.table import Table

        names = sorted(
            dict.fromkeys(frame["metric"]),
            key=lambda name: (display.rank(name.removesuffix(STARS_SUFFIX))[0], name),
        )
        names = [n for n in names if not n.endswith(STARS_SUFFIX)] + [
            n for n in names if n.endswith(STARS_SUFFIX)
        ]
        means = frame.groupby(["model", "metric"], sort=False)["mean"].mean()
        order = {label: i for i, label in enumerate(model_labels)}
        table = Table(title=f"{frame['dataset'].iloc[0]} — rating prediction, mean over seeds")
        for column in ("model", *names):
            table.add_column(column)
        for model in sorted(
            dict.fromkeys(frame["model"]), key=lambda m: (order.get(m, len(order)), m)
        ):
            values = (f"{means.get((model, n), float('nan')):.4f}" for n in names)
            table.add_row(escape_markup(model), *values)  # labels of sweeps hold brackets
        return table
