"""Option sweeps: one model run with several values of its options, a cell per variant.

``-o moc.mixtures=1,2,4,8`` runs ``moc`` four times, labelled ``moc[mixtures=1]`` …
``moc[mixtures=8]``; the report puts the variants side by side. The rules:

* A comma-separated value sweeps an option that holds **one** value (``int``, ``float``,
  ``bool``, a ``Literal`` choice, or an optional of these).
* For options whose value may itself contain commas (strings such as ``loss_options``,
  tuples), separate the alternatives with ``|`` instead -- ``-o 'lstm.loss=bpr|adaptive_hinge'``
  (quote it for the shell). ``|`` works for every option.
* In a TOML configuration a list given for a one-value option is a sweep
  (``[options.moc] mixtures = [1, 2, 4, 8]``).
* Several swept options of one model run every combination, in the order given; the
  label names only the swept options (``moc[mixtures=2,dim=64]``).

Sweeps are for model options; the data, split and evaluation settings stay one per run.
"""

from __future__ import annotations

import itertools
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recbench.config.options import option_fields
from recbench.errors import ConfigError

ALTERNATIVES_SEPARATOR = "|"


@dataclass(frozen=True)
class Variant:
    """One combination of a model's swept options.

    ``label`` names the variant in results and reports, ``swept`` holds the swept
    options' values as given, and ``values`` the model's whole option mapping for it.
    """

    label: str
    swept: Mapping[str, Any]
    values: Mapping[str, Any]


def expand(model_id: str, options_cls: type, values: Mapping[str, Any]) -> list[Variant]:
    """The variants of ``model_id`` that the option ``values`` (a sweep or not) describe.

    Without a sweep this is one variant labelled ``model_id`` with ``values`` unchanged.
    Unknown option keys are left for :func:`recbench.config.options.parse_options` to report.
    """
    fields = option_fields(options_cls)
    values = dict(values)
    swept: dict[str, list[Any]] = {}
    for key, value in values.items():
        alternatives = _alternatives(value, fields.get(key))
        if alternatives is None:
            continue
        if not alternatives:
            raise ConfigError(
                f"the sweep of '{key}' has no value",
                where=f"options of {model_id}",
                hint="give at least one value",
            )
        if len(alternatives) == 1:  # a one-element list: not a sweep
            values[key] = alternatives[0]
            continue
        texts = [str(a) for a in alternatives]
        duplicates = sorted({t for t in texts if texts.count(t) > 1})
        if duplicates:
            raise ConfigError(
                f"the sweep of '{key}' lists {', '.join(duplicates)} more than once",
                where=f"-o {model_id}.{key}",
                hint="give each value once",
            )
        if any(t == "" for t in texts):
            raise ConfigError(
                f"the sweep of '{key}' has an empty value",
                where=f"-o {model_id}.{key}",
                hint="write VALUE,VALUE,... without empty entries",
            )
        swept[key] = alternatives
    if not swept:
        return [Variant(model_id, {}, values)]
    variants = []
    for combination in itertools.product(*swept.values()):
        chosen = dict(zip(swept, combination, strict=True))
        label = f"{model_id}[{','.join(f'{k}={_text(v)}' for k, v in chosen.items())}]"
        variants.append(Variant(label, chosen, {**values, **chosen}))
    return variants


def _alternatives(value: Any, annotation: Any) -> list[Any] | None:
    """The values a raw option value sweeps over, or ``None`` when it is one value."""
    if isinstance(value, str):
        if ALTERNATIVES_SEPARATOR in value:
            return [part.strip() for part in value.split(ALTERNATIVES_SEPARATOR)]
        if "," in value and annotation is not None and _holds_one_value(annotation):
            return [part.strip() for part in value.split(",")]
        return None
    if isinstance(value, Sequence) and annotation is not None and _holds_one_value(annotation):
        return list(value)
    return None


def _holds_one_value(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return all(_holds_one_value(a) for a in members)
    return annotation in (int, float, bool)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
