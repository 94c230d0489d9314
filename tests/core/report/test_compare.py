"""``recbench compare RUN_A RUN_B``: ratios, marks, directions and exit codes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

import recbench
from recbench import cli
from recbench.api import compare
from recbench.errors import ConfigError
from recbench.report.compare import ALL_METRICS, Comparison, ComparisonRow
from recbench.results import RunDirectory, cell_name, write_json

#: metric id -> (higher_is_better, per_query), as a run's config.json records them
METRICS = {
    "sps": (True, True),
    "mrr": (True, True),
    "item_coverage": (True, False),
    "blockbuster_share": (False, False),
}
BASE = {
    "sps@10": 0.2,
    "mrr@10": 0.1,
    "item_coverage@10": 26.0,
    "blockbuster_share@10": 0.5,
}

Cells = Mapping[tuple[str, str, int], Mapping[str, float] | str]


def write_run(path: Path, cells: Cells) -> Path:
    """A run directory written with the results store's own writers. ``cells`` maps
    (model, protocol, seed) to metric means, or to ``"failed"``."""
    run_dir = RunDirectory.create(path, resume=False)
    models = dict.fromkeys(model for model, _, _ in cells)
    write_json(
        run_dir.path / "config.json",
        {
            "command": "recbench run ...",
            "recbench": recbench.__version__,
            "config": {
                "models": {model: {"id": model, "options": {}} for model in models},
                "dataset": {"name": "synthetic:tiny"},
                "protocols": list(dict.fromkeys(protocol for _, protocol, _ in cells)),
                "seeds": sorted({seed for _, _, seed in cells}),
                "metrics": {
                    metric_id: {"higher_is_better": higher, "per_query": per_query}
                    for metric_id, (higher, per_query) in METRICS.items()
                },
            },
        },
    )
    for (model, protocol, seed), values in cells.items():
        base = {
            "dataset": "synthetic:tiny",
            "model": model,
            "model_label": model,
            "protocol": protocol,
            "seed": seed,
        }
        name = cell_name("synthetic:tiny", model, protocol, seed)
        if values == "failed":
            run_dir.write_cell(name, {**base, "status": "failed", "error": "RuntimeError"}, {})
            continue
        assert isinstance(values, Mapping)
        per_query = {
            metric: np.full(4, value)
            for metric, value in values.items()
            if METRICS[metric.partition("@")[0]][1]
        }
        metrics = {
            metric: {"mean": value, "ci95": None, "n": 4, "per_query": metric in per_query}
            for metric, value in values.items()
        }
        run_dir.write_cell(
            name, {**base, "status": "ok", "n_queries": 4, "metrics": metrics}, per_query
        )
    return run_dir.path


def two_runs(tmp_path: Path, b_values: Mapping[str, float], **a_values: float) -> tuple[Path, Path]:
    """Run A with BASE (updated by ``a_values``), run B with A's values updated by
    ``b_values``; one model, one protocol, one seed."""
    values_a = {**BASE, **{k.replace("_at_", "@"): v for k, v in a_values.items()}}
    a = write_run(tmp_path / "a", {("pop", "half-split", 0): values_a})
    b = write_run(tmp_path / "b", {("pop", "half-split", 0): {**values_a, **b_values}})
    return a, b


def row(comparison: Comparison, metric: str, model: str = "pop") -> ComparisonRow:
    (found,) = [r for r in comparison.rows if r.metric == metric and r.model == model]
    return found


def table(out: str) -> list[list[str]]:
    """The body rows of the markdown table in ``out``, cells stripped."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_runs_are_within_and_exit_0(tmp_path, capsys):
    a, b = two_runs(tmp_path, {})
    comparison = compare(a, b)
    assert not comparison.regressed
    assert {r.mark for r in comparison.rows} == {"~"}
    assert all(r.ratio == pytest.approx(1.0) for r in comparison.rows)
    code, out, err = run_cli(capsys, str(a), str(b))
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[-1].startswith("OK: no regression beyond ×1.05")
    assert ["~", "pop", "half-split", "sps@10 ↑", "0.2000", "0.2000", "1.000"] in table(out)
    assert [r[3] for r in table(out)] == [
        "blockbuster_share@10 ↓",
        "item_coverage@10 ↑",
        "mrr@10 ↑",
        "sps@10 ↑",
    ]
    assert any(line.startswith("Marks: `+` worse") for line in lines)


def test_a_regression_beyond_the_factor_is_marked_and_exits_1(tmp_path, capsys):
    a, b = two_runs(tmp_path, {"sps@10": 0.18})
    comparison = compare(a, b)
    sps = row(comparison, "sps@10")
    assert sps.mark == "+" and sps.regressed
    assert sps.ratio == pytest.approx(0.9)
    assert comparison.regressions == [sps]
    assert row(comparison, "mrr@10").mark == "~"
    code, out, _ = run_cli(capsys, str(a), str(b))
    assert code == 1
    assert ["+", "pop", "half-split", "sps@10 ↑", "0.2000", "0.1800", "0.900"] in table(out)
    assert out.strip().splitlines()[-1].startswith("REGRESSION: 1 regressed beyond ×1.05")


def test_an_improvement_exits_0_and_the_factor_sets_the_threshold(tmp_path, capsys):
    a, b = two_runs(tmp_path, {"sps@10": 0.24, "mrr@10": 0.103})
    comparison = compare(a, b)
    assert row(comparison, "sps@10").mark == "-"
    assert row(comparison, "mrr@10").mark == "~"  # +3% is within 1.05
    assert not comparison.regressed
    assert run_cli(capsys, str(a), str(b))[0] == 0
    assert row(compare(a, b, factor=1.02), "mrr@10").mark == "-"
    assert row(compare(a, b, factor=1.5), "sps@10").mark == "~"


@pytest.mark.parametrize(
    ("value", "mark", "code"),
    [(0.4, "-", 0), (0.6, "+", 1), (0.51, "~", 0)],
)
def test_lower_is_better_metrics_improve_when_they_shrink(tmp_path, capsys, value, mark, code):
    a, b = two_runs(tmp_path, {"blockbuster_share@10": value})
    blockbuster = row(compare(a, b), "blockbuster_share@10")
    assert blockbuster.mark == mark and not blockbuster.higher_is_better
    assert blockbuster.ratio == pytest.approx(value / 0.5)
    assert run_cli(capsys, str(a), str(b))[0] == code


def test_counts_compare_like_rates(tmp_path, capsys):
    a, b = two_runs(tmp_path, {"item_coverage@10": 20.0})
    coverage = row(compare(a, b), "item_coverage@10")
    assert coverage.mark == "+" and coverage.ratio == pytest.approx(20 / 26)
    code, out, _ = run_cli(capsys, str(a), str(b))
    assert code == 1
    assert ["+", "pop", "half-split", "item_coverage@10 ↑", "26", "20", "0.769"] in table(out)


def write_rating_run(path: Path, rmse: float) -> Path:
    """A rating run of ``mf``: config.json lists ``rmse`` only, the cell also holds
    ``rmse_stars``, and both metric entries record their direction as a rating run
    writes them."""
    run_dir = RunDirectory.create(path, resume=False)
    write_json(
        run_dir.path / "config.json",
        {
            "command": "recbench run --protocols rating ...",
            "recbench": recbench.__version__,
            "config": {
                "models": {"mf": {"id": "mf", "options": {}}},
                "dataset": {"name": "ml-100k"},
                "protocols": ["rating"],
                "seeds": [0],
                "metrics": {"rmse": {"higher_is_better": False, "per_query": True}},
            },
        },
    )
    metrics = {
        name: {"mean": value, "ci95": None, "n": 4, "per_query": False, "higher_is_better": False}
        for name, value in {"rmse": rmse, "rmse_stars": rmse * 4}.items()
    }
    cell = {
        "dataset": "ml-100k",
        "model": "mf",
        "model_label": "mf",
        "protocol": "rating",
        "seed": 0,
        "status": "ok",
        "n_queries": 4,
        "metrics": metrics,
    }
    run_dir.write_cell(cell_name("ml-100k", "mf", "rating", 0), cell, {})
    return run_dir.path


def test_the_direction_recorded_in_the_cells_wins(tmp_path, capsys):
    # rmse_stars is not in config.json's metric list: its direction comes from the cells
    a = write_rating_run(tmp_path / "a", rmse=0.20)
    b = write_rating_run(tmp_path / "b", rmse=0.3)
    comparison = compare(a, b)
    for name in ("rmse", "rmse_stars"):
        error = row(comparison, name, model="mf")
        assert not error.higher_is_better
        assert error.mark == "+" and error.regressed  # a larger error is a regression
    code, out, _ = run_cli(capsys, str(a), str(b))
    assert code == 1
    assert ["+", "mf", "rating", "rmse_stars ↓", "0.8000", "1.2000", "1.500"] in table(out)
    assert row(compare(b, a), "rmse_stars", model="mf").mark == "-"


@pytest.mark.parametrize(
    ("metric", "a_value", "b_value", "mark", "ratio"),
    [
        ("sps@10", 0.0, 0.1, "-", None),  # 0 -> positive, higher is better
        ("sps@10", 0.0, 0.0, "~", None),
        ("sps@10", 0.1, 0.0, "+", 0.0),
        ("blockbuster_share@10", 0.0, 0.2, "+", None),  # 0 -> positive, lower is better
        ("blockbuster_share@10", 0.2, 0.0, "-", 0.0),
    ],
)
def test_zero_values(tmp_path, metric, a_value, b_value, mark, ratio):
    a, b = two_runs(tmp_path, {metric: b_value}, **{metric.replace("@", "_at_"): a_value})
    comparison = compare(a, b)
    found = row(comparison, metric)
    assert found.mark == mark and found.ratio == ratio
    assert comparison.regressed == (mark == "+")
    arrow = "↑" if found.higher_is_better else "↓"
    (shown,) = [r for r in table(comparison.to_markdown()) if r[3] == f"{metric} {arrow}"]
    assert shown[0] == mark and shown[6] == ("n/a" if ratio is None else "0.000")


def test_a_nan_value_is_not_compared(tmp_path):
    a, b = two_runs(tmp_path, {"blockbuster_share@10": float("nan")})
    found = row(compare(a, b), "blockbuster_share@10")
    assert found.mark == "!" and not found.regressed


def test_means_over_the_seeds_both_runs_finished(tmp_path, capsys):
    cell = ("pop", "half-split")
    a = write_run(
        tmp_path / "a",
        {(*cell, 0): {"sps@10": 0.2}, (*cell, 1): {"sps@10": 0.4}, (*cell, 2): {"sps@10": 0.9}},
    )
    b = write_run(
        tmp_path / "b",
        {(*cell, 0): {"sps@10": 0.3}, (*cell, 1): {"sps@10": 0.3}, (*cell, 2): "failed"},
    )
    comparison = compare(a, b)
    failed = row(comparison, ALL_METRICS)
    assert failed.mark == "x" and failed.regressed and failed.note_b == "failed (seed 2)"
    sps = row(comparison, "sps@10")
    assert sps.a == pytest.approx(0.3) and sps.b == pytest.approx(0.3) and sps.mark == "~"
    assert "seeds 0, 1, 2; B: seeds 0, 1" in comparison.to_markdown()
    code, out, _ = run_cli(capsys, str(a), str(b))
    assert code == 1
    assert ["x", "pop", "half-split", "(all)", "finished", "failed (seed 2)", "n/a"] in table(out)


def test_failures_and_missing_cells(tmp_path, capsys):
    good = {"sps@10": 0.2}
    a = write_run(
        tmp_path / "a",
        {
            ("pop", "half-split", 0): good,
            ("lstm", "half-split", 0): good,
            ("gru", "half-split", 0): "failed",
            ("mlstm", "half-split", 0): "failed",
            ("sknn", "half-split", 0): good,
        },
    )
    b = write_run(
        tmp_path / "b",
        {
            ("pop", "half-split", 0): good,
            ("lstm", "half-split", 0): "failed",  # newly failed: a regression
            ("gru", "half-split", 0): "failed",  # still failing: not one
            ("mlstm", "half-split", 0): good,  # fixed
            ("markov", "half-split", 0): good,  # new in B
        },
    )
    comparison = compare(a, b)
    marks = {(r.model, r.metric): (r.mark, r.regressed) for r in comparison.rows}
    assert marks == {
        ("pop", "sps@10"): ("~", False),
        ("lstm", ALL_METRICS): ("x", True),
        ("gru", ALL_METRICS): ("x", False),
        ("mlstm", ALL_METRICS): ("-", False),
        ("sknn", ALL_METRICS): ("!", False),
        ("markov", ALL_METRICS): ("!", False),
    }
    # A's models first, in the order of A's config.json, then the ones new in B
    assert [r.model for r in comparison.rows] == ["gru", "lstm", "mlstm", "pop", "sknn", "markov"]
    code, out, _ = run_cli(capsys, str(a), str(b), "--only-changed")
    assert code == 1
    shown = table(out)
    assert [r[1] for r in shown] == ["gru", "lstm", "mlstm", "sknn", "markov"]  # no pop
    assert ["!", "sknn", "half-split", "(all)", "–", "not in B", "n/a"] in shown
    assert ["!", "markov", "half-split", "(all)", "not in A", "–", "n/a"] in shown
    assert out.splitlines()[-1] == (
        "REGRESSION: 1 failed in B; 1 improved, 1 within the factor, 1 still failing, "
        "2 not compared."
    )


def test_a_metric_in_one_run_only_is_not_compared(tmp_path):
    a = write_run(tmp_path / "a", {("pop", "half-split", 0): {"sps@10": 0.2}})
    b = write_run(tmp_path / "b", {("pop", "half-split", 0): {"sps@10": 0.2, "mrr@10": 0.1}})
    mrr = row(compare(a, b), "mrr@10")
    assert mrr.mark == "!" and mrr.a is None and mrr.note_a == "missing"


def test_filters_by_metric_and_protocol(tmp_path, capsys):
    values = {**BASE, "sps@20": 0.3, "mrr@20": 0.2}
    cells = {("pop", p, 0): values for p in ("half-split", "iterative")}
    a = write_run(tmp_path / "a", cells)
    b = write_run(tmp_path / "b", cells)
    by_id = compare(a, b, metrics=["sps"], protocols=["iterative"])
    assert [(r.protocol, r.metric) for r in by_id.rows] == [
        ("iterative", "sps@10"),
        ("iterative", "sps@20"),
    ]
    by_name = compare(a, b, metrics=["sps@20", "mrr"])
    assert [r.metric for r in by_name.rows] == ["mrr@10", "mrr@20", "sps@20"] * 2
    code, out, _ = run_cli(
        capsys, str(a), str(b), "--metrics", "mrr@20", "--protocol", "half-split"
    )
    assert code == 0 and out.count("| ~ ") == 1


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recbench: error: ")
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--factor", "1"], "the factor must be a number above 1, got 1.0"),
        (["--factor", "0.5"], "the factor must be a number above 1"),
        (["--factor", "nan"], "the factor must be a number above 1"),
        (["--factor", "big"], "invalid float value: 'big'"),
        (
            ["--metrics", "spss"],
            "metric 'spss' is in neither run (in --metrics): did you mean 'sps'",
        ),
        (["--protocol", "last-item"], "protocol 'last-item' is in neither run"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, message):
    a, b = two_runs(tmp_path, {})
    code, out, err = run_cli(capsys, str(a), str(b), *args)
    assert code == 2 and out == ""
    assert message in only_line(err)


def test_not_a_run_directory_and_no_common_cells(tmp_path, capsys):
    a = write_run(tmp_path / "a", {("pop", "half-split", 0): BASE})
    code, _, err = run_cli(capsys, str(a), str(tmp_path / "nothing"))
    assert code == 2 and "not a recbench run directory" in only_line(err)
    b = write_run(tmp_path / "b", {("lstm", "half-split", 0): BASE})
    code, _, err = run_cli(capsys, str(a), str(b))
    assert code == 2 and "the two runs share no (model, protocol) cell" in only_line(err)
    with pytest.raises(ConfigError, match="share no"):
        compare(a, b)


def test_compares_real_runs(settings, tmp_path, capsys):
    kwargs = {
        "dataset": "synthetic:tiny",
        "protocols": ["half-split"],
        "overrides": ["export.enabled=false"],
        "settings": settings,
    }
    a = recbench.run(models=["pop"], out=tmp_path / "a", **kwargs).path
    b = recbench.run(models=["pop", "markov"], out=tmp_path / "b", **kwargs).path
    comparison = compare(a, b)
    pop = [r for r in comparison.rows if r.model == "pop"]
    assert pop and {r.mark for r in pop} == {"~"}  # the same seed gives the same results
    assert {r.metric for r in pop} >= {"sps@10", "item_coverage@20", "blockbuster_share@10"}
    assert not row(comparison, "blockbuster_share@10").higher_is_better
    assert row(comparison, ALL_METRICS, model="markov").mark == "!"
    code, out, _ = run_cli(capsys, str(a), str(b))
    assert code == 0 and out.strip().splitlines()[-1].startswith("OK: no regression")


def test_compares_real_rating_runs(settings, tmp_path):
    kwargs = {"dataset": "synthetic:tiny", "protocols": ["rating"], "settings": settings}
    a = recbench.run(models=["mean"], out=tmp_path / "a", **kwargs).path
    b = recbench.run(models=["mean"], out=tmp_path / "b", **kwargs).path
    rows = {r.metric: r for r in compare(a, b).rows}
    assert set(rows) == {"rmse", "mae", "rmse_stars", "mae_stars"}
    assert not any(r.higher_is_better for r in rows.values())  # errors: lower is better
    assert {r.mark for r in rows.values()} == {"~"}


def test_runs_with_different_setups_get_a_one_line_warning(tmp_path, capsys):
    a, b = two_runs(tmp_path, {})
    config = recbench.results.read_json(b / "config.json")
    config["config"]["split"] = {"method": "users", "test": 0.2}
    config["config"]["preprocess"] = {"min_item_pop": 10}
    write_json(b / "config.json", config)
    code, out, err = run_cli(capsys, str(a), str(b))
    assert code == 0  # the exit status still says only whether anything regressed
    (warning,) = err.splitlines()
    assert warning.startswith("recbench: warning: the runs differ in what they measure on")
    assert (
        "split.method: None → users" in warning and "preprocess.min_item_pop: None → 10" in warning
    )
    assert "| pop" in out
    code, _, err = run_cli(capsys, str(a), str(a))
    assert code == 0 and err == ""
