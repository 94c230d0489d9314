"""Interactions from any delimited text file: ``--dataset file:PATH``.

The separator, a header line and the compression are detected; the column order is an
option. Every malformed line is reported with its file and line number.
:func:`read_interactions` is also the reader behind the MovieLens datasets.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Literal

import numpy as np
import pandas as pd

from recbench.plugin import ConfigError, DataContext, DataError, Interactions

#: Separators tried, in this order, when ``sep`` is not given.
SNIFFED_SEPARATORS = ("::", "\t", ",", ";", "|", "whitespace")
#: Column names that ``columns`` may use.
COLUMN_NAMES = ("user", "item", "rating", "timestamp", "ignore")
#: Bytes of the (decompressed) file read to detect the separator and a header.
SNIFF_BYTES = 64 * 1024
_COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")

Compression = Literal["auto", "none", "gzip", "bz2", "xz", "zip"]


@dataclass(frozen=True)
class FileOptions:
    """Options of the ``file`` dataset.

    path:
        The file. A relative path is looked up in the current directory, then in the
        data root (``RECBENCH_DATA``).
    sep:
        The field separator; ``None`` detects one of ``::``, tab, ``,``, ``;``, ``|`` or
        whitespace from the first lines. ``whitespace`` means runs of spaces or tabs.
    columns:
        The fields of a line, in order, from ``user``, ``item``, ``rating``,
        ``timestamp`` and ``ignore`` (a field to skip); ``user`` and ``item`` are
        required. User and item ids must be integers.
    header:
        Whether the first line is a header; ``None`` detects it (a first line with a
        non-numeric field is a header).
    compression:
        ``auto`` picks it from the suffix (``.gz``, ``.bz2``, ``.xz``, ``.zip`` holding
        one file).
    """

    path: str = ""
    sep: str | None = None
    columns: str = "user,item,rating,timestamp"
    header: bool | None = None
    compression: Compression = "auto"


class FileDataset:
    """A delimited text file of (user, item[, rating][, timestamp]) events."""

    id: ClassVar[str] = "file"
    summary: ClassVar[str] = "Events from a delimited text file (--dataset file:PATH)"
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = FileOptions
    argument_option: ClassVar[str | None] = "path"

    def __init__(self, options: FileOptions):
        self.options = options
        self.columns = parse_columns(options.columns)

    def fingerprint(self, ctx: DataContext) -> str:
        path = self.resolve(ctx)
        status = path.stat()
        return f"{path}:{status.st_size}:{status.st_mtime_ns}"

    def load(self, ctx: DataContext) -> Interactions:
        return read_interactions(
            self.resolve(ctx),
            sep=self.options.sep,
            columns=self.columns,
            header=self.options.header,
            compression=self.options.compression,
        )

    def resolve(self, ctx: DataContext) -> Path:
        """The file named by ``path``: as given, then relative to the data root."""
        if not self.options.path:
            raise ConfigError(
                "dataset 'file' needs a path",
                where="option file.path",
                hint="pass --dataset file:PATH",
            )
        given = Path(self.options.path).expanduser()
        candidates = [given] if given.is_absolute() else [Path.cwd() / given, ctx.data_root / given]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        tried = " and ".join(str(c) for c in candidates)
        raise DataError(
            f"no file '{self.options.path}'",
            where=tried,
            hint="check the path (a relative path is looked up in the current directory, "
            "then in RECBENCH_DATA)",
        )


def parse_columns(text: str) -> tuple[str, ...]:
    """The column names of ``columns``, checked: known names, ``user`` and ``item``
    present, none but ``ignore`` repeated."""
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for name in names:
        if name not in COLUMN_NAMES:
            raise ConfigError(
                f"unknown column '{name}' in columns='{text}'",
                where="option file.columns",
                hint="use names from " + ", ".join(COLUMN_NAMES),
            )
    for required in ("user", "item"):
        if required not in names:
            raise ConfigError(
                f"columns='{text}' has no '{required}' column",
                where="option file.columns",
                hint="name the position of the user and the item, "
                "e.g. columns=user,item,rating,timestamp",
            )
    repeated = sorted({n for n in names if n != "ignore" and names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"column '{repeated[0]}' appears twice in columns='{text}'",
            where="option file.columns",
            hint="name each column once (use 'ignore' for fields to skip)",
        )
    return names


def read_interactions(
    path: Path,
    *,
    sep: str | None,
    columns: tuple[str, ...],
    header: bool | None,
    compression: Compression = "auto",
) -> Interactions:
    """Read a delimited file of events into :class:`~recbench.plugin.Interactions`.

    Parameters
    ----------
    path:
        The file.
    sep:
        The separator (``"whitespace"`` for runs of blanks), or ``None`` to detect it.
    columns:
        One name per field (see :func:`parse_columns`).
    header:
        Whether the first line is a header, or ``None`` to detect it.
    compression:
        ``auto`` (from the suffix), ``none``, ``gzip``, ``bz2``, ``xz`` or ``zip``.

    Returns
    -------
    Interactions
        ``user`` and ``item`` as integers (``int32`` when they fit), ``timestamp`` as
        ``int64`` and ``rating`` as ``float32`` when the file has them, in file order.
        Blank lines are skipped.

    Raises
    ------
    DataError
        Missing or empty file, a line with the wrong number of fields, or a non-integer
        id, each naming the file and line.
    """
    if not path.is_file():
        raise DataError(f"no file {path.name}", where=str(path), hint="check the path")
    kind = _compression(path, compression)
    head, whole_file = _head(path, kind)
    lines = head.splitlines() if whole_file else head.splitlines()[:-1]
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(
            f"{path.name} is empty", where=str(path), hint="check that it is the right file"
        )
    separator = sep if sep is not None else _sniff_separator(path, numbered, len(columns))
    first_fields = _split(numbered[0][1], separator)
    has_header = header
    if has_header is None:  # a header names the columns: a field that must be numeric is not
        used = [f for f, name in zip(first_fields, columns, strict=False) if name != "ignore"]
        has_header = not all(_is_number(f) for f in used)
    if has_header and len(numbered) == 1 and whole_file:
        raise DataError(
            f"{path.name} has a header but no events",
            where=str(path),
            hint="check that it is the right file",
        )
    field_count = len(first_fields)
    skipped_lines = numbered[0][0] if has_header else 0
    if field_count != len(columns):
        raise DataError(
            f"{path.name} has {field_count} fields per line (separator {_describe(separator)}) but "
            f"columns names {len(columns)} ({','.join(columns)})",
            where=f"{path}, line {numbered[0][0]}",
            hint="set the dataset's 'columns' option with one name per field ('ignore' skips one), "
            "or its 'sep' option if the separator is wrong",
        )
    try:  # fast and lean: the C parser converts to the final types as it reads
        table = _parse(path, kind, separator, columns, skipped_lines, typed=True)
    except (ValueError, OverflowError):
        # A value the typed parse rejects (or a blank line): parse again without types,
        # so that every problem can be reported with its line.
        table = _parse(path, kind, separator, columns, skipped_lines, typed=False)
        return _to_interactions(table, columns, path, first_line=skipped_lines + 1)
    if len(table) == 0:
        raise DataError(
            f"{path.name} has no events", where=str(path), hint="check that it is the right file"
        )
    return _from_typed(table, columns)


def _compression(path: Path, compression: Compression) -> str:
    if compression != "auto":
        return compression
    return _COMPRESSION_BY_SUFFIX.get(path.suffix.lower(), "none")


def _open(path: Path, kind: str) -> IO[bytes]:
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zip":
        bundle = zipfile.ZipFile(path)
        files = [info for info in bundle.infolist() if not info.is_dir()]
        if len(files) != 1:
            raise DataError(
                f"{path.name} holds {len(files)} files; a zipped dataset must hold exactly one",
                where=str(path),
                hint="unzip it and pass the ratings file itself",
            )
        return bundle.open(files[0])
    return path.open("rb")


def _head(path: Path, kind: str) -> tuple[str, bool]:
    """The first :data:`SNIFF_BYTES` of the decompressed file (latin-1), and whether that
    is the whole file."""
    try:
        with _open(path, kind) as handle:
            data = handle.read(SNIFF_BYTES + 1)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {path.name} as {kind} ({exc})",
            where=str(path),
            hint="check the file, or set the dataset's 'compression' option",
        ) from None
    return data[:SNIFF_BYTES].decode("latin-1"), len(data) <= SNIFF_BYTES


def _split(line: str, separator: str) -> list[str]:
    """The fields of one line (single-character separators honour CSV quoting)."""
    if separator == "whitespace":
        return line.split()
    if len(separator) == 1:
        return next(csv.reader([line], delimiter=separator))
    return line.split(separator)


def _describe(separator: str) -> str:
    return {"\t": "tab", "whitespace": "whitespace"}.get(separator, repr(separator))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff_separator(path: Path, numbered: list[tuple[int, str]], wanted_fields: int) -> str:
    """The separator under which most sampled lines share one field count (at least two).

    Ties go to the separator whose count is ``wanted_fields``, then to the earlier one in
    :data:`SNIFFED_SEPARATORS`. A sampled line with another count is an error naming it.
    """
    best: tuple[tuple[int, bool], str, list[int], int] | None = None
    for separator in SNIFFED_SEPARATORS:
        counts = [len(_split(line, separator)) for _, line in numbered]
        typical = Counter(counts).most_common(1)[0][0]
        if typical < 2:
            continue
        score = (counts.count(typical), typical == wanted_fields)
        if best is None or score > best[0]:
            best = (score, separator, counts, typical)
    if best is None:
        raise DataError(
            f"{path.name}: no separator among {', '.join(map(_describe, SNIFFED_SEPARATORS))} "
            "splits its lines into fields",
            where=f"{path}, line {numbered[0][0]}",
            hint="set the dataset's 'sep' option",
        )
    _, separator, counts, typical = best
    for (number, _), count in zip(numbered, counts, strict=True):
        if count != typical:
            raise DataError(
                f"{path.name}: line {number} has {count} fields, other lines have {typical} "
                f"(separator {_describe(separator)})",
                where=f"{path}, line {number}",
                hint="fix or remove that line, or set the dataset's 'sep' option",
            )
    return separator


_TYPES = {"user": np.int64, "item": np.int64, "timestamp": np.int64, "rating": np.float32}


def _parse(
    path: Path,
    kind: str,
    separator: str,
    columns: tuple[str, ...],
    skipped_lines: int,
    *,
    typed: bool,
) -> pd.DataFrame:
    """The file as a table, one column per field. With ``typed`` the used columns are
    parsed straight to their types (a value that does not fit raises ``ValueError``);
    otherwise pandas infers them. Blank lines are kept as rows of missing values so that
    row ``i`` is line ``skipped_lines + 1 + i``."""
    names = [f"{name}_{position}" for position, name in enumerate(columns)]
    options: dict[str, object] = {
        "header": None,
        "names": names,
        "skiprows": skipped_lines,
        "skip_blank_lines": False,
        "engine": "c",
    }
    if typed:
        options["dtype"] = {
            label: _TYPES[name]
            for label, name in zip(names, columns, strict=True)
            if name in _TYPES
        }
    try:
        with _open(path, kind) as handle:
            if separator == "::":  # the C parser takes one character: make it a tab
                source: IO[bytes] = io.BytesIO(handle.read().replace(b"::", b"\t"))
                return pd.read_csv(source, sep="\t", **options)  # type: ignore[call-overload]
            sep = r"\s+" if separator == "whitespace" else separator
            return pd.read_csv(handle, sep=sep, **options)  # type: ignore[call-overload]
    except pd.errors.ParserError as exc:
        found = _PANDAS_LINE.search(str(exc))
        if found is None:
            raise DataError(
                f"cannot parse {path.name}: {exc}", where=str(path), hint="check the file"
            ) from None
        expected, line, saw = found.groups()
        raise DataError(
            f"{path.name}: line {line} has {saw} fields, expected {expected} "
            f"(separator {_describe(separator)})",
            where=f"{path}, line {line}",
            hint="fix or remove that line, or set the dataset's 'sep' or 'columns' option",
        ) from None
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path.name} ({exc})", where=str(path), hint="check the file"
        ) from None


def _from_typed(table: pd.DataFrame, columns: tuple[str, ...]) -> Interactions:
    arrays = {
        name: _narrow(table.iloc[:, position].to_numpy(), name)
        for position, name in enumerate(columns)
        if name != "ignore"
    }
    return Interactions(
        user=arrays["user"],
        item=arrays["item"],
        timestamp=arrays.get("timestamp"),
        rating=arrays.get("rating"),
    )


def _narrow(values: np.ndarray, name: str) -> np.ndarray:
    """Final types: ratings ``float32``, timestamps ``int64``, ids ``int32`` when they fit
    (half the memory of ``int64`` on large files)."""
    if name == "rating":
        return values.astype(np.float32, copy=False)
    if name != "timestamp" and len(values) and values.min() >= -(2**31) and values.max() < 2**31:
        return values.astype(np.int32)
    return values.astype(np.int64, copy=False)


def _to_interactions(
    table: pd.DataFrame, columns: tuple[str, ...], path: Path, first_line: int
) -> Interactions:
    """Typed columns, with blank lines dropped and bad values reported by line (row ``i``
    of ``table`` is line ``first_line + i`` of the file)."""
    line_of_row = first_line + np.arange(len(table))
    used = {
        name: table.iloc[:, position] for position, name in enumerate(columns) if name != "ignore"
    }
    blank = np.logical_and.reduce([column.isna().to_numpy() for column in used.values()])
    if blank.any():
        table = table.loc[~blank]
        line_of_row = line_of_row[~blank]
        used = {name: column.loc[~blank] for name, column in used.items()}
    if len(table) == 0:
        raise DataError(
            f"{path.name} has no events", where=str(path), hint="check that it is the right file"
        )
    arrays = {name: _numeric(column, name, path, line_of_row) for name, column in used.items()}
    return Interactions(
        user=arrays["user"],
        item=arrays["item"],
        timestamp=arrays.get("timestamp"),
        rating=arrays.get("rating"),
    )


def _numeric(column: pd.Series, name: str, path: Path, line_of_row: np.ndarray) -> np.ndarray:
    values = column.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        converted = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(converted) & column.notna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise _bad_value(
                path, int(line_of_row[row]), name, str(column.iloc[row]), "is not a number"
            )
        values = converted
    if np.issubdtype(values.dtype, np.floating):
        missing = np.isnan(values)
        if missing.any():
            row = int(np.argmax(missing))
            line = int(line_of_row[row])
            raise DataError(
                f"{path.name}: line {line} has no {name} (too few fields, or an empty one)",
                where=f"{path}, line {line}",
                hint="fix or remove that line, or set the dataset's 'sep' or 'columns' option",
            )
    if name != "rating" and np.issubdtype(values.dtype, np.floating):
        fractional = values != np.floor(values)
        if fractional.any():
            row = int(np.argmax(fractional))
            what = (
                "is not a whole number (timestamps are unix seconds)"
                if name == "timestamp"
                else ("is not an integer")
            )
            raise _bad_value(path, int(line_of_row[row]), name, str(column.iloc[row]), what)
    return _narrow(values, name)


def _bad_value(path: Path, line: int, name: str, value: str, problem: str) -> DataError:
    hint = (
        "ids must be integers: map them to integers first, or set the dataset's 'columns' option "
        "if the columns are in another order"
        if name in ("user", "item")
        else "fix that line, or set the dataset's 'columns' option"
    )
    return DataError(
        f"{path.name}: line {line}: {name} {value!r} {problem}",
        where=f"{path}, line {line}",
        hint=hint,
    )
