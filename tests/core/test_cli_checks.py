"""The command line's checks of run arguments and of data: one line and exit status 2 for a
mistake, exit status 0 and a visible warning for usable data with a problem; ``--config``
holding every setting (the README's example runs); ``recbench check``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recbench import cli

TINY = "synthetic:tiny"
README = Path(__file__).resolve().parents[2] / "README.md"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, stderr: str) -> str:
    """The error line, after checking exit status 2, one line and no traceback."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("recbench: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def write_events(path: Path, rows: list[tuple[int, int, int, int]]) -> Path:
    path.write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows))
    return path


def events(users: int = 30, per_user: int = 6) -> list[tuple[int, int, int, int]]:
    return [
        (user, 1 + (user * 3 + step * 7) % 40, 4, 1_600_000_000 + user * 100 + step)
        for user in range(users)
        for step in range(per_user)
    ]


# -- run arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0,0"], "seed 0 is listed twice"),
        (["--seeds", "-1"], "seeds are non-negative integers, got -1"),
        (["--cutoffs", "10,10"], "cutoff 10 is listed twice"),
        (["--cutoffs", "10,100000"], "cutoff 100000 is longer than the catalogue"),
    ],
)
def test_bad_seeds_and_cutoffs_are_one_line(env, tmp_path, capsys, args, message):
    code, _, stderr = run_cli(
        capsys, "run", "--models", "pop", "--dataset", TINY, "--out", str(tmp_path / "r"), *args
    )
    assert message in one_line_error(code, stderr)
    assert not (tmp_path / "r" / "cells").exists()


def test_a_cutoff_beyond_the_catalogue_names_the_number_of_items(env, tmp_path, capsys):
    code, _, stderr = run_cli(
        capsys, "check", TINY, "--cutoffs", "100000", "--quiet", "-o", "preprocess.min_item_pop=1"
    )
    line = one_line_error(code, stderr)
    items = re.search(r"has ([\d,]+) items after preprocessing", line)
    assert items is not None and f"use cutoffs of at most {items.group(1)}" in line


def test_no_models_anywhere_is_one_line(env, tmp_path, capsys):
    code, _, stderr = run_cli(capsys, "run", "--dataset", TINY)
    assert "no model given" in one_line_error(code, stderr)
    code, _, stderr = run_cli(capsys, "run", "--models", "pop")
    assert "no dataset given" in one_line_error(code, stderr)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('seeds = ["a"]', "config key 'seeds' must be a list of non-negative integers"),
        ("seeds = [-1]", "config key 'seeds' must be a list of non-negative integers"),
        ("seeds = [0, 0]", "seed 0 is listed twice"),
        ("cutoffs = [0]", "config key 'cutoffs' must be a list of positive integers"),
        ("n_seeds = 0", "config key 'n_seeds' must be a positive integer"),
        ("seeds = [0]\nn_seeds = 2", "sets both seeds and n_seeds"),
        ("models = 3", "config key 'models' must be a list of names"),
        ("quiet = 1", "config key 'quiet' must be true or false"),
        ("modles = ['pop']", "unknown key 'modles'"),
        ("models = [", "not valid TOML"),
    ],
)
def test_config_file_mistakes_are_one_line(env, tmp_path, capsys, text, message):
    config = tmp_path / "bench.toml"
    config.write_text(f'dataset = "{TINY}"\n{text}\n')
    code, _, stderr = run_cli(capsys, "run", "--models", "pop", "--config", str(config))
    line = one_line_error(code, stderr)
    assert message in line
    if "config key" in message or "unknown key" in message:
        assert str(config) in line


def test_the_config_file_may_hold_every_setting_and_flags_win(env, tmp_path, capsys, one_thread):
    config = tmp_path / "bench.toml"
    config.write_text(
        f'models = "pop"\ndataset = "{TINY}"\nprotocols = ["half-split"]\nn_seeds = 2\n'
        'cutoffs = [5]\nmetrics = ["sps"]\norder_check = "off"\nno_export = true\nquiet = true\n'
        f'out = "{tmp_path / "from-file"}"\n[options.split]\ntest = 0.2\n'
    )
    code, _, stderr = run_cli(capsys, "run", "--config", str(config))
    assert code == 0, stderr
    stored = json.loads((tmp_path / "from-file" / "config.json").read_text())["config"]
    assert stored["seeds"] == [0, 1] and stored["cutoffs"] == [5]
    assert list(stored["models"]) == ["pop"] and list(stored["metrics"]) == ["sps"]
    assert stored["protocols"] == ["half-split"] and stored["split"]["test"] == 0.2
    assert stored["export"]["enabled"] is False
    out = tmp_path / "from-flags"
    code, _, stderr = run_cli(
        capsys,
        "run",
        "--config",
        str(config),
        "--seeds",
        "3",
        "--cutoffs",
        "7",
        "--out",
        str(out),
        "-o",
        "split.test=0.3",
    )
    assert code == 0, stderr
    stored = json.loads((out / "config.json").read_text())["config"]
    assert stored["seeds"] == [3] and stored["cutoffs"] == [7] and stored["split"]["test"] == 0.3


def test_models_may_choose_some_of_a_config_files_models(env, tmp_path, capsys):
    """The options of the file's other models are left out (a tuned.toml holds every
    tuned model); options for a model named nowhere are still refused."""
    config = tmp_path / "tuned.toml"
    config.write_text(
        f'models = ["pop", "itemknn"]\ndataset = "{TINY}"\nprotocols = ["last-item"]\n'
        "no_export = true\n[options.itemknn]\nneighbors = 7\n"
    )
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        capsys, "run", "--config", str(config), "--models", "pop", "--out", str(out)
    )
    assert code == 0, stderr
    assert list(json.loads((out / "config.json").read_text())["config"]["models"]) == ["pop"]
    config.write_text(config.read_text() + "[options.itemknm]\nneighbors = 7\n")
    code, _, stderr = run_cli(capsys, "run", "--config", str(config), "--models", "pop")
    assert "options given for 'itemknm', which is not part of this run" in one_line_error(
        code, stderr
    )


def test_the_readme_config_example_runs(env, tmp_path, capsys, monkeypatch, one_thread):
    blocks = re.findall(r"```toml\n(# bench\.toml\n.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "README.md shows one bench.toml example"
    (tmp_path / "bench.toml").write_text(blocks[0])
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, "run", "--config", "bench.toml", "--quiet")
    assert code == 0, stderr
    run_dir = tmp_path / "runs" / "bench-tiny"
    assert (run_dir / "report.md").is_file() and "Report:" in stdout
    stored = json.loads((run_dir / "config.json").read_text())["config"]
    assert stored["model_order"] == ["pop", "itemknn", "sr"] and stored["seeds"] == [0, 1]


# -- usable data with a problem: exit 0, a warning in the output, dataset.json, the report --


def test_warnings_about_the_data_reach_dataset_json_and_the_report(env, tmp_path, capsys):
    rows = events()
    rows.append(rows[3])  # one duplicate event
    ms_rows = [(u, i, r, t * 1_000) for u, i, r, t in rows]
    path = write_events(tmp_path / "events.csv", ms_rows)
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        capsys,
        "run",
        "--models",
        "pop",
        "--dataset",
        f"file:{path}",
        "--out",
        str(out),
        "--no-export",
        "-o",
        "preprocess.min_item_pop=1",
    )
    assert code == 0, stderr
    assert "warning: events.csv: timestamps taken as milliseconds" in stderr
    assert "warning: 1 duplicate event" in stderr
    warnings = json.loads((out / "dataset.json").read_text())["warnings"]
    assert len(warnings) == 2 and "converted to seconds" in warnings[0]
    report = (out / "report.md").read_text()
    assert "Warnings about the data:" in report and "1 duplicate event (same user" in report


def test_data_without_problems_records_no_warnings(env, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        capsys, "run", "--models", "pop", "--dataset", TINY, "--out", str(out), "--no-export"
    )
    assert code == 0, stderr
    assert "warnings" not in json.loads((out / "dataset.json").read_text())
    assert "Warnings about the data" not in (out / "report.md").read_text()


# -- recbench check ---------------------------------------------------------------------------


def test_check_prints_statistics_splits_and_warnings_and_trains_nothing(
    env, tmp_path, capsys, monkeypatch
):
    rows = events()
    rows.append(rows[3])
    path = write_events(tmp_path / "events.csv", rows)
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(
        capsys, "check", f"file:{path}", "-o", "preprocess.min_item_pop=1", "--seeds", "0,1"
    )
    assert code == 0, stderr
    assert "events.csv: no header (line 1 is data)" in stderr
    assert "users" in stdout and "30" in stdout and "raw events" in stdout
    assert "Split (seed 0, ranking)" in stdout and "Split (seed 1, ranking)" in stdout
    assert "exclude_seen=off" in stdout  # the kept duplicate turns exclusion off
    assert "1 warning(s) about the data:" in stdout and "1 duplicate event" in stdout
    assert not (tmp_path / "runs").exists()
    code, stdout, _ = run_cli(
        capsys,
        "check",
        f"file:{path}",
        "-o",
        "preprocess.min_item_pop=1",
        "-o",
        "preprocess.duplicates=drop",
        "--quiet",
    )
    assert code == 0 and "exclude_seen=on" in stdout and "dropped" in stdout


def test_check_of_clean_data_says_so(env, capsys):
    code, stdout, stderr = run_cli(capsys, "check", TINY, "--quiet")
    assert code == 0, stderr
    assert "No warnings about the data." in stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,10,4,1000\nNA,10,4,1001\n", "non-numeric user id 'NA' at line 2"),
        ("1,10,4,1000\n99999999999999999999,10,4,1001\n", "does not fit a 64-bit integer"),
        ("1,10,4,1000\n2,10,inf,1001\n", "rating 'inf' at line 2 is not a finite number"),
        ("1,10,4,1000\n2,10,-3,1001\n", "negative rating '-3' at line 2"),
        ('{"user": 1, "item": 10}\n', "looks like JSON lines"),
    ],
)
def test_check_reports_malformed_data_in_one_line(env, tmp_path, capsys, text, message):
    path = tmp_path / "events.csv"
    path.write_text(text)
    code, _, stderr = run_cli(capsys, "check", f"file:{path}", "--quiet")
    assert message in one_line_error(code, stderr)


def test_check_takes_the_dataset_from_the_config_file(env, tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f'models = ["pop"]\ndataset = "{TINY}"\nseeds = [0, 1, 2]\n')
    code, stdout, stderr = run_cli(capsys, "check", "--config", str(config), "--quiet")
    assert code == 0, stderr
    assert stdout.count("Split (seed") == 3
