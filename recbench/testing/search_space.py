"""The kit's check of a model's search space: every value tuning may try builds the
model's options."""

from __future__ import annotations

from typing import Any

from recbench.testing.checker import Checker


def check_search_space(checker: Checker) -> None:
    """Each bound of a range and each choice of the model's ``search_space`` (validated
    against the options by the registry) is accepted by its ``Options`` and their
    checks (``__post_init__``), the other options at their defaults."""
    from recbench.config.options import parse_options
    from recbench.config.search_space import Choice
    from recbench.errors import ConfigError

    space = getattr(checker.cls, "search_space", None)
    if space is None:
        return
    owner = f"{checker.kind} '{checker.cls.id}'"
    for name, entry in space.items():
        values: tuple[Any, ...] = (
            entry.values if isinstance(entry, Choice) else (entry.low, entry.high)
        )
        for value in values:
            try:
                parse_options(checker.cls.Options, {name: value}, owner=owner)
            except ConfigError as exc:
                raise checker.fail(
                    f"search space entry '{name}': its value {value!r} is refused by the "
                    f"options ({exc.one_line()})"
                ) from None
