"""Strict, typed options for plugins and for the core's own settings.

Every plugin declares its options as a frozen dataclass with defaults::

    @dataclass(frozen=True)
    class Options:
        embedding_dim: int = 64
        loss: Literal["bpr", "hinge"] = "bpr"

:func:`parse_options` builds one from a mapping of keys to values (values may be strings
from the command line), rejects unknown keys with the close matches, coerces strings to
the declared type and checks ``Literal`` choices.

The supported option types are :data:`SUPPORTED_TYPES`: ``int``, ``float``, ``bool``,
``str``, a ``Literal`` of such values, a ``tuple[X, ...]`` of one of these (written
``a,b,c`` on the command line), and an optional (``X | None``) or union of them
(``Any`` is accepted too: the value is kept as given, a string from the command line).
:func:`declaration_problem` checks a plugin's declaration against this when the plugin is
registered: every option has a supported type and a default of that type.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from recbench.errors import ConfigError, close_matches

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SCALARS = (int, float, bool, str)

#: What an option may be declared as, in words (for error messages and docs).
SUPPORTED_TYPES = (
    "int, float, bool, str, a Literal of such values, a tuple[X, ...] of these, "
    "or an optional (X | None) of these"
)


def option_fields(options_cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of an options dataclass."""
    if not dataclasses.is_dataclass(options_cls):
        raise TypeError(f"{options_cls!r} is not a dataclass")
    hints = typing.get_type_hints(options_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(options_cls) if f.init}


def defaults(options_cls: type) -> dict[str, Any]:
    """The default value of every option (options without a default are left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def parse_options(options_cls: type[T], values: Mapping[str, Any], *, owner: str) -> T:
    """Build ``options_cls`` from ``values``, strictly.

    Parameters
    ----------
    options_cls:
        A dataclass whose fields are the options.
    values:
        Option key -> value. String values are converted to the field's type.
    owner:
        Who the options belong to, for error messages (e.g. ``"model 'lstm'"``).
    """
    fields = option_fields(options_cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown option '{key}' for {owner}",
                where=f"option {key}",
                hint=close_matches(key, fields),
            )
        kwargs[key] = coerce(value, fields[key], owner=owner, key=key)
    try:
        return options_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for {owner}: {exc}") from None


def coerce(value: Any, annotation: Any, *, owner: str, key: str) -> Any:
    """Convert ``value`` to ``annotation`` (int, float, bool, str, Literal, Optional, tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"option '{key}' of {owner} must be {expected}, got {value!r}",
            where=f"option {key}",
        )

    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise bad("one of " + ", ".join(repr(a) for a in args))
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        ):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, owner=owner, key=key)
            except ConfigError as exc:
                errors.append(exc)
        raise bad(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        item_type = args[0] if args else str
        return tuple(
            coerce(v.strip() if isinstance(v, str) else v, item_type, owner=owner, key=key)
            for v in items
        )
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad("true or false")
    if annotation is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise bad("an integer")
    if annotation is float:
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if annotation is Any:
        return value
    raise TypeError(f"unsupported option type {annotation!r} for {owner}.{key}")


def is_supported_type(annotation: Any) -> bool:
    """Whether an option declared as ``annotation`` can be set from the command line
    (see :data:`SUPPORTED_TYPES`)."""
    return _supported(annotation, in_tuple=False)


def _supported(annotation: Any, *, in_tuple: bool) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in _SCALARS or annotation is Any:
        return True
    if origin is typing.Literal:
        return bool(args) and all(type(arg) in _SCALARS for arg in args)
    if origin in (typing.Union, types.UnionType):
        choices = [arg for arg in args if arg is not type(None)]
        return bool(choices) and all(_supported(arg, in_tuple=in_tuple) for arg in choices)
    if origin is tuple and not in_tuple:
        return len(args) == 2 and args[1] is Ellipsis and _supported(args[0], in_tuple=True)
    return False


def declaration_problem(options_cls: type) -> str | None:
    """Why ``options_cls`` cannot serve as a plugin's ``Options``, or ``None``.

    Every field must have a default (or a default factory), a type of
    :data:`SUPPORTED_TYPES`, and a default of that type: one that :func:`coerce` keeps
    as it is (an ``int`` default of a ``float`` option is accepted).
    """
    try:
        fields = option_fields(options_cls)
    except Exception as exc:
        return f"cannot read the types of its options ({type(exc).__name__}: {exc})"
    values = defaults(options_cls)
    for key, annotation in fields.items():
        if not is_supported_type(annotation):
            return (
                f"option '{key}' has type {_type_name(annotation)}, which cannot be set from "
                f"the command line: use {SUPPORTED_TYPES}"
            )
        if key not in values:
            return f"option '{key}' has no default: every option needs one"
        default = values[key]
        try:
            converted = coerce(default, annotation, owner="its options", key=key)
        except ConfigError:
            converted = _NOT_CONVERTED
        if converted is _NOT_CONVERTED or not _same(converted, default):
            return (
                f"option '{key}' has type {_type_name(annotation)} but its default "
                f"{default!r} is not one"
            )
    return None


_NOT_CONVERTED = object()


def _same(converted: Any, default: Any) -> bool:
    """``converted == default`` of the same container type (NaN equals NaN)."""
    if isinstance(default, float) and math.isnan(default):
        return isinstance(converted, float) and math.isnan(converted)
    if isinstance(default, (tuple, list)) and type(converted) is not type(default):
        return False  # e.g. a list default of a tuple option
    return bool(converted == default)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def as_dict(options: Any) -> dict[str, Any]:
    """A JSON-friendly dict of an options instance (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }
