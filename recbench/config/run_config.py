"""The configuration of a run, and how option overrides are resolved.

Precedence: each plugin's defaults < a TOML config file < command-line ``-o`` overrides.
Options are addressed as ``SECTION.KEY=VALUE`` where SECTION is a model id of the run,
the dataset id, a metric id, or one of the core sections:

``preprocess``  :class:`recbench.data.preprocess.PreprocessOptions`
``split``       :class:`recbench.data.splits.SplitOptions`
``eval``        :class:`EvaluationOptions`
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from recbench.errors import ConfigError, close_matches

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CORE_SECTIONS = ("preprocess", "split", "eval")
DEFAULT_PROTOCOLS = ("half-split", "iterative")
DEFAULT_CUTOFFS = (10, 20)


@dataclass(frozen=True)
class EvaluationOptions:
    """How queries are ranked and which metric selects models.

    exclude_seen:
        ``auto`` removes the input items from the ranking when the dataset has no
        repeated (user, item) pairs (MovieLens), and keeps them otherwise.
    ties:
        ``pessimistic`` ranks a target after every item with an equal score.
    batch_size:
        Queries scored at once; 0 picks one from the catalogue size.
    validation_metric:
        The metric (``id@k``) that early stopping and model selection use, computed on
        the validation users under the last-item protocol.
    """

    exclude_seen: Literal["auto", "on", "off"] = "auto"
    ties: Literal["pessimistic", "optimistic", "arbitrary"] = "pessimistic"
    batch_size: int = 0
    validation_metric: str = "mrr@20"


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (before plugin options are resolved)."""

    models: tuple[str, ...]
    dataset: str
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    seeds: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = ()  # empty: every registered metric
    cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    #: Which model the order check trains on shuffled sequences (:mod:`recbench.tasks.ranking.order_check`):
    #: ``auto`` (the first sequence model), a model label, or ``off``.
    order_check: str = "auto"

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model given", hint="pass --models, e.g. --models pop")
        if not self.dataset:
            raise ConfigError("no dataset given", hint="pass --dataset, e.g. --dataset ml-100k")
        if not self.protocols:
            raise ConfigError("no protocol given", hint="pass --protocols half-split,iterative")
        if not self.seeds:
            raise ConfigError("no seed given", hint="pass --seeds 0")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("a model is listed twice", where="--models")
        if not self.cutoffs or any(k < 1 for k in self.cutoffs):
            raise ConfigError("cutoffs must be positive integers", where="--cutoffs")

    def with_overrides(self, assignments: Iterable[str]) -> RunConfig:
        """A copy with ``SECTION.KEY=VALUE`` assignments applied on top of the options."""
        options = {section: dict(values) for section, values in self.options.items()}
        for section, key, value in (parse_assignment(a) for a in assignments):
            options.setdefault(section, {})[key] = value
        return replace(self, options=options)


def parse_assignment(text: str) -> tuple[str, str, str]:
    """``"lstm.embedding_dim=64"`` -> ``("lstm", "embedding_dim", "64")``."""
    name, sep, value = text.partition("=")
    section, dot, key = name.strip().rpartition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(
            f"cannot read option '{text}'",
            where="-o",
            hint="write SECTION.KEY=VALUE, e.g. -o split.test=0.2 or -o pop.some_option=1",
        )
    return section, key, value.strip()


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML run configuration.

    Top-level keys mirror the command line (``models``, ``dataset``, ``protocols``,
    ``seeds``, ``metrics``, ``cutoffs``, ``device``, ``order_check``); the table ``[options.SECTION]``
    holds option values.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML: {exc}", where=str(path)) from None
    allowed = {
        "models",
        "dataset",
        "protocols",
        "seeds",
        "metrics",
        "cutoffs",
        "device",
        "order_check",
        "options",
    }
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{key}'", where=str(path), hint=close_matches(key, allowed)
            )
    return data


def check_sections(options: Mapping[str, Any], known: Iterable[str]) -> None:
    """Reject option sections that name nothing in this run."""
    known = set(known)
    for section in options:
        if section not in known:
            raise ConfigError(
                f"options given for '{section}', which is not part of this run",
                where=f"-o {section}.*",
                hint=close_matches(section, known),
            )
