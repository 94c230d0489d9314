"""Option sweeps: expansion rules, run cells per variant, and the report's sweep table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

import recbench
from recbench.config.sweep import expand
from recbench.errors import ConfigError
from recbench.results import RunDirectory


@dataclass(frozen=True)
class Options:
    mixtures: int = 1
    rate: float = 0.1
    tied: bool = True
    cell: Literal["lstm", "gru"] = "lstm"
    depth: int | None = None
    loss_options: str = ""
    cutoffs: tuple[int, ...] = (10,)


def test_no_sweep_is_one_variant_labelled_with_the_id():
    [variant] = expand("moc", Options, {"mixtures": "4", "loss_options": "a=1,b=2"})
    assert variant.label == "moc"
    assert variant.swept == {}
    assert variant.values == {"mixtures": "4", "loss_options": "a=1,b=2"}


def test_commas_sweep_one_value_options_and_keep_the_others():
    variants = expand("moc", Options, {"mixtures": "1,2,4,8", "loss_options": "a=1,b=2"})
    assert [v.label for v in variants] == [
        "moc[mixtures=1]",
        "moc[mixtures=2]",
        "moc[mixtures=4]",
        "moc[mixtures=8]",
    ]
    assert [v.values["mixtures"] for v in variants] == ["1", "2", "4", "8"]
    assert all(v.values["loss_options"] == "a=1,b=2" for v in variants)


def test_several_sweeps_run_every_combination_in_order():
    variants = expand("m", Options, {"tied": "true,false", "cell": "lstm, gru", "depth": "1,2"})
    assert len(variants) == 8
    assert variants[0].label == "m[tied=true,cell=lstm,depth=1]"
    assert variants[-1].swept == {"tied": "false", "cell": "gru", "depth": "2"}


def test_bar_sweeps_string_and_tuple_options():
    variants = expand("m", Options, {"loss_options": "a=1,b=2|a=3", "cutoffs": "5,10|20"})
    assert [v.values["loss_options"] for v in variants[::2]] == ["a=1,b=2", "a=3"]
    assert [v.values["cutoffs"] for v in variants[:2]] == ["5,10", "20"]


def test_lists_from_a_config_file_sweep_and_one_element_lists_do_not():
    variants = expand("m", Options, {"mixtures": [1, 2], "rate": [0.5], "cutoffs": [5, 10]})
    assert [v.label for v in variants] == ["m[mixtures=1]", "m[mixtures=2]"]
    assert variants[0].values["rate"] == 0.5
    assert variants[0].values["cutoffs"] == [5, 10]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mixtures": "1,2,1"}, "lists 1 more than once"),
        ({"mixtures": "1,,2"}, "empty value"),
        ({"mixtures": []}, "has no value"),
    ],
)
def test_bad_sweeps_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        expand("m", Options, values)


def test_a_swept_run_has_a_cell_per_variant_and_a_sweep_table(settings, tmp_path):
    result = recbench.run(
        models=["pop", "itemknn"],
        dataset="synthetic:tiny",
        protocols=["half-split"],
        overrides=["itemknn.neighbors=5,50", "export.enabled=false"],
        out=tmp_path / "run",
        settings=settings,
        quiet=True,
    )
    frame = result.to_dataframe()
    assert set(frame["model"]) == {"pop", "itemknn[neighbors=5]", "itemknn[neighbors=50]"}
    config = json.loads((result.path / "config.json").read_text())["config"]
    assert config["models"]["itemknn[neighbors=5]"]["options"]["neighbors"] == 5
    assert config["models"]["itemknn[neighbors=50]"]["swept"] == {"neighbors": "50"}
    cells = {c["model_label"]: c for c in RunDirectory.open(result.path).cells()}
    assert cells["itemknn[neighbors=5]"]["model_options"]["neighbors"] == 5
    assert cells["itemknn[neighbors=5]"]["key"] != cells["itemknn[neighbors=50]"]["key"]
    report = (result.path / "report.md").read_text()
    assert "## Option sweeps" in report
    sweep = report.split("## Option sweeps")[1].split("## ")[0]
    rows = [
        line for line in sweep.splitlines() if line.startswith("| 5") or line.startswith("| 50")
    ]
    assert len(rows) == 2
    assert "sps@10 (half-split)" in sweep


def test_a_bad_value_in_a_sweep_names_the_variant(settings, tmp_path):
    with pytest.raises(ConfigError, match=r"itemknn\[neighbors=x\]"):
        recbench.run(
            models=["itemknn"],
            dataset="synthetic:tiny",
            overrides=["itemknn.neighbors=5,x"],
            out=tmp_path / "run",
            settings=settings,
            quiet=True,
        )
