"""Interactions from any delimited text file: ``--dataset file:PATH``.

The separator, a header line, the compression and the unit of the timestamps are
detected, and each detection says what it decided; the column order is an option. Parsing
is strict: every malformed line (a non-numeric id, an id beyond 64 bits, a rating that is
not a finite number or is negative) is an error naming its file and line, and no line is
dropped silently. :func:`read_interactions` is also the reader behind the MovieLens
datasets.
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
from decimal import Decimal
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
_UTF8_BOM = b"\xef\xbb\xbf"
#: Seconds per unit of the timestamp units ``time_unit`` may name.
SECONDS_PER_UNIT = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: ``time_unit=auto``: the unit is the first whose threshold the median timestamp exceeds
#: (1e11 s is the year 5138, 1e11 ms the year 1973).
TIME_UNIT_THRESHOLDS = (("ns", 1e17), ("us", 1e14), ("ms", 1e11))
_INT64_LIMIT = 2**63
_EXACT_FLOAT_LIMIT = 2**53

Compression = Literal["auto", "none", "gzip", "bz2", "xz", "zip"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]


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
        Whether the first line is a header; ``None`` detects it: the first line is a
        header when none of its user, item, rating and timestamp fields is a number (a
        first line that looks like data is data). The decision is logged.
    compression:
        ``auto`` picks it from the suffix (``.gz``, ``.bz2``, ``.xz``, ``.zip`` holding
        one file).
    time_unit:
        The unit of the timestamps, converted to seconds: ``s``, ``ms``, ``us``, ``ns``,
        or ``auto``, which reads the median timestamp's magnitude (above 1e11: ms, above
        1e14: us, above 1e17: ns) and warns when it converts.
    negative_ratings:
        Whether a negative rating is data (scales such as Jester's -10..10); off, it is
        an error, as it usually means a mis-read column.
    """

    path: str = ""
    sep: str | None = None
    columns: str = "user,item,rating,timestamp"
    header: bool | None = None
    compression: Compression = "auto"
    time_unit: TimeUnit = "auto"
    negative_ratings: bool = False


class FileDataset:
    """A delimited text file of (user, item[, rating][, timestamp]) events."""

    id: ClassVar[str] = "file"
    summary: ClassVar[str] = "Events from a delimited text file (--dataset file:PATH)"
    version: ClassVar[str] = "2"
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
            time_unit=self.options.time_unit,
            negative_ratings=self.options.negative_ratings,
            ctx=ctx,
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
    time_unit: TimeUnit = "auto",
    negative_ratings: bool = False,
    ctx: DataContext | None = None,
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
        Whether the first line is a header, or ``None`` to detect it (see
        :class:`FileOptions`).
    compression:
        ``auto`` (from the suffix), ``none``, ``gzip``, ``bz2``, ``xz`` or ``zip``.
    time_unit:
        The unit of the timestamps (``auto`` detects it; see :class:`FileOptions`).
    negative_ratings:
        Whether negative ratings are allowed.
    ctx:
        Where the header decision is logged and warnings (converted timestamps) are
        recorded; ``None``: nowhere.

    Returns
    -------
    Interactions
        ``user`` and ``item`` as integers (``int32`` when they fit), ``timestamp`` as
        ``int64`` unix seconds and ``rating`` as ``float32`` when the file has them, in
        file order (when the timestamps are converted from a finer unit: in the order of
        the original timestamps, file order among equal ones). Blank lines are skipped;
        a UTF-8 byte order mark is ignored.

    Raises
    ------
    DataError
        A missing, unreadable or empty file, JSON instead of delimited text, a line with
        the wrong number of fields, a non-numeric id, an id beyond 64-bit integers, or a
        rating that is not a finite number or is negative, each naming the file and line.
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
    _refuse_json(path, numbered[0])
    separator = sep if sep is not None else _sniff_separator(path, numbered, len(columns))
    first_fields = _split(numbered[0][1], separator)
    has_header = header
    if has_header is None:
        has_header = _looks_like_a_header(first_fields, columns)
        if ctx is not None:
            decision = (
                f"header: yes ({','.join(first_fields)})"
                if has_header
                else f"no header (line {numbered[0][0]} is data)"
            )
            ctx.progress.log(f"{path.name}: {decision}", style="dim")
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
    interactions = None
    try:  # fast and lean: the C parser converts to the final types as it reads
        table = _parse(path, kind, separator, columns, skipped_lines, typed=True)
        if len(table) == 0:
            raise DataError(
                f"{path.name} has no events",
                where=str(path),
                hint="check that it is the right file",
            )
        interactions = _from_typed(table, columns, negative_ratings)
    except (ValueError, OverflowError):
        pass
    if interactions is None:
        # A value the typed parse rejects (or a blank line, or a bad rating): parse again
        # as text, so that every problem can be reported with its line.
        table = _parse(path, kind, separator, columns, skipped_lines, typed=False)
        interactions = _to_interactions(
            table, columns, path, first_line=skipped_lines + 1, negative_ratings=negative_ratings
        )
    if interactions.timestamp is None:
        return interactions
    return _in_seconds(interactions, time_unit, path, ctx)


def _looks_like_a_header(fields: list[str], columns: tuple[str, ...]) -> bool:
    """Whether a first line names the columns: none of its used fields is a number and
    none is empty."""
    used = [f.strip() for f, name in zip(fields, columns, strict=False) if name != "ignore"]
    return all(field and not _is_number(field) for field in used)


def _refuse_json(path: Path, first: tuple[int, str]) -> None:
    number, line = first
    if line.lstrip().startswith(("{", "[")):
        raise DataError(
            f"{path.name} looks like JSON lines, not delimited text (line {number} starts "
            f"with {line.lstrip()[0]!r})",
            where=f"{path}, line {number}",
            hint=f"load it with --dataset jsonl:{path}",
        )


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


def _unreadable(path: Path, exc: OSError) -> DataError | None:
    """The error for a file the system cannot read (permissions, I/O), or ``None`` when
    ``exc`` is about the content (a bad compressed stream)."""
    if isinstance(exc, PermissionError):
        return DataError(
            f"cannot read {path}: permission denied",
            where=str(path),
            hint="check the file's permissions",
        )
    if exc.errno is not None:
        return DataError(
            f"cannot read {path}: {exc.strerror or exc}", where=str(path), hint="check the file"
        )
    return None


def _head(path: Path, kind: str) -> tuple[str, bool]:
    """The first :data:`SNIFF_BYTES` of the decompressed file (latin-1, without a UTF-8
    byte order mark), and whether that is the whole file."""
    try:
        with _open(path, kind) as handle:
            data = handle.read(SNIFF_BYTES + 1 + len(_UTF8_BOM))
    except OSError as exc:
        unreadable = _unreadable(path, exc)
        if unreadable is not None:
            raise unreadable from None
        raise _not_compressed_as(path, kind, exc) from None
    except (EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise _not_compressed_as(path, kind, exc) from None
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    return data[:SNIFF_BYTES].decode("latin-1"), len(data) <= SNIFF_BYTES


def _not_compressed_as(path: Path, kind: str, exc: Exception) -> DataError:
    return DataError(
        f"cannot read {path.name} as {kind} ({exc})",
        where=str(path),
        hint="check the file, or set the dataset's 'compression' option",
    )


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
    otherwise every field is kept as text (an empty or missing field is ``""``). Blank
    lines are kept as rows so that row ``i`` is line ``skipped_lines + 1 + i``."""
    names = [f"{name}_{position}" for position, name in enumerate(columns)]
    options: dict[str, object] = {
        "header": None,
        "names": names,
        "skiprows": skipped_lines,
        "skip_blank_lines": False,
        "engine": "c",
        "encoding": "utf-8-sig",  # a byte order mark is not part of the first field
        "encoding_errors": "replace",  # ids are digits; other fields may be any text
    }
    if typed:
        options["dtype"] = {
            label: _TYPES[name]
            for label, name in zip(names, columns, strict=True)
            if name in _TYPES
        }
    else:
        options["dtype"] = str
        options["keep_default_na"] = False  # "NA" is a value to report, "" a missing one
    try:
        with _open(path, kind) as handle, np.errstate(over="ignore"):  # 1e39 -> inf, reported
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
    except OSError as exc:
        raise (_unreadable(path, exc) or _not_compressed_as(path, kind, exc)) from None
    except (EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path.name} ({exc})", where=str(path), hint="check the file"
        ) from None


def _from_typed(
    table: pd.DataFrame, columns: tuple[str, ...], negative_ratings: bool
) -> Interactions:
    """The interactions of a typed table; ``ValueError`` when a rating needs reporting
    (the text parse then names its line)."""
    arrays = {
        name: _narrow(table.iloc[:, position].to_numpy(), name)
        for position, name in enumerate(columns)
        if name != "ignore"
    }
    rating = arrays.get("rating")
    if rating is not None and (
        not np.isfinite(rating).all() or (not negative_ratings and (rating < 0).any())
    ):
        raise ValueError("a rating to report")
    return Interactions(
        user=arrays["user"],
        item=arrays["item"],
        timestamp=arrays.get("timestamp"),
        rating=rating,
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
    table: pd.DataFrame,
    columns: tuple[str, ...],
    path: Path,
    first_line: int,
    negative_ratings: bool,
) -> Interactions:
    """Typed columns from a text table, with blank lines dropped and bad values reported
    by line (row ``i`` of ``table`` is line ``first_line + i`` of the file)."""
    line_of_row = first_line + np.arange(len(table))
    used = {
        name: table.iloc[:, position].to_numpy(dtype=object)
        for position, name in enumerate(columns)
        if name != "ignore"
    }
    stripped = {name: np.char.strip(values.astype(str)) for name, values in used.items()}
    blank = np.logical_and.reduce([values == "" for values in stripped.values()])
    if blank.all():
        raise DataError(
            f"{path.name} has no events", where=str(path), hint="check that it is the right file"
        )
    if blank.any():
        line_of_row = line_of_row[~blank]
        stripped = {name: values[~blank] for name, values in stripped.items()}
    arrays = {
        name: (
            _ratings(values, path, line_of_row, negative_ratings)
            if name == "rating"
            else _integers(values, name, path, line_of_row)
        )
        for name, values in stripped.items()
    }
    return Interactions(
        user=arrays["user"],
        item=arrays["item"],
        timestamp=arrays.get("timestamp"),
        rating=arrays.get("rating"),
    )


def _missing(path: Path, name: str, line: int) -> DataError:
    return DataError(
        f"{path.name}: line {line} has no {name} (too few fields, or an empty one)",
        where=f"{path}, line {line}",
        hint="fix or remove that line, or set the dataset's 'sep' or 'columns' option",
    )


def _integers(text: np.ndarray, name: str, path: Path, line_of_row: np.ndarray) -> np.ndarray:
    """The whole numbers of a column of text fields, exact to 64 bits."""
    empty = text == ""
    if empty.any():
        raise _missing(path, name, int(line_of_row[np.argmax(empty)]))
    what = f"{name} id" if name in ("user", "item") else name
    numbers = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy()
    if numbers.dtype == np.int64:
        return _narrow(numbers, name)
    floats = numbers.astype(np.float64)
    non_numeric = np.isnan(floats)
    if non_numeric.any():
        row = int(np.argmax(non_numeric))
        line = int(line_of_row[row])
        raise _bad_value(path, line, name, f"non-numeric {what} {str(text[row])!r} at line {line}")
    fractional = np.isinf(floats) | (floats != np.floor(floats))
    if fractional.any():
        row = int(np.argmax(fractional))
        line = int(line_of_row[row])
        raise _bad_value(
            path, line, name, f"{what} {str(text[row])!r} at line {line} is not a whole number"
        )
    # Beyond 2**53 a float is not exact: read those fields again as Python integers.
    values = np.zeros(len(text), dtype=np.int64)
    small = np.abs(floats) < _EXACT_FLOAT_LIMIT
    values[small] = floats[small]
    for row in np.flatnonzero(~small):
        exact = int(Decimal(str(text[row])))
        if not -_INT64_LIMIT <= exact < _INT64_LIMIT:
            line = int(line_of_row[row])
            raise _bad_value(
                path,
                line,
                name,
                f"{what} {str(text[row])!r} at line {line} does not fit a 64-bit integer",
            )
        values[row] = exact
    return _narrow(values, name)


def _ratings(
    text: np.ndarray, path: Path, line_of_row: np.ndarray, negative_ratings: bool
) -> np.ndarray:
    """The ratings of a column of text fields: finite, and not negative unless allowed."""
    empty = text == ""
    if empty.any():
        raise _missing(path, "rating", int(line_of_row[np.argmax(empty)]))
    with np.errstate(over="ignore"):  # beyond float32: infinite, and reported below
        values = (
            pd.to_numeric(pd.Series(text), errors="coerce")
            .to_numpy(dtype=np.float64)
            .astype(np.float32)
        )
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        line = int(line_of_row[row])
        raise _bad_value(
            path, line, "rating", f"rating {str(text[row])!r} at line {line} is not a finite number"
        )
    negative = values < 0
    if negative.any() and not negative_ratings:
        row = int(np.argmax(negative))
        line = int(line_of_row[row])
        raise DataError(
            f"{path.name}: negative rating {str(text[row])!r} at line {line}",
            where=f"{path}, line {line}",
            hint="fix that line, set the dataset's 'columns' option if the columns are in "
            "another order, or -o file.negative_ratings=true if the scale has negative values",
        )
    return values


def _bad_value(path: Path, line: int, name: str, description: str) -> DataError:
    """``description`` (which names the line), prefixed with the file, and a hint."""
    hint = (
        "ids must be integers: map them to integers first, or set the dataset's 'columns' option "
        "if the columns are in another order"
        if name in ("user", "item")
        else "fix that line, or set the dataset's 'columns' option"
    )
    if line == 1 and description.startswith("non-numeric"):
        hint += " (if line 1 is a header, set the dataset's 'header' option to true)"
    return DataError(f"{path.name}: {description}", where=f"{path}, line {line}", hint=hint)


def _in_seconds(
    interactions: Interactions, time_unit: TimeUnit, path: Path, ctx: DataContext | None
) -> Interactions:
    """The interactions with timestamps in seconds (``time_unit``; ``auto`` detects it).
    A conversion orders the events by their original timestamps first (file order among
    equal ones), so that events in the same second stay in chronological order."""
    timestamps = np.asarray(interactions.timestamp)
    unit: str = time_unit
    if unit == "auto":
        median = float(np.median(np.abs(timestamps))) if len(timestamps) else 0.0
        unit = next((u for u, limit in TIME_UNIT_THRESHOLDS if median > limit), "s")
        if unit != "s" and ctx is not None:
            ctx.warn(
                f"{path.name}: timestamps taken as {_UNIT_NAMES[unit]} (median "
                f"{median:.0f}) and converted to seconds; -o file.time_unit=s keeps them as "
                "they are"
            )
    if unit == "s":
        return interactions
    order = np.argsort(timestamps, kind="stable")
    return Interactions(
        user=interactions.user[order],
        item=interactions.item[order],
        timestamp=timestamps[order] // SECONDS_PER_UNIT[unit],
        rating=None if interactions.rating is None else interactions.rating[order],
    )


_UNIT_NAMES = {"ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
