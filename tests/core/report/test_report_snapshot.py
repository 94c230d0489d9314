"""The report rendered from a fixed set of result files: byte for byte, in the documented
order, with significance marks, the option sweep, the order check and the failures.

The fixture ``fixtures/report-run`` is a real run on ``synthetic:tiny`` (two seeds; pop,
two itemknn variants, sr, and an lstm sweep whose huge learning rate diverges), kept
without its checkpoints, ONNX files and tracebacks. After an intended change to the
report, regenerate the expected text with::

    RECBENCH_UPDATE_SNAPSHOT=1 pytest tests/core/report/test_report_snapshot.py
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from recbench.api import write_report
from recbench.report.render import render
from recbench.results import RunDirectory

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "report-run"
EXPECTED = Path(__file__).resolve().parents[2] / "fixtures" / "report-run.md"


def test_the_report_matches_the_snapshot():
    text = render(RunDirectory.open(FIXTURE))
    if os.environ.get("RECBENCH_UPDATE_SNAPSHOT"):
        EXPECTED.write_text(text)
    assert text == EXPECTED.read_text()
    assert render(RunDirectory.open(FIXTURE)) == text


def test_sections_come_in_the_documented_order():
    text = render(RunDirectory.open(FIXTURE))
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == [
        "Environment",
        "Dataset",
        "Protocol",
        "Results: half-split",
        "Results: iterative",
        "Option sweeps",
        "Order check",
        "Timing",
        "Latency",
        "Failures",
    ]
    title, summary = text.splitlines()[0], text.splitlines()[2]
    assert title == "# recbench report: synthetic:tiny"
    assert summary.startswith("Under half-split, **sr** leads on sps@10")
    assert "Holm-adjusted paired Wilcoxon" in summary


def test_tables_follow_the_run_order_and_mark_significance():
    text = render(RunDirectory.open(FIXTURE))
    table = text.split("## Results: iterative")[1].split("### @20")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "pop",
        "itemknn[neighbors=5]",
        "itemknn[neighbors=50]",
        "sr",
        "lstm[learning_rate=0.01]",
    ]
    headers = rows[0]
    assert headers == "model"
    lstm = next(line for line in table.splitlines() if line.startswith("| lstm"))
    # far below the best baseline (sr) on hundreds of queries: marked against both
    assert "†‡" in lstm.split("|")[2]
    sr = next(line for line in table.splitlines() if line.startswith("| sr"))
    assert "**" in sr.split("|")[2] and "†" not in sr.split("|")[2]
    assert "Wilcoxon signed-rank" in text and "Holm-corrected" in text


def test_a_report_written_elsewhere_links_its_figures_from_there(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    target = tmp_path / "reports" / "tiny.md"
    target.parent.mkdir()
    write_report(RunDirectory.open(run), target)
    text = target.read_text()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "](" not in text
        return
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert link.startswith("tiny-figures/")
        assert (target.parent / link).is_file()
    assert "tiny-figures/metric-curves.png" in text


def test_a_model_missing_a_seed_is_named(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    for path in (run / "cells").glob("synthetic-tiny__sr__*__seed1.*"):
        path.unlink()  # as if the run was stopped before sr's second seed
    text = render(RunDirectory.open(run))
    assert "- **Not every model finished every seed**: sr seed 0 (of 0, 1)" in text
    assert "Results over 2 seeds" in text


def test_what_a_reader_could_misread_is_said_in_words():
    text = render(RunDirectory.open(FIXTURE))
    # the order check's verdict follows every metric of its table, not only the first
    check = text.split("## Order check")[1].split("## Timing")[0]
    assert "| lstm[learning_rate=0.01] | iterative  | 460       | recall@10 |" in check
    assert "- **iterative**: the model does better without order on recall@10" in check
    # iterative has one target per query: the duplicated columns are said to be so
    iterative = next(line for line in text.splitlines() if line.startswith("- **iterative**"))
    assert "hit@k equals sps@k and precision@k is sps@k / k" in iterative
    # two seeds: every table says how little its t intervals mean, and explains ± 0
    results = text.split("## Results: half-split")[1].split("## Option sweeps")[0]
    assert results.count("With 2 seeds, ± is a Student t interval") == 4
    assert "± 0.0000" not in text and "± 0:" in results
    assert "| 28 ± 19 " in results  # a count: no decimals
