"""The report's shared sections and its task lookup: the models' changed options and loss,
the skipped plugins, and one set of report sections per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recbench.errors import DataError
from recbench.report.render import TASK_SECTIONS, render
from recbench.results import RunDirectory
from recbench.tasks.catalog import TASKS

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "report-run"


def fixture_copy(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def test_every_task_has_report_sections():
    assert set(TASK_SECTIONS) == {task.name for task in TASKS}


def test_the_models_section_shows_changed_options_and_the_loss(tmp_path):
    run = fixture_copy(tmp_path)
    assert "## Models" not in render(RunDirectory.open(run))  # stored without the defaults

    def add_defaults(config_file):
        config = config_file["config"]
        lstm = dict(config["models"]["lstm[learning_rate=0.01]"]["options"])
        lstm.update(learning_rate=0.001, epochs=30)
        itemknn = dict(config["models"]["itemknn[neighbors=5]"]["options"], neighbors=100)
        config["model_defaults"] = {
            "lstm": lstm,
            "itemknn": itemknn,
            "pop": {},
            "sr": dict(config["models"]["sr"]["options"]),
        }

    edit_json(run / "config.json", add_defaults)
    text = render(RunDirectory.open(run))
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings.index("## Models") == headings.index("## Protocol") + 1
    section = text.split("## Models")[1].split("\n## ")[0]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| model")
    }
    assert rows["lstm[learning_rate=0.01]"] == ["adaptive_hinge", "epochs=2, learning_rate=0.01"]
    assert rows["itemknn[neighbors=5]"] == ["–", "neighbors=5"]
    assert rows["pop"] == rows["sr"] == ["–", "defaults"]


def test_skipped_plugins_are_listed_only_when_there_are_some(tmp_path):
    run = fixture_copy(tmp_path)
    assert "Skipped plugins" not in render(RunDirectory.open(run))
    failure = "plugin 'foo' from recbench-foo was skipped: cannot import name 'x' from 'y'"
    edit_json(run / "environment.json", lambda env: env.update(plugin_failures=[failure]))
    text = render(RunDirectory.open(run))
    environment = text.split("## Environment")[1].split("\n## ")[0]
    assert f"  - {failure}" in environment.splitlines()


def test_a_run_of_an_unknown_task_is_a_data_error(tmp_path):
    run = fixture_copy(tmp_path)
    edit_json(run / "config.json", lambda config_file: config_file["config"].update(task="x"))
    with pytest.raises(DataError, match="task 'x'"):
        render(RunDirectory.open(run))
