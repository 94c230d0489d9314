"""Events from JSON lines files: ``--dataset jsonl:PATH`` and the readers behind the
Amazon reviews and OTTO datasets.

A JSON lines file holds one JSON object per line. It is read as a stream (one line at a
time), plain or compressed with gzip, bzip2 or xz (detected from the first bytes, not the
name), or as the one file inside a ``.zip``. A line that is not a JSON object, or lacks a
field, is an error naming the file and the line.

User and item ids may be integers or strings. Integer ids stay integers (as in any other
dataset); when any id of a column is a string, every id of that column is taken as its
text, and recbench maps them to integers when it preprocesses the events, keeping the
text of every item for reports and export.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import math
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from recbench.plugin import ConfigError, DataContext, DataError, Interactions

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def open_text(path: Path) -> IO[str]:
    """``path`` opened as UTF-8 text, decompressed (gzip, bzip2, xz, one-file zip) when
    its first bytes say it is compressed."""
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rt", encoding="utf-8")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rt", encoding="utf-8")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rt", encoding="utf-8")
    if magic.startswith(b"PK\x03\x04"):
        archive = zipfile.ZipFile(path)
        members = [name for name in archive.namelist() if not name.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise DataError(
                f"{path.name} holds {len(members)} files, expected one JSON lines file",
                where=str(path),
                hint="unzip it and give the JSON lines file itself",
            )
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8")
    return path.open(encoding="utf-8")


def json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of a JSON lines file, streamed.

    Raises
    ------
    DataError
        When a line is not a JSON object, or the file cannot be read or decompressed.
    """
    number = 0
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path.name} line {number} is not valid JSON ({exc.msg}, column "
                        f"{exc.colno})",
                        where=f"{path}:{number}",
                        hint="every line must be one JSON object; check that it is the right "
                        "file and that it is complete",
                    ) from None
                if not isinstance(record, dict):
                    raise DataError(
                        f"{path.name} line {number} is a JSON {type(record).__name__}, not an "
                        "object",
                        where=f"{path}:{number}",
                        hint="every line must be one JSON object such as "
                        '{"user_id": "u1", "item_id": "i1"}',
                    )
                yield number, record
    except (OSError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"cannot read {path.name} after line {number} ({reason})",
            where=str(path),
            hint="check that the file is complete and readable (a truncated download "
            "cannot be decompressed)",
        ) from None


def field(record: dict[str, Any], name: str, path: Path, number: int) -> Any:
    """``record[name]``, or an error naming the file, the line and the field."""
    try:
        return record[name]
    except KeyError:
        raise DataError(
            f"{path.name} line {number} has no field '{name}'",
            where=f"{path}:{number}",
            hint=f"every line needs '{name}'; its fields are " + ", ".join(sorted(record)),
        ) from None


class IdColumn:
    """The ids of one column, met one at a time, as integer codes and an id table."""

    def __init__(self, name: str):
        self.name = name
        self._code_of: dict[int | str, int] = {}
        self._codes = array("q")

    def add(self, value: Any, path: Path, number: int) -> None:
        """Append the id ``value`` (an integer or a non-empty string) of line ``number``."""
        if type(value) is int:
            key: int | str = value if _INT64_MIN <= value <= _INT64_MAX else str(value)
        elif isinstance(value, str) and value:
            key = value
        else:
            raise DataError(
                f"{path.name} line {number}: the {self.name} id {json.dumps(value)} is not a "
                "string or an integer",
                where=f"{path}:{number}",
                hint=f"{self.name} ids must be JSON strings or integers",
            )
        code = self._code_of.get(key)
        if code is None:
            code = self._code_of[key] = len(self._code_of)
        self._codes.append(code)

    def columns(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(column, None)`` with the integer ids when every id is an integer, else
        ``(codes, id table)`` with the ids as text (``1`` and ``"1"`` are one id)."""
        codes = np.frombuffer(self._codes, dtype=np.int64).copy() if self._codes else None
        if codes is None:
            return np.zeros(0, dtype=np.int64), None
        keys = list(self._code_of)
        if all(type(key) is int for key in keys):
            return np.array(keys, dtype=np.int64)[codes], None
        distinct, inverse = np.unique(np.array([str(key) for key in keys]), return_inverse=True)
        return inverse.reshape(-1)[codes], distinct


def timestamp_seconds(value: Any, path: Path, number: int, name: str) -> int:
    """Whole unix seconds of a number (seconds), a string of digits, or an ISO 8601 date."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return math.floor(value)
    seconds = _text_seconds(value.strip()) if isinstance(value, str) else None
    if seconds is not None:
        return seconds
    raise DataError(
        f"{path.name} line {number}: '{name}' is {json.dumps(value)}, not a time",
        where=f"{path}:{number}",
        hint="times must be unix seconds (a number) or ISO 8601 dates such as 2014-04-07T10:51:09Z",
    )


def _text_seconds(text: str) -> int | None:
    """Unix seconds of a string of digits or an ISO 8601 date, else ``None``."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return math.floor(moment.timestamp())


def rating_value(value: Any, path: Path, number: int, name: str) -> float:
    """A finite rating from a JSON number or a numeric string."""
    if isinstance(value, str) and _is_number(value):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise DataError(
        f"{path.name} line {number}: '{name}' is {json.dumps(value)}, not a finite number",
        where=f"{path}:{number}",
        hint="ratings must be numbers",
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_json_events(
    path: Path, user: str, item: str, timestamp: str | None, rating: str | None
) -> Interactions:
    """Events from a JSON lines file with one event per line, reading the named fields.

    ``timestamp`` and ``rating`` are ``None`` when the events have none; a named field
    must be in every line.
    """
    users, items = IdColumn("user"), IdColumn("item")
    times, ratings = array("q"), array("d")
    for number, record in json_records(path):
        users.add(field(record, user, path, number), path, number)
        items.add(field(record, item, path, number), path, number)
        if timestamp is not None:
            value = field(record, timestamp, path, number)
            times.append(timestamp_seconds(value, path, number, timestamp))
        if rating is not None:
            ratings.append(rating_value(field(record, rating, path, number), path, number, rating))
    user_column, user_ids = users.columns()
    item_column, item_ids = items.columns()
    return Interactions(
        user=user_column,
        item=item_column,
        timestamp=None if timestamp is None else np.array(times, dtype=np.int64),
        rating=None if rating is None else np.array(ratings, dtype=np.float32),
        user_ids=user_ids,
        item_ids=item_ids,
    )


def first_record_fields(path: Path) -> set[str]:
    """The fields of the first object of a JSON lines file (empty when it has none)."""
    for _, record in json_records(path):
        return set(record)
    return set()


def resolve_path(path: str, dataset_id: str, ctx: DataContext) -> Path:
    """The file ``path`` names: as given, then relative to the data root."""
    if not path:
        raise ConfigError(
            f"dataset '{dataset_id}' needs a path",
            where=f"option {dataset_id}.path",
            hint=f"pass --dataset {dataset_id}:PATH",
        )
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, ctx.data_root / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise DataError(
        f"no file '{path}'",
        where=" and ".join(str(c) for c in candidates),
        hint="check the path (a relative path is looked up in the current directory, "
        "then in RECBENCH_DATA)",
    )


def file_fingerprint(path: Path) -> str:
    status = path.stat()
    return f"{path}:{status.st_size}:{status.st_mtime_ns}"


@dataclass(frozen=True)
class JsonLinesOptions:
    """Options of the ``jsonl`` dataset.

    path:
        The file (``jsonl:PATH``): a relative path is looked up in the current directory,
        then in the data root (``RECBENCH_DATA``).
    user, item:
        The fields holding the user and the item id (strings or integers) of a line.
    timestamp:
        The field holding the event's time (unix seconds, or an ISO 8601 date). With the
        default name the events have no times when the first line has no such field;
        another name must be in every line; an empty value reads no times.
    rating:
        The field holding a rating, read like ``timestamp``.
    """

    path: str = ""
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    rating: str = "rating"


class JsonLinesDataset:
    """A JSON lines file with one event (an object) per line, fields mapped by options."""

    id: ClassVar[str] = "jsonl"
    summary: ClassVar[str] = (
        "Events from a JSON lines file, one object per line (--dataset jsonl:PATH)"
    )
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = JsonLinesOptions
    argument_option: ClassVar[str | None] = "path"

    def __init__(self, options: JsonLinesOptions):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        return file_fingerprint(resolve_path(self.options.path, self.id, ctx))

    def load(self, ctx: DataContext) -> Interactions:
        path = resolve_path(self.options.path, self.id, ctx)
        fields = first_record_fields(path)
        if not fields:
            raise DataError(f"{path.name} has no events", where=str(path), hint="check the file")
        return read_json_events(
            path,
            self.options.user,
            self.options.item,
            self._optional("timestamp", fields, path),
            self._optional("rating", fields, path),
        )

    def _optional(self, option: str, fields: set[str], path: Path) -> str | None:
        """The field read for ``option``, or ``None`` for no such column."""
        name: str = getattr(self.options, option)
        if not name or (name == getattr(JsonLinesOptions, option) and name not in fields):
            return None
        if name not in fields:
            raise DataError(
                f"the first event of {path.name} has no field '{name}' (option jsonl.{option})",
                where=str(path),
                hint=f"name one of its fields ({', '.join(sorted(fields))}) with "
                f"-o jsonl.{option}=FIELD, or -o jsonl.{option}= for none",
            )
        return name
