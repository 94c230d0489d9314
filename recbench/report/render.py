"""Markdown benchmark reports, rendered from a run directory's result files alone.

The report states what was measured, how, and how sure we are, in this order: a title and
a one-paragraph summary; the environment; dataset statistics; protocol, split, seen-item
exclusion and tie policies; one section per protocol (a table per cutoff: mean ± 95%
confidence half-width, best per column in bold, paired significance marks against the
best baseline † and the best model ‡, Holm-corrected across the table); option sweeps;
the order check (:mod:`recbench.tasks.ranking.order_check`); timing; serving latency with an
accuracy-vs-latency view (:mod:`recbench.report.latency`); failures. Figures
(:mod:`recbench.report.figures`) are linked when they were drawn. Given the same result files the
report is the same, byte for byte.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tabulate import tabulate

from recbench.results import RunDirectory, read_json
from recbench.stats import significance
from recbench.stats.summary import over_seeds
from recbench.tasks.ranking import order_check

PROTOCOL_DESCRIPTIONS = {
    "half-split": "input = the first half of each held-out user's sequence; targets = the rest "
    "(the first of them is the next item for sps)",
    "iterative": "one query per position t: input = items 1..t, target = item t+1 "
    "(recall counts the remaining items t+1..n); the mean is over queries, so long "
    "sequences weigh more",
    "last-item": "input = all but the last item; target = the last item",
}

#: Adjusted p-values below this mark a difference as significant.
ALPHA = 0.05
#: The paired test of the significance marks (:mod:`recbench.stats.significance`).
TEST: significance.Test = "wilcoxon"
VS_BASELINE_MARK = "†"
VS_BEST_MARK = "‡"

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


def escape(text: Any) -> str:
    """A table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table with escaped cells."""
    return tabulate(
        [[escape(c) for c in row] for row in rows],
        headers=[escape(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def _format_value(value: float, metric_id: str) -> str:
    if math.isnan(value):
        return "n/a"
    if metric_id == "item_coverage":
        return f"{value:,.0f}"
    return f"{value:.4f}"


def _metric_order(cells: Iterable[Mapping[str, Any]], metric_ids: Sequence[str]) -> list[str]:
    """Metric names (``id@k``) of the cells, in the run's metric order, then by name."""
    names: dict[str, None] = {}
    for cell in cells:
        for name in cell.get("metrics", {}):
            names.setdefault(name, None)
    rank = {metric_id: i for i, metric_id in enumerate(metric_ids)}
    return sorted(names, key=lambda n: (rank.get(n.partition("@")[0], len(rank)), n))


def render(run_dir: RunDirectory, figures: Mapping[str, str] | None = None) -> str:
    """The markdown report of ``run_dir``.

    ``figures`` maps a figure id of :mod:`recbench.report.figures` to the link the report uses
    for it (relative to where the report is written); figures not given are not shown.
    """
    figures = dict(figures or {})
    config_file = read_json(run_dir.path / "config.json")
    config = config_file["config"]
    from recbench.report import rating

    if rating.is_rating_run(config):  # the rating track has a report of its own
        return rating.render_rating_report(run_dir)
    environment = read_json(run_dir.path / "environment.json")
    dataset_path = run_dir.path / "dataset.json"
    dataset = read_json(dataset_path) if dataset_path.is_file() else None
    all_cells = list(run_dir.cells())
    checks = [c for c in all_cells if order_check.is_ablation(c)]
    cells = [c for c in all_cells if not order_check.is_ablation(c)]
    ok = [c for c in cells if c.get("status") == "ok"]
    failed = [c for c in all_cells if c.get("status") != "ok"]
    metric_meta = config.get("metrics", {})
    protocols = [p for p in config["protocols"] if any(c["protocol"] == p for c in cells)]
    model_order = config.get("model_order") or list(config["models"])

    # (protocol, model label, metric name) -> aggregated (mean, ci)
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for cell in ok:
        grouped[(cell["protocol"], cell["model_label"])].append(cell)
    metric_names = _metric_order(ok, config.get("metric_order", []))
    cutoffs = sorted({int(name.partition("@")[2]) for name in metric_names if "@" in name})
    aggregated: dict[tuple[str, str, str], tuple[float, float | None]] = {}
    for (protocol, label), group in grouped.items():
        for name in metric_names:
            means = [g["metrics"][name]["mean"] for g in group if name in g["metrics"]]
            cis = [g["metrics"][name]["ci95"] for g in group if name in g["metrics"]]
            if means:
                aggregated[(protocol, label, name)] = over_seeds(means, cis)

    baselines = {label for label, entry in config["models"].items() if entry.get("baseline")}
    tests = {
        (protocol, k): _table_tests(
            run_dir,
            grouped,
            protocol,
            [n for n in metric_names if n.endswith(f"@{k}") and _has_per_query(ok, n)],
            model_order,
            aggregated,
            metric_meta,
            baselines,
        )
        for protocol in protocols
        for k in cutoffs
    }

    seeds = config.get("seeds", [])
    finished = {
        label: sorted({c["seed"] for c in ok if c["model_label"] == label}) for label in model_order
    }
    finished_seeds = sorted({seed for values in finished.values() for seed in values})
    lines = [
        f"# recbench report: {escape(dataset['name'] if dataset else config['dataset']['name'])}",
        "",
    ]
    lines += [
        _summary(
            protocols, model_order, aggregated, cutoffs, len(finished_seeds), baselines, tests
        ),
        "",
    ]

    lines += environment_section(config_file, environment)
    if dataset:
        lines += dataset_section(dataset)

    lines += ["## Protocol", ""]
    split = config.get("split", {})
    lines += [
        f"- Split: {escape(', '.join(f'{k}={v}' for k, v in split.items()))}; seeds {', '.join(map(str, seeds))}"
        + " (each seed re-splits and re-trains).",
    ]
    partial = {
        label: values
        for label, values in finished.items()
        if values and set(values) != set(finished_seeds)
    }
    if partial:
        lines += [
            "- **Not every model finished every seed**: "
            + "; ".join(
                f"{escape(label)} seed{'s' if len(values) > 1 else ''} "
                + ", ".join(map(str, values))
                for label, values in partial.items()
            )
            + f" (of {', '.join(map(str, finished_seeds))}); their means are over those seeds.",
        ]
    if ok:
        sizes = ok[0]["split"]
        lines += [
            f"- Users: {sizes['train_users']:,} train, {sizes['valid_users']:,} validation, "
            f"{sizes['test_users']:,} test (seed {ok[0]['seed']})."
        ]
    policies = ok[0]["policies"] if ok else {}
    exclusion = policies.get("exclude_seen", dataset.get("exclude_seen") if dataset else None)
    lines += [
        f"- Seen-item exclusion: {'on (input items are never recommended)' if exclusion else 'off'}.",
        f"- Ties: {policies.get('ties', config.get('eval', {}).get('ties', 'pessimistic'))} "
        "(a target with the same score as other items ranks after them when pessimistic).",
        f"- Model selection: {config.get('eval', {}).get('validation_metric')} on validation users "
        "(last-item); the test users are evaluated once.",
        "- Uncertainty: ± is the 95% confidence half-width — over queries (normal approximation) "
        "for one seed, over seeds (Student t) for several. Corpus-level metrics "
        "(user_coverage, item_coverage = number of distinct items, blockbuster_share) have none.",
        f"- Significance: {VS_BASELINE_MARK} differs from the best baseline of the column "
        f"({', '.join(sorted(baselines)) or 'none in this run'}), {VS_BEST_MARK} from the "
        "best model of the column; two-sided Wilcoxon signed-rank test on the per-query "
        "values, paired over the same queries (seeds pooled), Holm-corrected across each "
        f"table, adjusted p < {ALPHA}. Queries of one user are not independent (iterative), "
        "so these p-values are optimistic there.",
    ]
    for protocol in protocols:
        lines += [f"- **{protocol}**: {PROTOCOL_DESCRIPTIONS.get(protocol, '')}"]
    lines += [""]

    for protocol in protocols:
        sample = next((c for c in ok if c["protocol"] == protocol), None)
        lines += [f"## Results: {protocol}", ""]
        if sample is not None:
            lines += [f"{sample['n_queries']:,} queries from {sample['n_users']:,} test users.", ""]
        for k in cutoffs:
            names = [n for n in metric_names if n.endswith(f"@{k}")]
            lines += [
                f"### @{k}",
                "",
                _metric_table(
                    protocol, model_order, names, aggregated, metric_meta, tests[(protocol, k)]
                ),
                "",
            ]
    if "metric_curves" in figures:
        lines += [f"![metrics at every cutoff]({figures['metric_curves']})", ""]

    lines += _sweep_section(
        {label: config["models"][label] for label in model_order},
        protocols,
        aggregated,
        grouped,
        cutoffs,
    )
    lines += _order_check_section(run_dir, checks, ok, cutoffs)

    lines += ["## Timing", ""]
    timing_rows = []
    for label in model_order:
        for protocol in protocols:
            group = grouped.get((protocol, label), [])
            if not group:
                continue
            fit = np.mean([g["timing"]["fit_seconds"] for g in group])
            ev = np.mean([g["timing"]["eval_seconds"] for g in group])
            qps = np.mean([g["timing"]["queries_per_second"] for g in group])
            timing_rows.append([label, protocol, f"{fit:.2f}", f"{ev:.2f}", f"{qps:,.0f}"])
    lines += [
        markdown_table(timing_rows, ["model", "protocol", "fit s", "evaluation s", "queries/s"]),
        "",
    ]
    lines += ["Times are means over seeds; fit time is shared by the protocols of a seed.", ""]

    from recbench.report.latency import latency_section

    lines += latency_section(
        run_dir, config, model_order, protocols, ok, figures.get("accuracy_latency")
    )

    if failed:
        lines += ["## Failures", ""]
        rows = [[c["model_label"], c["protocol"], c["seed"], c.get("error", "")] for c in failed]
        lines += [markdown_table(rows, ["model", "protocol", "seed", "reason"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _sweep_section(
    models: Mapping[str, Any],
    protocols: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    cutoffs: Sequence[int],
) -> list[str]:
    """One table per swept model: its variants side by side, the swept option values
    as columns, then the headline metrics per protocol and the fit time."""
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
                row.append("–" if value is None else _format_value(value[0], name))
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


def environment_section(
    config_file: Mapping[str, Any], environment: Mapping[str, Any]
) -> list[str]:
    """The lines of the Environment section: the command line (from ``config.json``),
    versions, device and plugins (from ``environment.json``)."""
    lines = ["## Environment", ""]
    if config_file.get("command"):
        lines += [f"- Command: `{config_file['command']}`"]
    for command in config_file.get("earlier_commands", []):
        lines += [f"- Earlier invocation of this run directory: `{command}`"]
    earlier = environment.get("earlier_git", [])
    return [
        *lines,
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
        "",
    ]


def dataset_section(dataset: Mapping[str, Any]) -> list[str]:
    """The lines of the Dataset section: the statistics and preprocessing options of
    ``dataset.json``."""
    stats = dataset["statistics"]
    ordered = sorted(
        stats,
        key=lambda key: (
            STATISTICS_ORDER.index(key) if key in STATISTICS_ORDER else len(STATISTICS_ORDER),
            key,
        ),
    )
    rows = [[key.replace("_", " "), _format_stat(stats[key])] for key in ordered]
    prep = ", ".join(f"{k}={v}" for k, v in dataset.get("preprocessing", {}).items())
    return [
        "## Dataset",
        "",
        markdown_table(rows, ["statistic", "value"]),
        "",
        f"Preprocessing: {escape(prep)}.",
        "",
    ]


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


def _has_per_query(cells: Sequence[Mapping[str, Any]], name: str) -> bool:
    return any(c["metrics"].get(name, {}).get("per_query") for c in cells)


@dataclass(frozen=True)
class TableTests:
    """The significance tests of one table (a protocol at a cutoff).

    ``references[metric] = (best baseline, best model)`` (either ``None``);
    ``adjusted[(model, metric)] = (p vs best baseline, p vs best model)``, Holm-adjusted
    over every test of the table (NaN: not tested).
    """

    references: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    adjusted: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def marks(self, model: str, metric: str) -> str:
        p_baseline, p_best = self.adjusted.get((model, metric), (math.nan, math.nan))
        return (VS_BASELINE_MARK if p_baseline < ALPHA else "") + (
            VS_BEST_MARK if p_best < ALPHA else ""
        )


def _table_tests(
    run_dir: RunDirectory,
    grouped: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    protocol: str,
    names: Sequence[str],
    models: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    meta: Mapping[str, Any],
    baselines: set[str],
) -> TableTests:
    """Every model against the column's best baseline and best model, per metric."""
    arrays: dict[tuple[str, str], dict[int, np.ndarray]] = {}

    def values(model: str, name: str) -> dict[int, np.ndarray]:
        if (model, name) not in arrays:
            per_seed = {}
            for cell in grouped.get((protocol, model), []):
                per_query = run_dir.per_query(cell)
                if name in per_query:
                    per_seed[int(cell["seed"])] = per_query[name]
            arrays[(model, name)] = per_seed
        return arrays[(model, name)]

    references: dict[str, tuple[str | None, str | None]] = {}
    raw: dict[tuple[str, str, int], float] = {}
    for name in names:
        higher = meta.get(name.partition("@")[0], {}).get("higher_is_better", True)
        present = [m for m in models if (protocol, m, name) in aggregated]
        ranked = sorted(
            present,
            key=lambda m: aggregated[(protocol, m, name)][0] * (-1 if higher else 1),
        )
        best_baseline = next((m for m in ranked if m in baselines), None)
        best = ranked[0] if ranked else None
        references[name] = (best_baseline, best)
        for model in present:
            for slot, reference in enumerate((best_baseline, best)):
                if reference is None or reference == model:
                    continue
                raw[(model, name, slot)] = significance.pooled_paired_test(
                    values(model, name), values(reference, name), TEST
                )
    keys = list(raw)
    adjusted_values = significance.holm([raw[key] for key in keys]) if keys else np.zeros(0)
    adjusted: dict[tuple[str, str], list[float]] = {}
    for (model, name, slot), p in zip(keys, adjusted_values, strict=True):
        adjusted.setdefault((model, name), [math.nan, math.nan])[slot] = float(p)
    return TableTests(references, {key: (v[0], v[1]) for key, v in adjusted.items()})


def _metric_table(
    protocol: str,
    models: Sequence[str],
    names: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    meta: Mapping[str, Any],
    tests: TableTests | None = None,
) -> str:
    best: dict[str, float] = {}
    for name in names:
        metric_id = name.partition("@")[0]
        higher = meta.get(metric_id, {}).get("higher_is_better", True)
        values = [
            aggregated[(protocol, m, name)][0] for m in models if (protocol, m, name) in aggregated
        ]
        values = [v for v in values if not math.isnan(v)]
        if len(values) > 1:
            best[name] = max(values) if higher else min(values)
    rows = []
    for model in models:
        row: list[str] = [model]
        if not any((protocol, model, n) in aggregated for n in names):
            continue
        for name in names:
            if (protocol, model, name) not in aggregated:
                row.append("–")
                continue
            mean, ci = aggregated[(protocol, model, name)]
            text = _format_value(mean, name.partition("@")[0])
            if name in best and mean == best[name]:
                text = f"**{text}**"
            if ci is not None and not math.isnan(ci):
                text += f" ± {ci:.4f}"
            if tests is not None:
                text += tests.marks(model, name)
            row.append(text)
        rows.append(row)
    headers = ["model"] + [
        f"{n} {'↑' if meta.get(n.partition('@')[0], {}).get('higher_is_better', True) else '↓'}"
        for n in names
    ]
    return markdown_table(rows, headers)


def _summary(
    protocols: Sequence[str],
    models: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    cutoffs: Sequence[int],
    n_seeds: int,
    baselines: set[str],
    tests: Mapping[tuple[str, int], TableTests],
) -> str:
    """Which model wins what, under which protocol, and how sure that is."""
    if not aggregated:
        return "No model finished: see Failures below."
    k = cutoffs[0] if cutoffs else None
    sentences = []
    for protocol in protocols:
        name = next(
            (
                f"{m}@{k}"
                for m in ("sps", "recall", "mrr", "ndcg", "hit")
                if any((protocol, model, f"{m}@{k}") in aggregated for model in models)
            ),
            None,
        )
        if name is None or k is None:
            continue
        table = tests.get((protocol, k), TableTests())
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
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return (
        " ".join(sentences)
        + f" Results over {seeds}; p-values are Holm-adjusted paired Wilcoxon tests against"
        " the leader (details and policies below)."
    )


def _significance_words(p: float) -> str:
    if math.isnan(p):
        return "not tested"
    if p < ALPHA:
        return f"significantly lower, {_p_text(p)}"
    return f"not significantly different, {_p_text(p)}"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _order_check_section(
    run_dir: RunDirectory,
    checks: Sequence[Mapping[str, Any]],
    ok: Sequence[Mapping[str, Any]],
    cutoffs: Sequence[int],
) -> list[str]:
    """In-order against order-shuffled results of the order-check model."""
    if not checks:
        return []
    lines = [
        "## Order check",
        "",
        "The model below was trained again on the first seed's training users with every "
        "user's items shuffled, and evaluated on the same test queries with each query's "
        "input items shuffled: the targets are unchanged, so it can use which items a user "
        "has but not their order. Two-sided Wilcoxon signed-rank test, paired over the "
        "queries (not corrected for the several metrics shown).",
        "",
    ]
    rows = []
    verdicts = []
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
        names = [f"{m}@{cutoffs[0]}" for m in ("sps", "recall", "mrr")] if cutoffs else []
        for name in names:
            a = run_dir.per_query(original).get(name)
            b = run_dir.per_query(check).get(name)
            if a is None or b is None:
                continue
            verdict = order_check.order_verdict(name, a, b, ALPHA)
            rows.append(
                [
                    original["model_label"],
                    check["protocol"],
                    name,
                    f"{verdict.in_order:.4f}",
                    f"{verdict.shuffled:.4f}",
                    f"{verdict.shuffled - verdict.in_order:+.4f}",
                    "< 0.001" if verdict.p_value < 0.001 else f"{verdict.p_value:.3f}",
                ]
            )
            verdicts.append((check["protocol"], verdict))
    if not rows:
        return []
    lines += [
        markdown_table(rows, ["model", "protocol", "metric", "in order", "shuffled", "Δ", "p"]),
        "",
    ]
    for protocol in dict.fromkeys(p for p, _ in verdicts):
        first = next(v for p, v in verdicts if p == protocol)
        lines += [f"- **{protocol}** ({first.metric}): {first.conclusion}."]
    return [*lines, ""]
