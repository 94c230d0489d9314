"""The ranking task's report sections (:mod:`recbench.tasks.ranking.task`).

A one-paragraph summary (who leads on the headline metric of each protocol, against whom,
how sure); the protocol (split, seen-item exclusion and tie policies, model selection,
uncertainty, significance, the protocols in words); one results section per protocol (a
table per cutoff: mean ± 95% confidence half-width, best per column in bold, paired
significance marks against the best baseline † and the best model ‡, Holm-corrected
across the table, :mod:`recbench.report.marks`; under the first cutoff's table, the
minimum detectable difference of the headline metric); option sweeps; the order check
(:mod:`recbench.tasks.ranking.order_check`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recbench.report.intervals import (
    MIN_SEEDS_FOR_T,
    ZERO_NOTE,
    few_seeds_note,
    format_half_width,
    format_mean,
    format_value,
)
from recbench.report.markdown import escape, markdown_table
from recbench.report.marks import (
    ALPHA,
    VS_BASELINE_MARK,
    VS_BEST_MARK,
    TableTests,
    detectable_line,
    p_text,
    table_tests,
)
from recbench.report.metric_display import MetricDisplay
from recbench.report.sections import RunView, partial_seeds
from recbench.results import QUERY_USER
from recbench.stats.power import POWER
from recbench.tasks.ranking import order_check

#: How many of the run's headline metrics the console table and the order check show.
CONSOLE_METRICS = 4
ORDER_CHECK_METRICS = 3

PROTOCOL_DESCRIPTIONS = {
    "half-split": "input = the first half of each held-out user's sequence; targets = the rest "
    "(the first of them is the next item for sps)",
    "iterative": "one query per position t: input = items 1..t, target = item t+1 "
    "(recall counts the remaining items t+1..n); the mean is over queries, so long "
    "sequences weigh more",
    "last-item": "input = all but the last item; target = the last item",
}
#: What each tie policy does to a target whose score equals other items' scores.
TIE_POLICIES = {
    "pessimistic": "a target whose score equals other items' scores is ranked below all "
    "of them, so a tie never helps a model",
    "optimistic": "a target whose score equals other items' scores is ranked above all of them",
    "arbitrary": "items with equal scores keep the order torch.topk gives them",
}
#: Said after a single-target protocol's description: metrics its tables repeat.
SINGLE_TARGET_NOTE = (
    "one target per query, so hit@k equals sps@k and precision@k is sps@k / k "
    "(both kept in the tables)"
)
SINGLE_TARGET_PROTOCOLS = ("iterative", "last-item")


class RankingSections:
    """The sections of a ranking run's report (see the module docstring)."""

    title_suffix = ""
    rate_unit = "queries"
    timing_note = "Times are means over seeds; fit time is shared by the protocols of a seed."

    def __init__(self, run: RunView):
        self.run = run
        self.meta: Mapping[str, Any] = run.config.get("metrics", {})
        self.metric_names = _metric_order(run.ok, run.config.get("metric_order", []))
        self.cutoffs = sorted(
            {int(name.partition("@")[2]) for name in self.metric_names if "@" in name}
        )
        self.aggregated = run.aggregate(self.metric_names)
        self.tests = {
            (protocol, k): table_tests(
                run.run_dir,
                run.grouped,
                protocol,
                [n for n in self.metric_names if n.endswith(f"@{k}") and _has_per_query(run.ok, n)],
                run.model_order,
                self.aggregated,
                self.higher_is_better,
                run.baselines,
            )
            for protocol in run.protocols
            for k in self.cutoffs
        }

    def higher_is_better(self, name: str) -> bool:
        return bool(self.meta.get(name.partition("@")[0], {}).get("higher_is_better", True))

    # -- sections ----------------------------------------------------------------------

    def summary(self) -> str:
        """Which model wins what, under which protocol, and how sure that is."""
        run, aggregated = self.run, self.aggregated
        if not aggregated:
            return "No model finished: see Failures below."
        models, baselines = run.model_order, run.baselines
        k = self.cutoffs[0] if self.cutoffs else None
        sentences = []
        for protocol in run.protocols:
            name = self.headline(protocol)
            if name is None or k is None:
                continue
            table = self.tests.get((protocol, k), TableTests())
            scored = sorted(
                (
                    (aggregated[(protocol, m, name)][0], m)
                    for m in models
                    if (protocol, m, name) in aggregated
                ),
                key=lambda item: -item[0],
            )
            best_mean, best = scored[0]
            if len(scored) == 1:
                sentences.append(f"Under {protocol}, {best} reaches {name} = {best_mean:.4f}.")
                continue
            sentence = f"Under {protocol}, **{best}** leads on {name} ({best_mean:.4f}"
            rival_pool = [m for _, m in scored if (m in baselines) != (best in baselines)]
            rival = rival_pool[0] if baselines and rival_pool else None
            kind = "sequence model" if best in baselines else "baseline"
            second_mean, second = scored[1]
            p_second = table.adjusted.get((second, name), (math.nan, math.nan))[1]
            sentence += (
                f"; next {second}"
                + (f" (the best {kind})" if second == rival else "")
                + f" {second_mean:.4f}, "
                + _significance_words(p_second)
                + ")"
            )
            if rival is not None and rival != second:
                rival_mean = aggregated[(protocol, rival, name)][0]
                p_rival = table.adjusted.get((rival, name), (math.nan, math.nan))[1]
                sentence += (
                    f"; the best {kind} is {rival} ({rival_mean:.4f}, "
                    + _significance_words(p_rival)
                    + ")"
                )
            sentences.append(sentence + ".")
        n_seeds = len(run.finished_seeds)
        seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
        if run.n_folds:
            seeds += f" × {run.n_folds} folds (every user tested once per seed)"
        return (
            " ".join(sentences)
            + f" Results over {seeds}; p-values are Holm-adjusted paired Wilcoxon tests against"
            " the leader (details and policies below)."
        )

    def headline(self, protocol: str) -> str | None:
        """The headline metric at the smallest cutoff that some model has under
        ``protocol`` (the summary's and the minimum detectable difference's)."""
        if not self.cutoffs:
            return None
        k = self.cutoffs[0]
        return next(
            (
                f"{m}@{k}"
                for m in self.run.display.headlines()
                if any(
                    (protocol, model, f"{m}@{k}") in self.aggregated
                    for model in self.run.model_order
                )
            ),
            None,
        )

    def protocol(self) -> list[str]:
        run, config = self.run, self.run.config
        lines = ["## Protocol", ""]
        split = config.get("split", {})
        by_user = any(tests.unit == "users" for tests in self.tests.values())
        unit = "users (a user's queries averaged)" if by_user else "queries"
        resplit = "each seed re-splits and re-trains"
        if split.get("seed") is not None:
            resplit = (
                f"every seed tests the users of the split of seed {split['seed']} and re-trains"
            )
        if run.n_folds:
            resplit = (
                f"each seed cuts a new permutation of the users into {run.n_folds} folds; each "
                "fold's users are the test users of a model trained on the other folds' users "
                "(validation users drawn from those), so every user is tested exactly once per "
                "seed, and a seed's results pool the queries of its folds"
            )
        lines += [
            f"- Split: {escape(', '.join(f'{k}={v}' for k, v in split.items()))}; seeds "
            f"{', '.join(map(str, run.seeds))} ({resplit}).",
        ]
        lines += partial_seeds(run)
        ok = run.ok
        if ok:
            sizes = ok[0]["split"]
            where = f"seed {ok[0]['seed']}" + (
                f", fold {ok[0]['fold']}" if ok[0].get("fold") is not None else ""
            )
            lines += [
                f"- Users: {sizes['train_users']:,} train, {sizes['valid_users']:,} validation, "
                f"{sizes['test_users']:,} test ({where})."
            ]
        policies = ok[0]["policies"] if ok else {}
        dataset = run.dataset
        exclusion = policies.get("exclude_seen", dataset.get("exclude_seen") if dataset else None)
        ties = str(policies.get("ties", config.get("eval", {}).get("ties", "pessimistic")))
        lines += [
            f"- Seen-item exclusion: {'on (input items are never recommended)' if exclusion else 'off'}.",
            f"- Ties: {ties} ({TIE_POLICIES.get(ties, 'see the run configuration')}).",
            *_prefix_semantics(config.get("eval", {}).get("prefixes")),
            f"- Model selection: {config.get('eval', {}).get('validation_metric')} on validation users "
            f"({config.get('eval', {}).get('validation_protocol', 'last-item')}); the test users "
            "are evaluated once.",
            "- Uncertainty: ± is the 95% confidence half-width — over queries (normal approximation) "
            "for one seed, over seeds (Student t) for several — shown to 2 significant digits, "
            "the mean to the same decimal place"
            + (" (with folds: a seed's queries of every fold pooled)" if run.n_folds else "")
            + ". Corpus-level metrics (user_coverage; "
            "item_coverage, the number of distinct items that were a correct recommendation "
            "for at least one query, a count; blockbuster_share) have one value per seed, so "
            "an interval only over seeds"
            + ("; with folds, that value is the mean of the folds' values" if run.n_folds else "")
            + ".",
            f"- Significance: {VS_BASELINE_MARK} differs from the best baseline of the column "
            f"({', '.join(sorted(run.baselines)) or 'none in this run'}), {VS_BEST_MARK} from the "
            "best model of the column; two-sided Wilcoxon signed-rank test on the per-query "
            "values, paired over the same queries ("
            + ("seeds and folds pooled" if run.n_folds else "seeds pooled")
            + (
                "; every seed tests the same queries, so a query's differences are averaged "
                "over the seeds and it counts once"
                if split.get("seed") is not None
                else ""
            )
            + (
                "; a test user's differences are averaged over the user's queries, so the "
                "test runs over users: the queries of one user (iterative gives many) are "
                "not independent"
                if by_user
                else ""
            )
            + "), Holm-corrected across each "
            f"table, adjusted p < {ALPHA}."
            + (
                ""
                if by_user
                else " Queries of one user are not independent (iterative), so these p-values "
                "are optimistic there (this run's cells do not record each query's user)."
            ),
            "- Minimum detectable difference (under each protocol's first table, for its "
            "headline metric): the smallest true mean difference between the column's two best "
            f"models that a paired test detects with power {POWER:g} at two-sided α = "
            f"{ALPHA}/m, m the table's number of tests (Holm's strictest step), from the "
            f"standard deviation s of their paired differences over n {unit}: "
            "(z(1 − α/2) + z(power)) · s / √n, the normal approximation of a paired test (the "
            "Wilcoxon test of the marks is about as efficient: 0.955 for normal differences).",
        ]
        for protocol in run.protocols:
            description = PROTOCOL_DESCRIPTIONS.get(protocol, "")
            if protocol in SINGLE_TARGET_PROTOCOLS and any(
                f"{a}@{k}" in self.metric_names and f"{b}@{k}" in self.metric_names
                for a, b in (("hit", "sps"), ("precision", "sps"))
                for k in self.cutoffs
            ):
                description += f"; {SINGLE_TARGET_NOTE}"
            lines += [f"- **{protocol}**: {description}"]
        return [*lines, ""]

    def results(self, figures: Mapping[str, str]) -> list[str]:
        run = self.run
        lines: list[str] = []
        for protocol in run.protocols:
            sample = run.first_seed_cells(protocol)
            lines += [f"## Results: {protocol}", ""]
            if sample:
                n_queries = sum(c["n_queries"] for c in sample)
                n_users = sum(c["n_users"] for c in sample)
                folds = (
                    f" (seed {sample[0]['seed']}, {len(sample)} folds)" if len(sample) > 1 else ""
                )
                lines += [f"{n_queries:,} queries from {n_users:,} test users{folds}.", ""]
            headline = self.headline(protocol)
            for k in self.cutoffs:
                names = [n for n in self.metric_names if n.endswith(f"@{k}")]
                lines += [
                    f"### @{k}",
                    "",
                    *self._metric_table(protocol, names, self.tests[(protocol, k)]),
                    "",
                ]
                if k == self.cutoffs[0] and headline is not None:
                    tests = self.tests[(protocol, k)]
                    lines += detectable_line(tests, headline, tests.unit)
        if "metric_curves" in figures:
            lines += [f"![metrics at every cutoff]({figures['metric_curves']})", ""]
        return lines

    def after_results(self) -> list[str]:
        run = self.run
        return [
            *_sweep_section(
                {label: run.config["models"][label] for label in run.model_order},
                run.protocols,
                self.aggregated,
                run.grouped,
                self.cutoffs,
                run.display,
            ),
            *_order_check_section(run, self.cutoffs),
        ]

    def _metric_table(self, protocol: str, names: Sequence[str], tests: TableTests) -> list[str]:
        """The table of one protocol and cutoff, then the notes its intervals need."""
        aggregated, models = self.aggregated, self.run.model_order
        best: dict[str, float] = {}
        for name in names:
            values = [
                aggregated[(protocol, m, name)][0]
                for m in models
                if (protocol, m, name) in aggregated
            ]
            values = [v for v in values if not math.isnan(v)]
            if len(values) > 1:
                best[name] = max(values) if self.higher_is_better(name) else min(values)
        rows = []
        zero, few_seeds = False, set()
        for model in models:
            row: list[str] = [model]
            if not any((protocol, model, n) in aggregated for n in names):
                continue
            for name in names:
                if (protocol, model, name) not in aggregated:
                    row.append("–")
                    continue
                mean, ci = aggregated[(protocol, model, name)]
                count = self.run.display.is_count(name.partition("@")[0])
                text = format_mean(mean, ci, count)
                if name in best and mean == best[name]:
                    text = f"**{text}**"
                if ci is not None and not math.isnan(ci):
                    text += " " + format_half_width(ci, count)
                    zero = zero or ci == 0
                    n_seeds = self.run.seeds_of(protocol, model, name)
                    if 1 < n_seeds < MIN_SEEDS_FOR_T:
                        few_seeds.add(n_seeds)
                text += tests.marks(model, name)
                row.append(text)
            rows.append(row)
        headers = ["model"] + [f"{n} {'↑' if self.higher_is_better(n) else '↓'}" for n in names]
        notes = [few_seeds_note(n) for n in sorted(few_seeds)] + ([ZERO_NOTE] if zero else [])
        return [markdown_table(rows, headers), *(["", *notes] if notes else [])]

    @staticmethod
    def console_table(frame: Any, model_labels: Sequence[str], display: MetricDisplay) -> Any:
        """A console table of a ranking run's results (``frame``: the ok rows of
        :meth:`recbench.api.RunResult.to_dataframe`): the headline metrics at the
        smallest cutoff per model and protocol, means over seeds."""
        from rich.table import Table
        from rich.text import Text

        k = int(frame["cutoff"].dropna().min())
        present = set(frame["metric"])
        names = [m for m in display.headlines()[:CONSOLE_METRICS] if m in present]
        table = Table(title=f"{frame['dataset'].iloc[0]} — mean over seeds, k={k}")
        for column in ("model", "protocol", *(f"{n}@{k}" for n in names)):
            table.add_column(column)
        grouped = (
            frame[frame["cutoff"] == k]
            .groupby(["model", "protocol", "metric"], sort=False)["mean"]
            .mean()
        )
        order = {label: i for i, label in enumerate(model_labels)}
        rows = sorted(
            dict.fromkeys(zip(frame["model"], frame["protocol"], strict=True)),
            key=lambda row: (order.get(row[0], len(order)), row[0]),
        )
        for model, protocol in rows:
            table.add_row(
                Text(model),  # a label such as moc[mixtures=2] is not rich markup
                protocol,
                *(f"{grouped.get((model, protocol, n), float('nan')):.4f}" for n in names),
            )
        return table


def _metric_order(cells: Iterable[Mapping[str, Any]], metric_ids: Sequence[str]) -> list[str]:
    """Metric names (``id@k``) of the cells, in the run's metric order, then by name."""
    names: dict[str, None] = {}
    for cell in cells:
        for name in cell.get("metrics", {}):
            names.setdefault(name, None)
    rank = {metric_id: i for i, metric_id in enumerate(metric_ids)}
    return sorted(names, key=lambda n: (rank.get(n.partition("@")[0], len(rank)), n))


def _has_per_query(cells: Sequence[Mapping[str, Any]], name: str) -> bool:
    return any(c["metrics"].get(name, {}).get("per_query") for c in cells)


def _significance_words(p: float) -> str:
    if math.isnan(p):
        return "not tested"
    if p < ALPHA:
        return f"significantly lower, {p_text(p)}"
    return f"not significantly different, {p_text(p)}"


def _sweep_section(
    models: Mapping[str, Any],
    protocols: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    cutoffs: Sequence[int],
    display: MetricDisplay,
) -> list[str]:
    """One table per swept model: its variants side by side, the swept option values
    as columns, then sps and mrr per protocol and the fit time."""
    sweeps: dict[str, list[str]] = defaultdict(list)
    for label, entry in models.items():
        if entry.get("swept"):
            sweeps[entry["id"]].append(label)
    if not sweeps or not cutoffs:
        return []
    k = cutoffs[0]
    lines = ["## Option sweeps", ""]
    for model_id, labels in sweeps.items():
        keys = list(dict.fromkeys(key for label in labels for key in models[label]["swept"]))
        headline = [
            (protocol, name)
            for protocol in protocols
            for name in (f"sps@{k}", f"mrr@{k}")
            if any((protocol, label, name) in aggregated for label in labels)
        ]
        rows = []
        for label in labels:
            row = [str(models[label]["swept"].get(key, "")) for key in keys]
            for protocol, name in headline:
                value = aggregated.get((protocol, label, name))
                count = display.is_count(name.partition("@")[0])
                row.append("–" if value is None else format_value(value[0], count))
            fits = [
                g["timing"]["fit_seconds"]
                for protocol in protocols[:1]
                for g in grouped.get((protocol, label), [])
            ]
            row.append(f"{np.mean(fits):.2f}" if fits else "–")
            rows.append(row)
        headers = [*keys, *(f"{name} ({protocol})" for protocol, name in headline), "fit s"]
        lines += [f"`{escape(model_id)}`, one cell per value:", ""]
        lines += [markdown_table(rows, headers), ""]
    return lines


def _order_check_section(run: RunView, cutoffs: Sequence[int]) -> list[str]:
    """In-order against order-shuffled results of the order-check model: a verdict per
    protocol over every metric shown, Holm-corrected across them."""
    checks, ok, run_dir = run.ablations, run.ok, run.run_dir
    if not checks:
        return []
    shuffled_of = {
        id(check): run_dir.per_query(check) for check in checks if check.get("status") == "ok"
    }
    by_user = all(QUERY_USER in per_query for per_query in shuffled_of.values())
    lines = [
        "## Order check",
        "",
        "The model below was trained again on the first seed's training users with every "
        "user's items shuffled, and evaluated on the same test queries with each query's "
        "input items shuffled: the targets are unchanged, so it can use which items a user "
        "has but not their order. On large datasets it reads the queries of a seeded sample "
        "of the test users (-o eval.order_check_users; the queries column counts them), "
        "compared with the in-order answers to those queries. Two-sided Wilcoxon "
        "signed-rank test, paired over the "
        + ("test users (a user's queries averaged)" if by_user else "queries")
        + "; p is Holm-adjusted across the metrics "
        f"of each protocol, and the verdict counts every metric with adjusted p < {ALPHA}.",
        "",
    ]
    rows = []
    verdicts = []
    headlines = run.display.headlines()[:ORDER_CHECK_METRICS]
    names = [f"{m}@{cutoffs[0]}" for m in headlines] if cutoffs else []
    for check in checks:
        if check.get("status") != "ok":
            continue
        original = next(
            (
                c
                for c in ok
                if c["model_label"] + f" ({check['ablation']})" == check["model_label"]
                and c["protocol"] == check["protocol"]
                and c["seed"] == check["seed"]
            ),
            None,
        )
        if original is None:
            continue
        shuffled = shuffled_of[id(check)]
        values = order_check.paired_values(run_dir.per_query(original), shuffled, names)
        if not values:
            continue
        verdict = order_check.order_verdict(values, ALPHA, shuffled.get(QUERY_USER))
        for comparison in verdict.comparisons:
            rows.append(
                [
                    original["model_label"],
                    check["protocol"],
                    _queries_read(check, original),
                    comparison.metric,
                    f"{comparison.in_order:.4f}",
                    f"{comparison.shuffled:.4f}",
                    f"{comparison.shuffled - comparison.in_order:+.4f}",
                    "< 0.001" if comparison.adjusted_p < 0.001 else f"{comparison.adjusted_p:.3f}",
                ]
            )
        verdicts.append((check["protocol"], verdict))
    if not rows:
        return []
    lines += [
        markdown_table(
            rows,
            ["model", "protocol", "queries", "metric", "in order", "shuffled", "Δ", "p (Holm)"],
        ),
        "",
    ]
    for protocol in dict.fromkeys(p for p, _ in verdicts):
        first = next(v for p, v in verdicts if p == protocol)
        lines += [f"- **{protocol}**: {first.conclusion}."]
    return [*lines, ""]


def _queries_read(check: Mapping[str, Any], original: Mapping[str, Any]) -> str:
    """How many of the benchmark's queries the order check read: ``N`` or ``n of N``."""
    read, total = int(check["n_queries"]), int(original["n_queries"])
    return f"{read:,}" if read == total else f"{read:,} of {total:,}"


def _prefix_semantics(prefixes: str | None) -> list[str]:
    """The protocol line for ``eval.prefixes`` (none for runs recorded before it)."""
    if prefixes == "history":
        return [
            "- Inputs longer than max_length: history (a model with score_prefixes reads the "
            "whole input, as its cell serves; the others their max_length most recent items)."
        ]
    if prefixes == "window":
        return [
            "- Inputs longer than max_length: window (cut to the max_length most recent items)."
        ]
    return []
