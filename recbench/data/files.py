"""Atomic writes: a file or folder appears at its destination complete, or not at all.

Every file recbench writes (results, the derived-data cache, downloads, checkpoints,
exported graphs) goes through this module. :func:`atomic_write` writes into a temporary
file beside the destination and renames it into place only when the writing succeeded
(a rename within one folder is atomic), so an interrupted write never leaves a
half-written file where a reader expects a whole one, and a failed write leaves the
previous file untouched. The file and its folder are flushed to the disk (``fsync``)
before the write counts as done, so a power loss leaves the old file or the new one, not
an empty one. Files get the mode that the umask gives new files (``0644`` under the usual
umask), not the ``0600`` of a temporary file. :func:`replace_folder` does the same for a
folder of files. A write that fails for lack of space or an I/O error raises
:class:`WriteError` (one line: the path, and the space needed); a killed write leaves
only a hidden temporary file, which :func:`remove_stale_temporaries` removes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from recbench.errors import DataError

T = TypeVar("T")

#: The suffix of the temporary files and staging folders of this module.
TEMPORARY_SUFFIX = ".tmp"

#: The ``errno`` values that mean "the storage failed" rather than "the data is wrong".
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)


class WriteError(DataError):
    """A file could not be written: no space left, an I/O error, no permission.

    Not a fault of what was being written, so a caller must not blame it on that (the
    runner does not mark a model failed for it).
    """


def _file_mode() -> int:
    """The mode the umask gives a new file (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _fsync_directory(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename) to the disk, where the system allows it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_error(path: Path, exc: OSError, needed: int | None) -> WriteError:
    """The one-line error of a failed write of ``path`` (``needed``: bytes it needs)."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        size = f"at least {_size(needed)}" if needed else "more space"
        what = f"no space left to write {path.name}"
        hint = f"free {size} there" + (f" ({_size(free)} free now)" if free is not None else "")
    else:
        what = f"cannot write {path.name} ({exc.strerror or exc})"
        hint = "check the folder's permissions and the disk"
    return WriteError(what, where=str(path.parent), hint=hint)


def _size(n_bytes: int | None) -> str:
    value = float(n_bytes or 0)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def atomic_write(
    path: Path, write: Callable[[BinaryIO], T], *, suffix: str = TEMPORARY_SUFFIX, size: int = 0
) -> T:
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
    size:
        The file's size in bytes when known beforehand (a disk-full error names it).

    Returns
    -------
    T
        What ``write`` returned.

    Raises
    ------
    WriteError
        The disk is full, or another storage error (:data:`STORAGE_ERRNOS`) stopped the
        write, or creating the folder or the temporary file, flushing or renaming failed.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix
        )
    except OSError as exc:
        raise _write_error(path, exc, size) from None
    sink = os.fdopen(handle, "wb")
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(handle, _FILE_MODE)
            result = write(sink)
            sink.flush()
            os.fsync(handle)
        except OSError as exc:
            if exc.errno not in STORAGE_ERRNOS:
                raise
            raise _write_error(path, exc, max(size, _position(sink))) from None
        finally:
            with contextlib.suppress(OSError):  # the error that matters was raised above
                sink.close()
        try:
            os.replace(temporary, path)
            _fsync_directory(path.parent)
        except OSError as exc:
            raise _write_error(path, exc, size) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return result


def _position(sink: BinaryIO) -> int:
    try:
        return sink.tell()
    except (OSError, ValueError):
        return 0


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda sink: sink.write(data), size=len(data))


def remove_stale_temporaries(folder: Path, *, older_than: float = 300.0) -> list[Path]:
    """Remove the temporary files and staging folders that killed writes left in
    ``folder`` and below (hidden names ending in :data:`TEMPORARY_SUFFIX`).

    Only those untouched for ``older_than`` seconds are removed, so that a write still
    in progress in another process keeps its temporary file.

    Returns
    -------
    list[Path]
        What was removed.
    """
    removed = []
    now = time.time()
    for stale in folder.rglob(f".*{TEMPORARY_SUFFIX}"):
        try:
            if now - stale.stat().st_mtime < older_than:
                continue
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: harmless
        removed.append(stale)
    return removed


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
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}"
    staging.mkdir()
    try:
        result = fill(staging)
        previous = staging.with_suffix(".old")
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        _fsync_directory(folder.parent)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result
