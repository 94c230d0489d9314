"""Downloading and unpacking raw dataset files, safely.

:func:`fetch` streams a URL into a temporary file next to its destination, shows a
progress bar, checks the SHA-256 and only then renames the file into place, so a file at
the destination is always complete. :func:`safe_extract` unpacks a zip archive without
letting a member escape the destination (absolute paths, ``..``, symbolic links) and
moves what it unpacked into place only once everything is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from recbench.data.files import atomic_write
from recbench.errors import DataError
from recbench.progress import Progress

#: Bytes read at a time while downloading and hashing.
CHUNK_BYTES = 1 << 20
#: Seconds to wait for the server before giving up.
TIMEOUT_SECONDS = 60


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, *, sha256: str, progress: Progress, offline: bool) -> Path:
    """Download ``url`` to ``destination`` unless a verified copy is already there.

    The bytes are streamed into a temporary file in the destination's folder while their
    SHA-256 is computed; the file is renamed to ``destination`` only when the hash
    matches, so an interrupted or corrupted download never looks complete.

    Parameters
    ----------
    url:
        Where to download from (``https://``, ``http://`` or ``file://``).
    destination:
        The final path of the file.
    sha256:
        The expected hex SHA-256 of the file.
    progress:
        Shows a bytes progress bar while downloading.
    offline:
        When true nothing is downloaded: a missing file is an error that says where to
        put it by hand.

    Returns
    -------
    Path
        ``destination``, holding bytes whose SHA-256 is ``sha256``.

    Raises
    ------
    DataError
        When the file is missing while offline, the download fails, or the bytes (already
        present or downloaded) do not have the expected hash.
    """
    expected = sha256.lower()
    if destination.is_file():
        _check_hash(destination, expected, sha256_file(destination), url)
        return destination
    manual = f"download {url} by hand and save it as {destination}"
    if offline:
        raise DataError(
            f"{destination.name} is missing and downloads are off",
            where=str(destination.parent),
            hint=manual,
        )

    def download(sink: BinaryIO) -> None:
        try:
            actual = _stream(url, sink, destination.name, progress)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise DataError(
                f"downloading {url} failed ({reason})", where=str(destination), hint=manual
            ) from None
        _check_hash(destination, expected, actual, url)

    try:
        atomic_write(destination, download, suffix=".part")
    except OSError as exc:
        raise DataError(
            f"cannot write the download of {destination.name} ({exc.strerror or exc})",
            where=str(destination.parent),
            hint=f"make the folder writable or {manual}",
        ) from None
    return destination


def _stream(url: str, sink: BinaryIO, label: str, progress: Progress) -> str:
    """Copy the body of ``url`` into ``sink`` and return the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with progress.task(f"Downloading {label}", total=total, bytes=True) as bar:
            while block := response.read(CHUNK_BYTES):
                digest.update(block)
                sink.write(block)
                bar.advance(len(block))
    return digest.hexdigest()


def _check_hash(path: Path, expected: str, actual: str, url: str) -> None:
    if actual == expected:
        return
    raise DataError(
        f"{path.name} has SHA-256 {actual}, expected {expected}",
        where=str(path),
        hint=f"the file is corrupted or not the official one: delete it and retry, "
        f"or download {url} by hand and save it as {path}",
    )


def safe_extract(archive: Path, destination: Path, members: Iterable[str] | None = None) -> Path:
    """Unpack a zip archive into ``destination``, refusing members that could escape it.

    Everything is first unpacked into a temporary folder inside ``destination``; each
    top-level entry (file or folder) is then renamed into place. A folder that is visible
    in ``destination`` is therefore always complete, even after an interruption.

    Parameters
    ----------
    archive:
        The ``.zip`` file.
    destination:
        The folder to unpack into (created when missing).
    members:
        Member names to unpack (as listed in the archive, e.g. ``"ml-1m/ratings.dat"``);
        ``None`` unpacks everything.

    Returns
    -------
    Path
        ``destination``.

    Raises
    ------
    DataError
        When the archive is not a valid zip, a member has an absolute path, a ``..``
        component or is a symbolic link, a requested member is missing, or a top-level
        entry already exists in ``destination``.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = _selected_members(bundle, archive, members)
            destination.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=destination, prefix=".extracting-"))
            try:
                for info in infos:
                    bundle.extract(info, staging)
                for entry in sorted(staging.iterdir()):
                    target = destination / entry.name
                    if target.exists():
                        raise DataError(
                            f"cannot unpack {archive.name}: {target} already exists",
                            where=str(target),
                            hint="it may be left from an older or partial copy; "
                            "move or delete it and retry",
                        )
                    os.replace(entry, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile:
        raise DataError(
            f"{archive.name} is not a valid zip archive",
            where=str(archive),
            hint="the download is corrupted: delete it and retry",
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot unpack {archive.name} ({exc.strerror or exc})",
            where=str(destination),
            hint="make the folder writable, or unpack the archive there by hand",
        ) from None
    return destination


def _selected_members(
    bundle: zipfile.ZipFile, archive: Path, members: Iterable[str] | None
) -> list[zipfile.ZipInfo]:
    infos = bundle.infolist()
    if members is not None:
        wanted = list(members)
        by_name = {info.filename: info for info in infos}
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise DataError(
                f"{archive.name} has no member {missing[0]!r}",
                where=str(archive),
                hint="the archive is not the expected one: delete it and retry",
            )
        infos = [by_name[name] for name in wanted]
    for info in infos:
        _refuse_unsafe(info, archive)
    return infos


def _refuse_unsafe(info: zipfile.ZipInfo, archive: Path) -> None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = "an absolute path"
    elif ".." in parts:
        problem = "a '..' component"
    elif stat.S_ISLNK(info.external_attr >> 16):
        problem = "a symbolic link"
    else:
        return
    raise DataError(
        f"refusing to unpack {archive.name}: member {info.filename!r} is {problem}",
        where=str(archive),
        hint="the archive is unsafe or not the official one; delete it and download it again",
    )
