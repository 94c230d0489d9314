"""A k-fold run end to end: every user tested once per seed, cells per fold, the report
pooling the folds' queries, resume, and the options a k-fold run refuses."""

from __future__ import annotations

import numpy as np
import pytest

import recbench
from recbench import cli
from recbench.report.intervals import format_half_width, format_mean
from recbench.report.render import render
from recbench.results import RunDirectory
from recbench.stats.summary import summarize

TINY = "synthetic:tiny"
FOLDS = 3


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    from recbench.config.settings import Settings

    root = tmp_path_factory.mktemp("kfold")
    settings = Settings(data_root=root / "data", cache_root=root / "cache", offline=True)
    result = recbench.run(
        models=["pop", "itemknn"],
        dataset=TINY,
        protocols=["half-split"],
        options={"split": {"method": "kfold", "folds": FOLDS}},
        out=root / "run",
        settings=settings,
    )
    return result, settings


def test_every_user_is_tested_once_across_the_folds(kfold_run):
    result, _ = kfold_run
    cells = [c for c in RunDirectory.open(result.path).cells() if c["model_label"] == "pop"]
    assert sorted(c["fold"] for c in cells) == list(range(FOLDS))
    assert all(c["seed"] == 0 and c["status"] == "ok" for c in cells)
    n_users = sum(c["split"]["test_users"] for c in cells)
    assert all(
        c["split"]["train_users"] + c["split"]["valid_users"] + c["split"]["test_users"] == n_users
        for c in cells
    )
    assert sorted(c["split"]["test_users"] for c in cells) == sorted(
        [n_users // FOLDS + (i < n_users % FOLDS) for i in range(FOLDS)]
    )


def test_the_report_pools_the_queries_of_every_fold(kfold_run):
    result, _ = kfold_run
    run_dir = RunDirectory.open(result.path)
    cells = {
        (c["model_label"], c["fold"]): c for c in run_dir.cells() if c["protocol"] == "half-split"
    }
    n_queries = sum(cells[("pop", f)]["n_queries"] for f in range(FOLDS))
    n_users = sum(cells[("pop", f)]["n_users"] for f in range(FOLDS))
    text = render(run_dir)
    assert f"{n_queries:,} queries from {n_users:,} test users (seed 0, {FOLDS} folds)." in text
    assert "seeds and folds pooled" in text and f"into {FOLDS} folds" in text
    # the table's mean is over every query of every fold
    pooled = np.concatenate([run_dir.per_query(cells[("pop", f)])["sps@10"] for f in range(FOLDS)])
    summary = summarize(pooled)
    shown = f"{format_mean(summary.mean, summary.ci95)} {format_half_width(summary.ci95)}"
    pop_row = next(line for line in text.splitlines() if line.startswith("| pop "))
    assert pop_row.split("|")[2].strip().startswith(shown)
    # the paired test and its minimum detectable difference pair the folds' test users
    # (half-split: one query per user)
    line = next(line for line in text.splitlines() if line.startswith("Minimum detectable"))
    assert n_users == n_queries
    assert f"{n_users:,} paired users" in line and "between itemknn and pop" in line


def test_a_resumed_kfold_run_skips_its_finished_folds(kfold_run, capsys):
    result, settings = kfold_run
    before = {p.name: p.stat().st_mtime_ns for p in (result.path / "cells").glob("*.json")}
    recbench.run(
        models=["pop", "itemknn"],
        dataset=TINY,
        protocols=["half-split"],
        options={"split": {"method": "kfold", "folds": FOLDS}},
        out=result.path,
        resume=True,
        settings=settings,
    )
    after = {p.name: p.stat().st_mtime_ns for p in (result.path / "cells").glob("*.json")}
    assert after == before
    assert any(name.endswith("__seed0__fold2.json") for name in after)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "split.method=kfold", "-o", "split.folds=1"], "needs at least 2 folds"),
        (
            ["-o", "split.method=kfold", "-o", "split.folds=100000"],
            "the kfold split has 100000 folds but the data has only",
        ),
        (
            ["-o", "split.method=kfold", "-o", "split.test=0.2"],
            "split option 'test' does not apply to the kfold split",
        ),
        (["-o", "split.folds=3"], "split option 'folds' applies to the kfold split, not 'users'"),
        (
            ["--protocols", "rating", "-o", "split.method=kfold"],
            "options of section 'split' do not apply to the rating protocol",
        ),
    ],
)
def test_kfold_user_errors_are_one_line_with_exit_code_2(env, tmp_path, capsys, args, message):
    model = "mean" if "rating" in args else "pop"
    out = tmp_path / "run"
    code = cli.main(
        ["run", "--models", model, "--dataset", TINY, "--out", str(out), "--quiet", *args]
    )
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recbench: error: ")
    assert message in lines[0]
    assert not out.exists()


def test_compare_refuses_a_kfold_run_in_one_line(kfold_run, capsys):
    result, _ = kfold_run
    code = cli.main(["compare", str(result.path), str(result.path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "compare does not read k-fold runs" in lines[0]
