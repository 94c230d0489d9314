"""What a first-time user meets on the command line: ``recbench show``, ``export`` on an
exported run, ``run --threads``, and where the Python API writes a run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import torch

import recbench
from recbench import cli
from recbench.report.plugin_options import documented_options, option_rows, type_text

TINY = "synthetic:tiny"


def test_show_prints_a_models_options_with_type_default_and_help(env, capsys):
    assert cli.main(["show", "itemknn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model itemknn: ")
    lines = out.splitlines()
    at = lines.index("  neighbors: int = 100")
    assert lines[at + 1].strip().startswith("Similar items kept per item")
    assert "Options (-o itemknn.KEY=VALUE):" in lines
    assert "  step_weighting: one of same, div, linear, log, quadratic = 'div'" in lines


def test_show_finds_every_kind_and_inherited_help(env, capsys):
    for name, kind in (("bpr", "loss"), ("synthetic", "dataset"), ("sps", "metric")):
        assert cli.main(["show", name]) == 0
        assert capsys.readouterr().out.startswith(f"{kind} {name}")
    assert cli.main(["show", "lstm"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index("  epochs: int = 40")  # the trainer's option, documented by the trainer
    assert lines[at + 1].strip() == "The most passes over the training sequences."


def test_show_of_an_unknown_name_is_one_line_with_close_matches(env, capsys):
    assert cli.main(["show", "lstn"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'lstm'" in err


@dataclass(frozen=True)
class _Base:
    """The base.

    a, b:
        Shared words
        on two lines.
    """

    a: int = 1
    b: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Options(_Base):
    """Options with prose: not an option.

    b : tuple
        Documented again here.
    c:
        Not an option of the class and so ignored.
    """

    c: float | None = field(default=None, metadata={"help": "from the metadata"})
    d: str = "x"


def test_option_help_comes_from_metadata_then_docstrings_nearest_first():
    rows = {name: (kind, default, text) for name, kind, default, text in option_rows(_Options)}
    assert rows["a"] == ("int", "1", "Shared words on two lines.")
    assert rows["b"] == ("tuple[int, ...]", "()", "Documented again here.")
    assert rows["c"] == ("float | None", "None", "from the metadata")
    assert rows["d"] == ("str", "'x'", "")
    assert documented_options("Prose: words.\n\nx:\n    y", {"x"}) == {"x": "y"}


def test_type_text_names_choices():
    from typing import Literal

    assert type_text(Literal["adam", "adagrad"]) == "one of adam, adagrad"


def test_export_of_an_exported_run_says_there_is_nothing_to_do(env, tmp_path, capsys):
    out = tmp_path / "run"
    recbench.run(
        models=["pop"],
        dataset=TINY,
        protocols=["last-item"],
        out=out,
        settings=env,
        overrides=["export.repeats=5", "export.batch_repeats=2", "export.max_seconds=0.05"],
    )
    before = (out / "latency" / "pop__seed0.json").read_text()
    assert cli.main(["export", str(out), "--quiet"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Nothing to export: every finished model of")
    assert "--force re-exports" in line
    assert (out / "latency" / "pop__seed0.json").read_text() == before


def test_run_threads_sets_torch_threads_and_records_them(env, tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        code = cli.main(
            [
                "run",
                "--models",
                "pop",
                "--dataset",
                TINY,
                "--protocols",
                "last-item",
                "--no-export",
                "--quiet",
                "--threads",
                "2",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        assert code == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert environment["torch_threads"] == 2
    assert cli.main(["run", "--models", "pop", "--dataset", TINY, "--threads", "0"]) == 2
    assert "--threads takes a positive integer" in capsys.readouterr().err


def test_the_api_says_where_it_writes_without_out(settings, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="recbench"):
        result = recbench.run(
            models=["pop"],
            dataset=TINY,
            protocols=["last-item"],
            settings=settings,
            overrides=["export.enabled=false"],
            report=False,
        )
    (record,) = [r for r in caplog.records if r.name == "recbench.api"]
    assert "writing the run directory to runs" in record.getMessage()
    assert str(result.path) in record.getMessage() and (tmp_path / result.path).is_dir()
