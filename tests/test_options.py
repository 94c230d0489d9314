from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from recbench.config.options import as_dict, parse_options
from recbench.config.run_config import RunConfig, parse_assignment
from recbench.errors import ConfigError


@dataclass(frozen=True)
class Options:
    embedding_dim: int = 64
    learning_rate: float = 0.01
    loss: Literal["bpr", "hinge"] = "bpr"
    tied: bool = False
    max_length: int | None = 200
    cutoffs: tuple[int, ...] = (10, 20)


def test_strings_are_coerced_to_declared_types():
    options = parse_options(
        Options,
        {
            "embedding_dim": "128",
            "learning_rate": "1e-3",
            "loss": "hinge",
            "tied": "yes",
            "max_length": "none",
            "cutoffs": "5,50",
        },
        owner="model 'x'",
    )
    assert options == Options(128, 1e-3, "hinge", True, None, (5, 50))
    assert as_dict(options)["cutoffs"] == [5, 50]


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError) as info:
        parse_options(Options, {"embeding_dim": 3}, owner="model 'lstm'")
    assert "unknown option 'embeding_dim' for model 'lstm'" in str(info.value)
    assert "did you mean 'embedding_dim'" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("embedding_dim", "sixty", "an integer"),
        ("loss", "top2", "one of 'bpr', 'hinge'"),
        ("tied", "maybe", "true or false"),
        ("learning_rate", "fast", "a number"),
    ],
)
def test_bad_values_say_what_is_expected(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_options(Options, {key: value}, owner="model 'x'")


def test_assignment_parsing():
    assert parse_assignment("lstm.embedding_dim=64") == ("lstm", "embedding_dim", "64")
    assert parse_assignment("file.sep=::") == ("file", "sep", "::")
    for bad in ("lstm.embedding_dim", "embedding_dim=3", ".x=1"):
        with pytest.raises(ConfigError, match=r"SECTION\.KEY=VALUE"):
            parse_assignment(bad)


def test_overrides_win_over_config_options():
    config = RunConfig(models=("pop",), dataset="ml-100k", options={"split": {"test": 0.3}})
    updated = config.with_overrides(["split.test=0.2", "split.valid=0.05"])
    assert updated.options["split"] == {"test": "0.2", "valid": "0.05"}
    assert config.options["split"] == {"test": 0.3}


def test_run_config_rejects_empty_and_duplicate_models():
    with pytest.raises(ConfigError, match="no model"):
        RunConfig(models=(), dataset="ml-100k")
    with pytest.raises(ConfigError, match="listed twice"):
        RunConfig(models=("pop", "pop"), dataset="ml-100k")
