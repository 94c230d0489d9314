"""The results store: a run is a directory of small files, written atomically.

Layout of a run directory::

    config.json         the fully resolved configuration (and the command line)
    environment.json    versions, device, git hash, plugins
    dataset.json        statistics of the prepared dataset
    cells/<key>.json    one file per (dataset, model, protocol, seed) cell
    cells/<key>.npz     that cell's per-query metric arrays
    report.md           the markdown report (re-rendered by ``recbench report``)

Every cell file carries ``schema_version``. Writes go to a temporary file that is then
renamed, so an interrupted run never leaves a half-written file behind, and a rerun with
``--resume`` skips the cells that are finished with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recbench.data.files import write_bytes_atomic
from recbench.errors import ConfigError, DataError
from recbench.version import __version__

if TYPE_CHECKING:
    from recbench.data.prepare import PreparedData

SCHEMA_VERSION = 1


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


def cell_name(dataset: str, model_label: str, protocol: str, seed: int) -> str:
    """A file-system safe, readable name of a cell."""
    raw = f"{dataset}__{model_label}__{protocol}__seed{seed}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", raw).strip("-")


def key_of(payload: Mapping[str, Any]) -> str:
    """A cell's key: a hash of ``payload``, everything that changes the cell's result
    (the first 20 hex digits of the SHA-256 of its JSON, keys sorted)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


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
        """Create (or, with ``resume``, reopen) a run directory."""
        path = Path(path)
        cls.check_available(path, resume=resume)
        try:
            (path / "cells").mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
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
        """Write a cell's per-query arrays, then its JSON (the JSON marks it finished)."""
        record = dict(cell)
        record["schema_version"] = SCHEMA_VERSION
        if per_query:
            import io

            buffer = io.BytesIO()
            arrays: dict[str, Any] = {key: np.asarray(v) for key, v in per_query.items()}
            np.savez_compressed(buffer, **arrays)
            write_bytes_atomic(self.path / "cells" / f"{name}.npz", buffer.getvalue())
            record["per_query_file"] = f"{name}.npz"
        write_json(self.cell_json(name), record)

    def read_cell(self, name: str) -> dict[str, Any] | None:
        path = self.cell_json(name)
        if not path.is_file():
            return None
        cell = read_json(path)
        if cell.get("schema_version") != SCHEMA_VERSION:
            return None  # written by an incompatible version: recompute
        return dict(cell)

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every finished cell, in name order."""
        for path in sorted((self.path / "cells").glob("*.json")):
            cell = read_json(path)
            if cell.get("schema_version") != SCHEMA_VERSION:
                raise DataError(
                    f"cell written with schema version {cell.get('schema_version')}, "
                    f"this recbench reads {SCHEMA_VERSION}",
                    where=str(path),
                    hint="rerun the benchmark with this version of recbench",
                )
            yield cell

    def per_query(self, cell: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The per-query metric arrays of a cell (empty when it has none)."""
        name = cell.get("per_query_file")
        if not name:
            return {}
        with np.load(self.path / "cells" / name) as data:
            return {key: data[key] for key in data.files}
