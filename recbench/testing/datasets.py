"""The kit's checks of a dataset: its metadata, fingerprint and loaded events."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from recbench.testing.checker import Checker, Settings, construct
from recbench.testing.data import data_context

if TYPE_CHECKING:
    from recbench.data.prepare import DataContext


def check_dataset(checker: Checker, options: Mapping[str, Any], settings: Settings) -> None:
    """Its metadata, then its loading (in ``settings.data_context``, else in empty
    temporary folders, offline)."""
    from recbench.config.options import option_fields

    cls = checker.cls
    argument = getattr(cls, "argument_option", None)
    if argument is not None and argument not in option_fields(cls.Options):
        raise checker.fail(
            f"argument_option {argument!r} is not one of its options "
            f"({', '.join(option_fields(cls.Options)) or 'it has none'})"
        )
    checksum = getattr(cls, "sha256", None)
    if checksum is not None and not (
        isinstance(checksum, str)
        and len(checksum) == 64
        and all(c in "0123456789abcdef" for c in checksum)
    ):
        raise checker.fail(f"sha256 must be 64 lower-case hex digits, got {checksum!r}")
    dataset = construct(checker, options)
    if settings.data_context is not None:
        _check_loading(checker, dataset, settings.data_context, settings)
        return
    with tempfile.TemporaryDirectory() as folder:
        _check_loading(checker, dataset, data_context(Path(folder)), settings)


def _check_loading(
    checker: Checker, dataset: Any, context: DataContext, settings: Settings
) -> None:
    import numpy as np

    from recbench.data.interactions import Interactions
    from recbench.data.preprocess import PreprocessOptions, preprocess
    from recbench.errors import DataError

    def call(method: str) -> Any:
        try:
            return getattr(dataset, method)(context)
        except DataError as exc:
            if settings.skip_missing_data and context.offline:
                pytest.skip(f"{checker.name}: its data is not there offline ({exc.one_line()})")
            raise checker.fail(f"{method}() raised DataError: {exc.one_line()}") from exc
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise checker.fail(f"{method}() raised {type(exc).__name__}: {first_line}") from exc

    fingerprint = call("fingerprint")
    interactions = call("load")
    for value in (fingerprint, call("fingerprint")):
        if not isinstance(value, str) or not value.strip():
            raise checker.fail(
                f"fingerprint() returned {value!r}: it must be a non-empty string that "
                "changes whenever the data would (checksums, sizes and times, parameters)"
            )
    if not isinstance(interactions, Interactions):
        raise checker.fail(
            f"load() returned a {type(interactions).__name__}, not a "
            "recbench.data.interactions.Interactions"
        )
    if len(interactions) == 0:
        raise checker.fail("load() returned no events")
    for column in ("user", "item", "timestamp", "rating"):
        array = getattr(interactions, column)
        if array is None and column in ("timestamp", "rating"):
            continue
        if not isinstance(array, np.ndarray) or array.ndim != 1:
            raise checker.fail(f"the '{column}' column must be a 1-d numpy array")
        if len(array) != len(interactions):
            raise checker.fail(
                f"the '{column}' column has {len(array):,} rows, 'user' has {len(interactions):,}"
            )
        integer = np.issubdtype(array.dtype, np.integer)
        if column in ("user", "item"):
            if not (integer or array.dtype.kind in "UO"):
                raise checker.fail(
                    f"the '{column}' ids must be integers or strings, got {array.dtype}"
                )
            continue
        if not integer and not (
            np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all()
        ):
            raise checker.fail(f"the '{column}' column must be finite numbers, got {array.dtype}")
    sequences, _ = checker.call(
        "recbench's preprocessing of the loaded events",
        preprocess,
        interactions,
        PreprocessOptions(min_item_pop=1, min_user_activity=1),
    )
    if len(sequences) == 0:
        raise checker.fail("its events give no sequence")
