"""Markdown benchmark reports, rendered from a run directory's result files alone.

The report states what was measured and how: environment, dataset statistics, split,
protocols, seen-item exclusion and tie policies, then one table per protocol and cutoff
(mean ± 95% confidence half-width, best per column in bold), a timing table, and the
serving latency of every model with an accuracy-vs-latency view
(:mod:`recbench.latency_report`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from recbench.results import RunDirectory, read_json

PROTOCOL_DESCRIPTIONS = {
    "half-split": "input = the first half of each held-out user's sequence; targets = the rest "
    "(the first of them is the next item for sps)",
    "iterative": "one query per position t: input = items 1..t, target = item t+1 "
    "(recall counts the remaining items t+1..n); the mean is over queries, so long "
    "sequences weigh more",
    "last-item": "input = all but the last item; target = the last item",
}

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


def _seed_aggregate(
    means: Sequence[float], cis: Sequence[float | None]
) -> tuple[float, float | None]:
    """Mean over seeds, and its 95% CI half-width (Student t over seeds; with one seed,
    the cell's own CI over queries)."""
    if len(means) == 1:
        return float(means[0]), cis[0]
    from scipy import stats

    values = np.asarray(means, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def _metric_order(cells: Iterable[Mapping[str, Any]]) -> list[str]:
    order: dict[str, None] = {}
    for cell in cells:
        for name in cell.get("metrics", {}):
            order.setdefault(name, None)
    return list(order)


def render(run_dir: RunDirectory) -> str:
    """The markdown report of ``run_dir``."""
    config_file = read_json(run_dir.path / "config.json")
    config = config_file["config"]
    environment = read_json(run_dir.path / "environment.json")
    dataset_path = run_dir.path / "dataset.json"
    dataset = read_json(dataset_path) if dataset_path.is_file() else None
    cells = list(run_dir.cells())
    ok = [c for c in cells if c.get("status") == "ok"]
    failed = [c for c in cells if c.get("status") != "ok"]
    metric_meta = config.get("metrics", {})
    protocols = [p for p in config["protocols"] if any(c["protocol"] == p for c in cells)]
    model_order = list(config["models"])

    # (protocol, model label, metric name) -> aggregated (mean, ci)
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for cell in ok:
        grouped[(cell["protocol"], cell["model_label"])].append(cell)
    metric_names = _metric_order(ok)
    cutoffs = sorted({int(name.partition("@")[2]) for name in metric_names if "@" in name})
    aggregated: dict[tuple[str, str, str], tuple[float, float | None]] = {}
    for (protocol, label), group in grouped.items():
        for name in metric_names:
            means = [g["metrics"][name]["mean"] for g in group if name in g["metrics"]]
            cis = [g["metrics"][name]["ci95"] for g in group if name in g["metrics"]]
            if means:
                aggregated[(protocol, label, name)] = _seed_aggregate(means, cis)

    seeds = config.get("seeds", [])
    lines = [
        f"# recbench report: {escape(dataset['name'] if dataset else config['dataset']['name'])}",
        "",
    ]
    lines += [_summary(protocols, model_order, aggregated, metric_meta, cutoffs, len(seeds)), ""]

    lines += ["## Setup", ""]
    if config_file.get("command"):
        lines += [f"- Command: `{config_file['command']}`"]
    lines += [
        f"- recbench {environment.get('recbench')} (git {environment.get('git') or 'unknown'}), "
        f"plugin API {environment.get('plugin_api')}",
        f"- Python {environment.get('python')}, torch {environment.get('torch')}, "
        f"numpy {environment.get('numpy')}, {environment.get('platform')}",
        f"- Device: {environment.get('device')}"
        + (f" ({environment['gpu']})" if environment.get("gpu") else "")
        + f", torch threads: {environment.get('torch_threads')}",
        "- Plugins: " + ", ".join(f"{d} {v}" for d, v in environment.get("plugins", [])),
        "",
    ]

    if dataset:
        stats = dataset["statistics"]
        lines += ["## Dataset", ""]
        ordered = sorted(
            stats,
            key=lambda key: (
                STATISTICS_ORDER.index(key) if key in STATISTICS_ORDER else len(STATISTICS_ORDER),
                key,
            ),
        )
        rows = [[key.replace("_", " "), _format_stat(stats[key])] for key in ordered]
        lines += [markdown_table(rows, ["statistic", "value"]), ""]
        prep = ", ".join(f"{k}={v}" for k, v in dataset.get("preprocessing", {}).items())
        lines += [f"Preprocessing: {escape(prep)}.", ""]

    lines += ["## Protocol", ""]
    split = config.get("split", {})
    lines += [
        f"- Split: {escape(', '.join(f'{k}={v}' for k, v in split.items()))}; seeds {', '.join(map(str, seeds))}"
        + " (each seed re-splits and re-trains).",
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
                _metric_table(protocol, model_order, names, aggregated, metric_meta),
                "",
            ]

    lines += _sweep_section(config["models"], protocols, aggregated, grouped, cutoffs)

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

    from recbench.latency_report import latency_section

    lines += latency_section(run_dir, config, model_order, protocols, ok)

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


def _metric_table(
    protocol: str,
    models: Sequence[str],
    names: Sequence[str],
    aggregated: Mapping[tuple[str, str, str], tuple[float, float | None]],
    meta: Mapping[str, Any],
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
    meta: Mapping[str, Any],
    cutoffs: Sequence[int],
    n_seeds: int,
) -> str:
    if not aggregated:
        return "No model finished: see Failures below."
    k = cutoffs[0] if cutoffs else None
    sentences = []
    for protocol in protocols:
        for metric_id in ("sps", "recall", "mrr"):
            name = f"{metric_id}@{k}"
            scored = [
                (aggregated[(protocol, m, name)], m)
                for m in models
                if (protocol, m, name) in aggregated
            ]
            if not scored:
                continue
            scored.sort(key=lambda item: item[0][0], reverse=True)
            (best_mean, best_ci), best_model = scored[0]
            if len(scored) == 1:
                sentences.append(
                    f"Under {protocol}, {best_model} reaches {name} = {best_mean:.4f}."
                )
                break
            (second_mean, second_ci), second_model = scored[1]
            separated = (
                best_ci is not None
                and second_ci is not None
                and best_mean - best_ci > second_mean + second_ci
            )
            sentences.append(
                f"Under {protocol}, {best_model} leads on {name} ({best_mean:.4f} vs "
                f"{second_model} {second_mean:.4f}; "
                + (
                    "the 95% intervals do not overlap)."
                    if separated
                    else "the 95% intervals overlap)."
                )
            )
            break
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return " ".join(sentences) + f" Results over {seeds}; details and policies below."
