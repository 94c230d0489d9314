"""The kit's check of a plugin's options class, common to every kind of plugin."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from recbench.testing.checker import Checker


def check_options(checker: Checker) -> None:
    """Unknown keys are refused, and every option can be set from the command line
    (``-o id.key=value``) with a default that is a valid value of its declared type."""
    from recbench.config.options import option_fields, parse_options
    from recbench.errors import ConfigError

    options_cls = checker.cls.Options
    owner = f"{checker.kind} '{checker.cls.id}'"
    try:
        fields = option_fields(options_cls)
    except Exception as exc:
        raise checker.fail(f"cannot read the types of its options ({exc})") from None
    try:
        parse_options(options_cls, {"no_such_option": "1"}, owner=owner)
    except ConfigError:
        pass
    else:
        raise checker.fail("its options accepted the unknown key 'no_such_option'")
    defaults = {f.name: getattr(options_cls(), f.name) for f in dataclasses.fields(options_cls)}
    for key, annotation in fields.items():
        default = defaults[key]
        attempts = [(default, "its default"), (_as_text(default), "the text")]
        if attempts[1][0] == "":
            del attempts[1]  # nothing to type on the command line (an empty string or tuple)
        for value, how in attempts:
            try:
                parsed = parse_options(options_cls, {key: value}, owner=owner)
            except TypeError:
                raise checker.fail(
                    f"option '{key}' has type {_type_name(annotation)}, which cannot be set "
                    f"from the command line (-o {checker.cls.id}.{key}=VALUE): use int, "
                    "float, bool, str, a Literal, a tuple or an optional of these"
                ) from None
            except ConfigError as exc:
                raise checker.fail(
                    f"option '{key}': {how} {value!r} is refused ({exc.one_line()}): "
                    f"the default must be a valid {_type_name(annotation)}"
                ) from None
            if (
                how == "the text"
                and not isinstance(default, str)
                and getattr(parsed, key) != default
            ):
                raise checker.fail(
                    f"option '{key}': -o {checker.cls.id}.{key}={value} gives "
                    f"{getattr(parsed, key)!r}, not the default {default!r}"
                )


def _as_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")
