"""Atomic writes: a file or folder appears at its destination complete, or not at all.

Every file recbench writes (results, the derived-data cache, downloads, checkpoints,
exported graphs) goes through this module. :func:`atomic_write` writes into a temporary
file beside the destination and renames it into place only when the writing succeeded
(a rename within one folder is atomic), so an interrupted write never leaves a
half-written file where a reader expects a whole one, and a failed write leaves the
previous file untouched. :func:`replace_folder` does the same for a folder of files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")


def atomic_write(path: Path, write: Callable[[BinaryIO], T], *, suffix: str = ".tmp") -> T:
    """Write ``path`` through ``write(handle)`` and an atomic rename.

    Parameters
    ----------
    path:
        The destination; its folder is created when missing.
    write:
        Writes the file's bytes to the binary handle it is given. When it raises, the
        temporary file is removed and ``path`` is left as it was.
    suffix:
        The suffix of the temporary file (a hidden ``.<name>.<random><suffix>`` in the
        destination's folder).

    Returns
    -------
    T
        What ``write`` returned.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as sink:
            result = write(sink)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return result


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda sink: sink.write(data))


def replace_folder(folder: Path, fill: Callable[[Path], T]) -> T:
    """Fill a fresh staging folder with ``fill(staging)``, then put it in ``folder``'s place.

    The staging folder is a hidden sibling of ``folder``; once ``fill`` returns, an
    existing ``folder`` is moved aside, the staging folder renamed to ``folder`` and the
    old one deleted. A reader therefore never finds ``folder`` half filled. When ``fill``
    raises, the staging folder is deleted and ``folder`` is left as it was.

    Returns
    -------
    T
        What ``fill`` returned (paths inside the staging folder are relative to it, not
        to ``folder``).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp"
    staging.mkdir()
    try:
        result = fill(staging)
        previous = staging.with_suffix(".old")
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result
