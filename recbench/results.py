"""The results store: a run is a directory of small files, written atomically.

Layout of a run directory::

    config.json         the fully resolved configuration (and the command line)
    environment.json    versions, device, git hash, plugins
    dataset.json        statistics of the prepared dataset
    cells/<key>.json    one file per (dataset, model, protocol, seed[, fold]) cell
    cells/<key>.npz     that cell's per-query metric arrays (and ``query_user``, the
                        test user of each query, :data:`QUERY_USER`)
    report.md           the markdown report (re-rendered by ``recbench report``)

Every cell file carries ``schema_version``. Writes go to a temporary file that is then
renamed (:mod:`recbench.data.files`), so an interrupted run never leaves a half-written
file behind, and a rerun with ``--resume`` skips the cells that are finished with the same
key. A cell records the SHA-256 of its own JSON (``record_sha256``) and the size and
SHA-256 of its ``.npz`` (``per_query_bytes``, ``per_query_sha256``); a cell whose files do
not read back as written is *damaged* (:class:`DamagedCell`): ``--resume`` recomputes it,
and the report refuses it naming the command that repairs it. Cells written before these
fields existed are read without the hash checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import zipfile
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recbench.data.files import remove_stale_temporaries, write_bytes_atomic
from recbench.errors import ConfigError, DataError
from recbench.version import __version__

#: The key of a cell's per-query arrays that holds each query's test user (int64 ``[Q]``,
#: the user's position among the split's test users): paired tests average a user's
#: queries first (:mod:`recbench.stats.significance`). Not a metric; cells written
#: before it existed do not have it.
QUERY_USER = "query_user"

if TYPE_CHECKING:
    from recbench.data.prepare import PreparedData

SCHEMA_VERSION = 1

#: The fields every reader of a cell needs (``metrics`` too when its status is ``ok``).
CELL_FIELDS = ("status", "protocol", "model_label", "seed")


def write_json(path: Path, value: Any) -> None:
    write_bytes_atomic(
        path, (json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n").encode()
    )


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"missing result file {path.name}", where=str(path.parent)) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"result file is not valid JSON: {exc.msg} at line {exc.lineno}", where=str(path)
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cell_name(
    dataset: str, model_label: str, protocol: str, seed: int, fold: int | None = None
) -> str:
    """A file-system safe, readable name of a cell (``...__seed0``, or ``...__seed0__fold2``
    for fold 2 of a k-fold split)."""
    raw = f"{dataset}__{model_label}__{protocol}__seed{seed}"
    if fold is not None:
        raw += f"__fold{fold}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", raw).strip("-")


def key_of(payload: Mapping[str, Any]) -> str:
    """A cell's key: a hash of ``payload``, everything that changes the cell's result
    (the first 20 hex digits of the SHA-256 of its JSON, keys sorted)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def split_key(cell: Mapping[str, Any]) -> Hashable:
    """The split whose queries a cell evaluated: its seed, or (seed, fold) in a k-fold
    run. Cells of one split key are paired query by query."""
    seed = int(cell["seed"])
    return seed if cell.get("fold") is None else (seed, int(cell["fold"]))


def _fold_of(split: Hashable) -> Hashable:
    return split[1] if isinstance(split, tuple) else None


@dataclass
class RunDirectory:
    """A run directory on disk."""

    path: Path

    @staticmethod
    def check_available(path: Path, *, resume: bool) -> None:
        """Refuse a path that is a file, or an existing non-empty directory without
        ``resume`` (so that no finished result is overwritten by accident)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError("the output path exists and is not a directory", where=str(path))
        if path.exists() and any(path.iterdir()) and not resume:
            raise ConfigError(
                "the run directory already exists",
                where=str(path),
                hint="pass --resume to continue it, or choose another --out",
            )

    @classmethod
    def create(cls, path: Path, *, resume: bool) -> RunDirectory:
        """Create (or, with ``resume``, reopen) a run directory, and remove the temporary
        files that killed writes left in it
        (:func:`recbench.data.files.remove_stale_temporaries`)."""
        path = Path(path)
        cls.check_available(path, resume=resume)
        try:
            (path / "cells").mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            remove_stale_temporaries(path)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the run directory ({exc.strerror})",
                where=str(path),
                hint="choose a writable --out",
            ) from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDirectory:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError("not a recbench run directory (no config.json)", where=str(path))
        return cls(path)

    def write_run_files(
        self,
        *,
        command: Sequence[str] | None,
        config: Mapping[str, Any],
        environment: Mapping[str, Any],
        data: PreparedData,
        **dataset_fields: Any,
    ) -> None:
        """Write what a run was made of: ``config.json`` (the resolved ``config``, the
        command line and recbench's version), ``environment.json`` and ``dataset.json``
        (the prepared data's name, id, key, statistics and preprocessing, its warnings
        when it has any, and ``dataset_fields``). A resumed run keeps the commands and git revisions of the
        earlier invocations (``earlier_commands``, ``earlier_git``): its finished cells
        were made by them."""
        command_line = shlex.join(command) if command else None
        config_file: dict[str, Any] = {
            "command": command_line,
            "recbench": __version__,
            "config": config,
        }
        environment = dict(environment)
        config_path, environment_path = self.path / "config.json", self.path / "environment.json"
        if config_path.is_file() and environment_path.is_file():
            before, before_environment = read_json(config_path), read_json(environment_path)
            commands = [*before.get("earlier_commands", []), before.get("command")]
            revisions = [*before_environment.get("earlier_git", []), before_environment.get("git")]
            commands = [c for c in dict.fromkeys(commands) if c and c != command_line]
            revisions = [g for g in dict.fromkeys(revisions) if g and g != environment.get("git")]
            if commands:
                config_file["earlier_commands"] = commands
            if revisions:
                environment["earlier_git"] = revisions
        write_json(config_path, config_file)
        write_json(environment_path, environment)
        write_json(
            self.path / "dataset.json",
            {
                "name": data.name,
                "id": data.dataset_id,
                "key": data.key,
                "statistics": data.statistics,
                "preprocessing": data.preprocessing,
                **({"warnings": list(data.warnings)} if data.warnings else {}),
                **dataset_fields,
            },
        )

    # -- cells ---------------------------------------------------------------------------
    def cell_json(self, name: str) -> Path:
        return self.path / "cells" / f"{name}.json"

    def write_cell(
        self, name: str, cell: Mapping[str, Any], per_query: Mapping[str, np.ndarray]
    ) -> None:
        """Write a cell's per-query arrays, then its JSON (the JSON marks it finished).

        The JSON records the size and SHA-256 of the arrays' file and its own SHA-256."""
        record = dict(cell)
        record["schema_version"] = SCHEMA_VERSION
        if per_query:
            buffer = io.BytesIO()
            arrays: dict[str, Any] = {key: np.asarray(v) for key, v in per_query.items()}
            np.savez_compressed(buffer, **arrays)
            content = buffer.getvalue()
            write_bytes_atomic(self.path / "cells" / f"{name}.npz", content)
            record["per_query_file"] = f"{name}.npz"
            record["per_query_bytes"] = len(content)
            record["per_query_sha256"] = hashlib.sha256(content).hexdigest()
        # what the JSON reads back as, so that the hash is computed the same way on reading
        record = json.loads(json.dumps(record, default=_json_default))
        record["record_sha256"] = _record_hash(record)
        write_json(self.cell_json(name), record)

    def read_cell(self, name: str) -> dict[str, Any] | None:
        """The cell ``name`` as stored, or ``None`` when it is absent or was written by
        an incompatible version (both: compute it).

        Raises
        ------
        DamagedCell
            Its files do not read back as written (:meth:`check_cell`).
        """
        path = self.cell_json(name)
        if not path.is_file():
            return None
        cell = self.check_cell(path)
        if cell.get("schema_version") != SCHEMA_VERSION:
            return None  # written by an incompatible version: recompute
        return cell

    def check_cell(self, path: Path) -> dict[str, Any]:
        """The cell record in ``path``, after checking that it and its per-query file
        read back as they were written.

        Raises
        ------
        DamagedCell
            The JSON is unreadable, truncated, not a cell record, lacks a field, or does
            not match its hash; or the per-query file is missing, of another size,
            unreadable, or does not match its hash.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self._damaged(path, f"unreadable: {_reason(exc)}") from None
        try:
            cell = json.loads(text)
        except json.JSONDecodeError:
            reason = "empty file" if not text.strip() else "truncated or not valid JSON"
            raise self._damaged(path, reason) from None
        if not isinstance(cell, dict) or "schema_version" not in cell:
            raise self._damaged(path, "not a cell record")
        if cell["schema_version"] != SCHEMA_VERSION:
            return cell  # another version's record: the caller decides
        recorded = cell.pop("record_sha256", None)
        if recorded is not None and recorded != _record_hash(cell):
            raise self._damaged(path, "its contents do not match the recorded hash")
        missing = [f for f in CELL_FIELDS if f not in cell]
        if cell.get("status") == "ok" and not isinstance(cell.get("metrics"), dict):
            missing.append("metrics")
        if missing:
            raise self._damaged(path, f"no {', '.join(missing)}")
        if cell.get("per_query_file"):
            self._per_query_bytes(cell, path)
        return cell

    def _per_query_bytes(self, cell: Mapping[str, Any], cell_path: Path) -> bytes:
        """The bytes of ``cell``'s per-query file, checked against its size and hash."""
        path = self.path / "cells" / str(cell["per_query_file"])
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise self._damaged(cell_path, f"its per-query file {path.name} is missing") from None
        except OSError as exc:
            raise self._damaged(cell_path, f"{path.name} is unreadable: {_reason(exc)}") from None
        size, digest = cell.get("per_query_bytes"), cell.get("per_query_sha256")
        if size is not None and len(content) != size:
            reason = f"{path.name} has {len(content):,} bytes, {size:,} were written"
            raise self._damaged(cell_path, reason)
        if digest is not None and hashlib.sha256(content).hexdigest() != digest:
            raise self._damaged(cell_path, f"{path.name} does not match the recorded hash")
        if digest is None:  # written before hashes were recorded: check that it opens
            try:
                with np.load(io.BytesIO(content), allow_pickle=False) as data:
                    data.files  # noqa: B018 (reads the archive's directory)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise self._damaged(
                    cell_path, f"{path.name} is unreadable: {_reason(exc)}"
                ) from None
        return content

    def _damaged(self, path: Path, reason: str) -> DamagedCell:
        return DamagedCell(path.stem, reason, where=str(path), hint=self.repair_hint())

    def repair_hint(self) -> str:
        """How to recompute this run's damaged cells: its command with ``--resume``."""
        try:
            command = json.loads((self.path / "config.json").read_text()).get("command")
        except (OSError, ValueError, AttributeError):
            command = None
        if not command:
            return "recompute it: run the same benchmark again with resume=True"
        if "--resume" not in shlex.split(command):
            command += " --resume"
        return f"recompute it with `{command}`"

    def query_users(
        self, per_query_of: Sequence[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]]
    ) -> dict[Hashable, np.ndarray] | None:
        """The test user of each query of every split, from ``(cell, its per-query
        arrays)`` pairs of one protocol (:data:`QUERY_USER`), for
        :func:`recbench.stats.significance.pooled_differences`; ``None`` when a cell lacks
        them (written before they were recorded): tests then pair queries."""
        users: dict[Hashable, np.ndarray] = {}
        for cell, per_query in per_query_of:
            if QUERY_USER not in per_query:
                return None
            users.setdefault(split_key(cell), per_query[QUERY_USER])
        return users

    def same_queries(self) -> Callable[[Hashable], Hashable] | None:
        """The query set of a split (:func:`split_key`) when the run's seeds share their
        queries -- a fixed ``split.seed`` tests one split's users at every seed, so a
        split's queries are those of its fold -- for
        :func:`recbench.stats.significance.pooled_differences`; ``None`` when each seed
        splits anew."""
        config = read_json(self.path / "config.json").get("config", {})
        if config.get("split", {}).get("seed") is None:
            return None
        return _fold_of

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every finished cell, in name order.

        Raises
        ------
        DamagedCell
            A cell's files do not read back as written (:meth:`check_cell`).
        DataError
            A cell was written with another schema version.
        """
        for path in sorted((self.path / "cells").glob("*.json")):
            cell = self.check_cell(path)
            if cell.get("schema_version") != SCHEMA_VERSION:
                raise DataError(
                    f"cell written with schema version {cell.get('schema_version')}, "
                    f"this recbench reads {SCHEMA_VERSION}",
                    where=str(path),
                    hint="rerun the benchmark with this version of recbench",
                )
            yield cell

    def per_query(self, cell: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The per-query metric arrays of a cell (empty when it has none).

        Raises
        ------
        DamagedCell
            The file is missing, unreadable or not as written.
        """
        name = cell.get("per_query_file")
        if not name:
            return {}
        cell_path = self.cell_json(Path(str(name)).stem)
        content = self._per_query_bytes(cell, cell_path)
        try:
            with np.load(io.BytesIO(content), allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._damaged(cell_path, f"{name} is unreadable: {_reason(exc)}") from None


class DamagedCell(DataError):
    """A cell whose files do not read back as they were written.

    ``name`` is the cell's name, ``reason`` what is wrong with it."""

    def __init__(self, name: str, reason: str, *, where: str | None, hint: str | None):
        self.name, self.reason = name, reason
        super().__init__(f"cell {name} is damaged ({reason})", where=where, hint=hint)


def _record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 of a cell record's JSON (keys sorted, without ``record_sha256``)."""
    text = json.dumps({k: v for k, v in record.items() if k != "record_sha256"}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _reason(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__).splitlines()[0]
