"""The latency section of the markdown report, and the accuracy-vs-latency plot.

Rendered from the run directory's ``latency/*.json`` records (:mod:`recbench.serve.latency`)
and its result cells alone: a table of every model's serving latency per runtime, the
runtimes that were not timed and why, and an accuracy-vs-latency table (its plot is drawn
by :mod:`recbench.report.figures`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recbench.report.markdown import escape, markdown_table
from recbench.results import RunDirectory

#: Above this share of CPU time used by other processes, the report warns.
BUSY_SHARE = 0.1


RUNTIME_NAMES = {
    "torch": "torch eager",
    "onnxruntime": "ONNX Runtime",
    "torchscript": "TorchScript (frozen)",
    "compile": "torch.compile",
    "score": "score() + top-k",
    "score-unranked": "score() alone",
}
#: A ``score`` measurement recorded without ``top_k``: ``score()`` timed alone, which
#: measures nothing for a ``score()`` that returns a lazy view.
UNRANKED_SCORE = "score-unranked"


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def _latency_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, unit, runtime, device, threads), means over seeds; and one
    row per model whose export failed."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    failures: dict[str, list[str]] = defaultdict(list)
    for record in records:
        label = record["model_label"]
        export = record.get("export") or {}
        if export.get("status") not in (None, "ok"):
            failures[label].append(f"{export['status']}: {export.get('error')}")
        for m in record.get("measurements", []):
            runtime = m["runtime"]
            if m["unit"] == "score" and not m.get("top_k"):
                runtime = UNRANKED_SCORE
            groups[(label, m["unit"], runtime, m["device"], m.get("threads"))].append(m)
    rows = []
    for (label, unit, runtime, device, threads), group in groups.items():
        parity = [m.get("parity") for m in group]
        rows.append(
            {
                "model": label,
                "unit": unit,
                "runtime": runtime,
                "device": device,
                "threads": threads,
                "p50": float(np.mean([m["batch1"]["p50_ms"] for m in group])),
                "p95": float(np.mean([m["batch1"]["p95_ms"] for m in group])),
                "p99": float(np.mean([m["batch1"]["p99_ms"] for m in group])),
                "qps": float(np.mean([m["queries_per_second"] for m in group])),
                "batch_size": group[0]["batch"]["batch_size"],
                "parity": _parity_text(parity),
                "passed": all(p == "reference" or (p or {}).get("passed", True) for p in parity),
            }
        )
    for label, reasons in failures.items():
        rows.append({"model": label, "unit": "step", "failed": "; ".join(dict.fromkeys(reasons))})
    return rows


def _parity_text(parity: Sequence[Any]) -> str:
    if any(p is None for p in parity):
        return "–"
    if all(p == "reference" for p in parity):
        return "reference"
    diffs = [p["max_abs_diff"] for p in parity if isinstance(p, dict)]
    ok = all(p == "reference" or p.get("passed") for p in parity)
    return f"{'ok' if ok else 'FAILED'} ({max(diffs):.1e})"


def latency_section(
    run_dir: RunDirectory,
    config: Mapping[str, Any],
    models: Sequence[str],
    protocols: Sequence[str],
    ok_cells: Sequence[Mapping[str, Any]],
    plot_link: str | None = None,
) -> list[str]:
    """The report's ``## Latency`` section (empty when the run has no latency records);
    ``plot_link`` is where the report finds the accuracy-vs-latency figure, if drawn."""
    from recbench.serve.latency import read_records

    records = read_records(run_dir.path)
    if not records:
        return []
    order = {label: i for i, label in enumerate(models)}
    rows = sorted(
        _latency_rows(records),
        key=lambda r: (
            order.get(r["model"], len(order)),
            r["unit"] != "score",
            r.get("runtime", ""),
        ),
    )
    batch = next((r["batch_size"] for r in rows if "batch_size" in r), 256)
    env = records[0].get("environment", {})
    threads = sorted({r["threads"] for r in rows if r.get("threads")})
    measurements = [m for r in records for m in r.get("measurements", [])]
    loads = [
        x[0]
        for m in measurements
        for x in (m.get("load_average") or {}).values()
        if isinstance(x, list) and x
    ]
    others = [
        share
        for share in (
            *(m.get("other_cpu_share") for m in measurements),
            *(r.get("environment", {}).get("other_cpu_share") for r in records),
        )
        if share is not None
    ]
    busy = max(others, default=0.0)
    lines = ["## Latency", ""]
    lines += [
        "Serving cost per model. **step**: one step of a neural model's exported cell (read "
        "one item, update the kept state, score every item); **score**: the model's own "
        "`score()` on test queries (the whole input sequence) and the top-k of its scores "
        "(`torch.topk`, as evaluation ranks them), for every model. p50/p95/p99: "
        f"single calls at batch 1; queries/s: batch {batch} at its median call time. Parity: "
        "max abs difference from torch eager on the CPU over random inputs; a runtime that "
        "fails parity is not timed. Means over seeds.",
        "",
        f"- Machine: {escape(env.get('cpu', 'unknown CPU'))}, {env.get('cpu_count')} logical "
        f"CPUs{', GPU ' + escape(env['gpu']) if env.get('gpu') else ''}; threads timed: "
        f"{', '.join(map(str, threads)) or 'default'}"
        + (f"; 1-minute load average {min(loads):.2f}–{max(loads):.2f}" if loads else "")
        + (f"; other processes used up to {busy:.0%} of the CPU time" if others else "")
        + ".",
        f"- torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')} "
        + "("
        + ", ".join(f"{k} {v}" for k, v in (env.get("onnxruntime_distributions") or {}).items())
        + f"), onnx {env.get('onnx')}.",
    ]
    if busy > BUSY_SHARE:
        lines += [
            f"- **Busy machine**: other processes took up to {busy:.0%} of the CPU time "
            "while timing; timings with several threads are unreliable (a thread waits for "
            "a descheduled sibling). Re-time on a quiet machine: `recbench export RUN_DIR "
            "--force -o export.threads=1,2`."
        ]
    if env.get("warning"):
        lines += [f"- **Warning**: {escape(env['warning'])}"]
    lines += [""]
    table = []
    for row in rows:
        if "failed" in row:
            table.append(
                [
                    row["model"],
                    "step",
                    "ONNX export",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    f"FAILED: {row['failed']}",
                ]
            )
            continue
        table.append(
            [
                row["model"],
                row["unit"],
                RUNTIME_NAMES.get(row["runtime"], row["runtime"]),
                row["device"],
                row["threads"] or "–",
                _ms(row["p50"]),
                _ms(row["p95"]),
                _ms(row["p99"]),
                f"{row['qps']:,.0f}",
                row["parity"],
            ]
        )
    headers = [
        "model",
        "unit",
        "runtime",
        "device",
        "threads",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        f"queries/s @{batch}",
        "parity",
    ]
    lines += [markdown_table(table, headers), ""]
    notes = {r["model_label"]: r["serving_note"] for r in records if r.get("serving_note")}
    if notes:
        lines += [
            *(
                f"- `{escape(label)}` step: {escape(note)}"
                for label, note in sorted(notes.items(), key=lambda kv: order.get(kv[0], 0))
            ),
            "",
        ]
    skipped = [
        f"- {r['model_label']} (seed {r['seed']}): {RUNTIME_NAMES.get(s['runtime'], s['runtime'])} "
        f"on {s['device']} not timed: {escape(s['reason'])}"
        for r in records
        for s in r.get("skipped", [])
    ]
    if skipped:
        lines += [*dict.fromkeys(skipped), ""]
    if any(r.get("runtime") == UNRANKED_SCORE for r in rows):
        lines += [
            "score() alone: timed by an earlier recbench without ranking the scores, so a "
            "`score()` that returns a lazy view (popularity's one row expanded to the batch) "
            "was not measured; these rows stay out of the accuracy-vs-latency comparison. "
            "Re-time with `recbench export RUN_DIR --force`.",
            "",
        ]

    points = accuracy_latency_points(run_dir, config, models, protocols, ok_cells, rows)
    if points:
        metric, protocol = points[0]["metric"], points[0]["protocol"]
        lines += ["### Accuracy vs latency", ""]
        table = [
            [
                p["model"],
                f"{p['accuracy']:.4f}",
                _ms(p["score_p50"]),
                f"{p['score_qps']:,.0f}" if p["score_qps"] is not None else "–",
                f"{_ms(p['step_p50'])} ({p['step_runtime']})" if p["step_p50"] is not None else "–",
                f"{p['step_qps']:,.0f}" if p["step_qps"] is not None else "–",
            ]
            for p in points
        ]
        headers = [
            "model",
            f"{metric} ({protocol})",
            "score() + top-k p50 ms",
            f"score() + top-k queries/s @{batch}",
            "fastest step p50 ms",
            f"fastest step queries/s @{batch}",
        ]
        lines += [markdown_table(table, headers), ""]
        lines += [
            "The fastest step is the lowest batch-1 p50 among the runtimes that passed parity; "
            "its throughput is the highest among them.",
            "",
        ]
        if plot_link:
            lines += [f"![{metric} against latency]({plot_link})", ""]
    return lines


def accuracy_latency_points(
    run_dir: RunDirectory,
    config: Mapping[str, Any],
    models: Sequence[str],
    protocols: Sequence[str],
    ok_cells: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per model: an accuracy (the validation metric under the first protocol, mean over
    seeds), its ``score()`` latency and its fastest parity-passing step runtime."""
    from recbench.serve.latency import read_records

    if rows is None:
        rows = _latency_rows(read_records(run_dir.path))
    if not rows or not protocols:
        return []
    protocol = protocols[0]
    names = list(dict.fromkeys(name for cell in ok_cells for name in cell.get("metrics", {})))
    metric = config.get("eval", {}).get("validation_metric")
    if metric not in names:
        metric = next((n for n in names if "@" in n), None)
    if metric is None:
        return []
    points = []
    for label in models:
        values = [
            c["metrics"][metric]["mean"]
            for c in ok_cells
            if c["model_label"] == label and c["protocol"] == protocol and metric in c["metrics"]
        ]
        mine = [
            r
            for r in rows
            if r["model"] == label and "failed" not in r and r["runtime"] != UNRANKED_SCORE
        ]
        if not values or not mine:
            continue
        score = [r for r in mine if r["unit"] == "score" and r["runtime"] != UNRANKED_SCORE]
        steps = [r for r in mine if r["unit"] == "step" and r["passed"]]
        fastest = min(steps, key=lambda r: r["p50"]) if steps else None
        points.append(
            {
                "model": label,
                "metric": metric,
                "protocol": protocol,
                "accuracy": float(np.mean(values)),
                "score_p50": min(r["p50"] for r in score) if score else None,
                "score_qps": max(r["qps"] for r in score) if score else None,
                "step_p50": fastest["p50"] if fastest else None,
                "step_runtime": (
                    f"{RUNTIME_NAMES.get(fastest['runtime'], fastest['runtime'])}, "
                    f"{fastest['device']}"
                    + (f", {fastest['threads']} threads" if fastest["threads"] else "")
                )
                if fastest
                else None,
                "step_qps": max(r["qps"] for r in steps) if steps else None,
            }
        )
    return points
