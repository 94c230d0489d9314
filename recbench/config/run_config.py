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
        the validation users under ``validation_protocol``.
    validation_protocol:
        The protocol of the validation users' queries: ``last-item`` (one query per
        user, the default) or ``iterative`` / ``half-split``. ``recbench tune`` validates
        its trials under the protocol it tunes for, and its ``tuned.toml`` sets this
        option to the same protocol, so a tuned run stops early as its trials did.
        Under ``iterative`` a model without the one-pass ``score_prefixes`` answers
        every prefix of every validation user at each validation.
    prefixes:
        What a model that keeps state reads of a prefix longer than its ``max_length``:
        ``history`` (the serving semantics: its whole history, as its exported cell
        does, answered in one pass over each user's sequence) or ``window`` (the last
        ``max_length`` items, one ``score`` call per query). Models without the
        one-pass ``score_prefixes`` always read the window.
    order_check_users:
        The order check's shuffled model answers its queries one by one (each prefix is
        shuffled on its own), so on large datasets it reads only the queries of a seeded
        sample of at most this many test users, paired with the in-order model's answers
        to the same queries. 2,000 users (the whole test set of ML-100K and ML-1M; about
        15% of ML-20M's); 0: every test user.
    """

    exclude_seen: Literal["auto", "on", "off"] = "auto"
    ties: Literal["pessimistic", "optimistic", "arbitrary"] = "pessimistic"
    batch_size: int = 0
    validation_metric: str = "mrr@20"
    validation_protocol: Literal["last-item", "iterative", "half-split"] = "last-item"
    prefixes: Literal["history", "window"] = "history"
    order_check_users: int = 2000

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise ValueError("batch_size must not be negative (0: chosen from the catalogue)")
        if self.order_check_users < 0:
            raise ValueError("order_check_users must not be negative (0: every test user)")


#: Evaluation options that change only the order check's cells, not a model's answers.
ORDER_CHECK_OPTIONS = ("order_check_users",)


#: Evaluation options that tuning trials do not read (they validate under the tuned
#: protocol), besides :data:`ORDER_CHECK_OPTIONS`.
TRIAL_UNREAD_OPTIONS = ("validation_protocol",)


def evaluation_key(evaluation: Mapping[str, Any], *, trials: bool = False) -> dict[str, Any]:
    """The evaluation options (``eval`` as a dict) that change a model's results: what
    cell keys depend on (all but :data:`ORDER_CHECK_OPTIONS`), and with ``trials`` what
    tuning studies depend on (also without :data:`TRIAL_UNREAD_OPTIONS`)."""
    left_out = ORDER_CHECK_OPTIONS + (TRIAL_UNREAD_OPTIONS if trials else ())
    return {k: v for k, v in evaluation.items() if k not in left_out}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (before plugin options are resolved).

    ``models`` may be empty only for ``recbench check`` (data preparation and splits,
    nothing trained); a run refuses it. Seeds are distinct non-negative integers,
    cutoffs distinct positive ones.
    """

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
        if not self.dataset:
            raise ConfigError(
                "no dataset given",
                hint="pass --dataset, e.g. --dataset ml-100k, or set dataset in the --config file",
            )
        if not self.protocols:
            raise ConfigError("no protocol given", hint="pass --protocols half-split,iterative")
        if not self.seeds:
            raise ConfigError("no seed given", hint="pass --seeds 0")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("a model is listed twice", where="--models")
        negative = [s for s in self.seeds if s < 0]
        if negative:
            raise ConfigError(
                f"seeds are non-negative integers, got {negative[0]}",
                where="--seeds",
                hint="pass seeds such as --seeds 0,1,2 (or --n-seeds 3)",
            )
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ConfigError(
                f"seed {repeated[0]} is listed twice",
                where="--seeds",
                hint="each seed splits and trains once: list distinct seeds, e.g. --seeds 0,1",
            )
        if not self.cutoffs or any(k < 1 for k in self.cutoffs):
            raise ConfigError("cutoffs must be positive integers", where="--cutoffs")
        repeated = sorted({k for k in self.cutoffs if self.cutoffs.count(k) > 1})
        if repeated:
            raise ConfigError(
                f"cutoff {repeated[0]} is listed twice",
                where="--cutoffs",
                hint="list distinct cutoffs, e.g. --cutoffs 10,20",
            )

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


#: The keys of a ``--config`` file: one per flag of ``recbench run`` (``options`` holds the
#: ``-o`` values as ``[options.SECTION]`` tables), with the type of its value.
CONFIG_KEYS: dict[str, str] = {
    "models": "names",
    "dataset": "text",
    "protocols": "names",
    "seeds": "seeds",
    "n_seeds": "count",
    "metrics": "names",
    "cutoffs": "counts",
    "options": "tables",
    "device": "text",
    "order_check": "text",
    "out": "text",
    "resume": "flag",
    "quiet": "flag",
    "no_export": "flag",
    # how the options were tuned (written by recbench tune; shown in the report)
    "tuning": "table",
}
_TYPE_WORDS = {
    "names": "a list of names (or one comma-separated string)",
    "text": "a string",
    "seeds": "a list of non-negative integers",
    "count": "a positive integer",
    "counts": "a list of positive integers",
    "tables": "a table of [options.SECTION] tables",
    "flag": "true or false",
    "table": "a table",
}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML run configuration.

    Top-level keys mirror the flags of ``recbench run`` (:data:`CONFIG_KEYS`: ``models``,
    ``dataset``, ``protocols``, ``seeds`` or ``n_seeds``, ``metrics``, ``cutoffs``,
    ``device``, ``order_check``, ``out``, ``resume``, ``quiet``, ``no_export``); the
    tables ``[options.SECTION]`` hold option values. Lists of names may also be written as
    one comma-separated string. Returns the values checked and normalised (lists of names
    as lists, ``n_seeds`` as the list of seeds).

    Raises
    ------
    ConfigError
        A missing or unreadable file, invalid TOML, an unknown key or a value of the
        wrong type, naming the file and the key.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path)) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}", where=str(path)
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file is not valid TOML: {exc}", where=str(path)) from None
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            raise ConfigError(
                f"unknown key '{key}'", where=str(path), hint=close_matches(key, CONFIG_KEYS)
            )
        checked[key] = _config_value(key, value, path)
    if "seeds" in checked and "n_seeds" in checked:
        raise ConfigError(
            "config file sets both seeds and n_seeds", where=str(path), hint="keep one of them"
        )
    if "n_seeds" in checked:
        checked["seeds"] = list(range(checked.pop("n_seeds")))
    return checked


def _config_value(key: str, value: Any, path: Path) -> Any:
    """``value`` of config key ``key``, checked and normalised."""
    kind = CONFIG_KEYS[key]
    if kind == "names" and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if kind in ("counts", "seeds") and _is_integer(value):
        value = [value]
    valid = {
        "names": isinstance(value, list) and all(isinstance(v, str) and v for v in value),
        "text": isinstance(value, str) and bool(value),
        "seeds": isinstance(value, list) and all(_is_integer(v) and v >= 0 for v in value),
        "count": _is_integer(value) and value >= 1,
        "counts": isinstance(value, list) and all(_is_integer(v) and v >= 1 for v in value),
        "tables": isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()),
        "flag": isinstance(value, bool),
        "table": isinstance(value, dict),
    }[kind]
    if not valid:
        raise ConfigError(
            f"config key '{key}' must be {_TYPE_WORDS[kind]}, got {value!r}",
            where=str(path),
            hint=f"e.g. {_EXAMPLES[kind].format(key=key)}",
        )
    return value


_EXAMPLES = {
    "names": '{key} = ["a", "b"]',
    "text": '{key} = "value"',
    "seeds": "{key} = [0, 1, 2]",
    "count": "{key} = 3",
    "counts": "{key} = [10, 20]",
    "tables": "[options.split] test = 0.2",
    "flag": "{key} = true",
    "table": '[{key}] metric = "mrr@20"',
}


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
