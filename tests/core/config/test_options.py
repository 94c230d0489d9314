from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Literal

import pytest

from recbench.config.options import as_dict, declaration_problem, parse_options
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


def test_run_config_rejects_duplicate_models_and_allows_none_for_a_check():
    assert RunConfig(models=(), dataset="ml-100k").models == ()  # recbench check
    with pytest.raises(ConfigError, match="listed twice"):
        RunConfig(models=("pop", "pop"), dataset="ml-100k")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": (0, 0)}, "seed 0 is listed twice"),
        ({"seeds": (1, -1)}, "seeds are non-negative integers, got -1"),
        ({"cutoffs": (10, 10)}, "cutoff 10 is listed twice"),
        ({"cutoffs": (0,)}, "cutoffs must be positive integers"),
        ({"dataset": ""}, "no dataset given"),
    ],
)
def test_run_config_rejects_bad_seeds_and_cutoffs(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{"models": ("pop",), "dataset": "ml-100k", **changes})


# -- option declarations, as checked when a plugin registers --------------------------------


def declared(annotation: Any, default: Any) -> type:
    """An options dataclass with one option ``x`` of ``annotation`` and ``default``."""
    if callable(default) and not isinstance(default, type):
        return make_dataclass("Options", [("x", annotation, field(default_factory=default))])
    return make_dataclass("Options", [("x", annotation, field(default=default))])


def test_every_supported_type_with_a_default_of_its_type_is_accepted():
    assert declaration_problem(Options) is None
    for annotation, default in [
        (float, 0),  # an int default of a float option is a float
        (float, float("nan")),
        (str, ""),
        (Literal[1, 2], 2),
        (tuple[str, ...], ()),
        (tuple[Literal["a", "b"], ...], ("b", "a")),
        (str | None, None),
        (int | str, "auto"),
        (Any, None),
    ]:
        assert declaration_problem(declared(annotation, default)) is None, annotation


@pytest.mark.parametrize(
    ("annotation", "default"),
    [(dict, dict), (list[int], list), (dict[str, float] | None, None), (tuple[int, int], (1, 2))],
)
def test_a_type_the_command_line_cannot_set_is_refused(annotation, default):
    problem = declaration_problem(declared(annotation, default))
    assert problem is not None
    assert problem.startswith("option 'x' has type ")
    assert problem.endswith(
        "which cannot be set from the command line: use int, float, bool, str, a Literal of "
        "such values, a tuple[X, ...] of these, or an optional (X | None) of these"
    )


@pytest.mark.parametrize(
    ("annotation", "default"),
    [
        (int, True),
        (int, 1.5),
        (str, None),
        (bool, "yes"),
        (Literal["a", "b"], "c"),
        (tuple[int, ...], lambda: [1, 2]),
    ],
)
def test_a_default_that_is_not_of_the_declared_type_is_refused(annotation, default):
    problem = declaration_problem(declared(annotation, default))
    assert problem is not None and "but its default" in problem and "is not one" in problem


def test_annotations_that_cannot_be_resolved_are_refused():
    @dataclass(frozen=True)
    class Unresolved:
        x: NotDefinedAnywhere = 1  # noqa: F821

    problem = declaration_problem(Unresolved)
    assert problem is not None
    assert problem.startswith("cannot read the types of its options (NameError")
