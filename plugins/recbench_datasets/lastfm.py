"""Last.fm Dataset - 1K users (Òscar Celma): the whole listening histories of 992 Last.fm
users up to May 2009, 19,150,868 plays.

``lastfm-1k`` reads the official file ``userid-timestamp-artid-artname-traid-traname.tsv``
from ``<root>/lastfm-1k/`` (``<root>`` is the data root, then the download folder): as
published inside ``lastfm-dataset-1K.tar.gz`` (read as a stream, nothing is unpacked), or
unpacked, plain or gzipped. recbench does not download it (the dataset page gives the MD5
of the unpacked file, not of the 642 MB archive; ``datasets/README.md`` shows it for a
check by hand). A missing file is an error that says where to get it and where to put it.

Each line is one play, six tab-separated fields without a header: user id
(``user_000001``), time (ISO 8601 UTC, ``2009-05-04T23:08:57Z``), artist MusicBrainz id
(may be empty), artist name, track MusicBrainz id (may be empty), track name. A play is
an implicit event (no rating); its time becomes unix seconds. The item is the track by
default: its MusicBrainz id when the line has one, else the text ``"<artist name>\\t<track
name>"`` (artist and track name joined by a tab, which no name contains); with
``-o lastfm-1k.item=artist`` it is the artist: its MusicBrainz id, else its name. Ids are
strings, mapped to integers when recbench prepares the data.

The file lists each user's plays newest first (as in the example of the dataset's
README): rows are emitted in reverse file order, so that plays of the same second keep
their true order.

The file is read line by line (it has about 19M lines) into integer arrays. A line with
another number of fields, an empty user or item, a time that is not ISO 8601, or bytes
that are not UTF-8 is an error naming the file and the line, unless
``-o lastfm-1k.skip_bad_lines=true``, which skips such lines and warns with their count.
"""

from __future__ import annotations

import gzip
import math
import tarfile
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, ClassVar, Literal

import numpy as np

from recbench.plugin import DataContext, DataError, Interactions
from recbench_datasets.jsonl import IdColumn
from recbench_datasets.local_files import find_local_file, local_file_fingerprint

#: The official file, and the archive it is published in (with the file's member name).
FILE_NAME = "userid-timestamp-artid-artname-traid-traname.tsv"
ARCHIVE_NAME = "lastfm-dataset-1K.tar.gz"
ARCHIVE_MEMBER = f"lastfm-dataset-1K/{FILE_NAME}"
#: The dataset page and the archive's URL.
PAGE_URL = "http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html"
ARCHIVE_URL = "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-1K.tar.gz"
#: The fields of a line.
FIELDS = ("user id", "timestamp", "artist MBID", "artist name", "track MBID", "track name")


@dataclass(frozen=True)
class LastFm1KOptions:
    """Options of ``lastfm-1k``.

    item:
        ``track`` (its MusicBrainz id, else ``"<artist name>\\t<track name>"``) or
        ``artist`` (its MusicBrainz id, else its name).
    skip_bad_lines:
        Skip malformed lines (wrong number of fields, empty user or item, bad time, not
        UTF-8) and warn with their count, instead of stopping at the first one.
    """

    item: Literal["track", "artist"] = "track"
    skip_bad_lines: bool = False


class LastFm1K:
    """The Last.fm 1K users listening histories."""

    id: ClassVar[str] = "lastfm-1k"
    summary: ClassVar[str] = (
        "Last.fm 1K users: whole music listening histories (plays) up to May 2009"
    )
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = LastFm1KOptions
    argument_option: ClassVar[str | None] = None

    def __init__(self, options: LastFm1KOptions):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        return local_file_fingerprint(self.find(ctx), FILE_NAME)

    def load(self, ctx: DataContext) -> Interactions:
        path = self.find(ctx)
        if path is None:
            folder = ctx.data_root / self.id
            raise DataError(
                f"{self.id} needs its official file {FILE_NAME}, which recbench does not download",
                where=str(folder / FILE_NAME),
                hint=f"download {ARCHIVE_URL} (page: {PAGE_URL}) and put it, or the {FILE_NAME} "
                f"it holds (gzipped or not), in {folder}",
            )
        return self.read(path, ctx)

    def find(self, ctx: DataContext) -> Path | None:
        """The file (plain or gzipped) or the official archive, under the data or
        download root."""
        return find_local_file(ctx, self.id, (FILE_NAME, f"{FILE_NAME}.gz", ARCHIVE_NAME))

    def read(self, path: Path, ctx: DataContext) -> Interactions:
        """The plays of ``path``, in reverse file order (oldest first per user)."""
        by_artist = self.options.item == "artist"
        users, items = IdColumn("user"), IdColumn("item")
        times = array("q")
        bad, first_bad = 0, 0
        name = path.name if path.name != ARCHIVE_NAME else f"{path.name}:{ARCHIVE_MEMBER}"
        number = 0
        try:
            with open_plays(path) as handle:
                for number, raw in enumerate(handle, start=1):
                    problem = None
                    try:
                        line = raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError:
                        problem = "is not UTF-8 text"
                    else:
                        if not line:
                            continue
                        fields = line.split("\t")
                        if len(fields) != len(FIELDS):
                            problem = f"has {len(fields)} tab-separated fields, not {len(FIELDS)}"
                        else:
                            user, stamp, artist_id, artist, track_id, track = fields
                            if by_artist:
                                item = artist_id or artist
                            else:
                                item = track_id or (f"{artist}\t{track}" if artist or track else "")
                            seconds = _seconds(stamp)
                            if seconds is None:
                                problem = f"has the time {stamp!r}, not an ISO 8601 date"
                            elif not user or not item:
                                problem = f"has no {'user id' if not user else self.options.item}"
                    if problem is not None:
                        if not self.options.skip_bad_lines:
                            raise DataError(
                                f"{name} line {number} {problem}",
                                where=f"{path}:{number}",
                                hint="expected the fields " + ", ".join(FIELDS) + " separated by "
                                f"tabs; -o {self.id}.skip_bad_lines=true skips such lines",
                            )
                        bad += 1
                        first_bad = first_bad or number
                        continue
                    users.add(user, path, number)
                    items.add(item, path, number)
                    times.append(seconds)  # type: ignore[arg-type]
        except (OSError, EOFError, tarfile.TarError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"cannot read {name} after line {number} ({reason})",
                where=str(path),
                hint="check that the file is complete and readable (a truncated download "
                "cannot be decompressed)",
            ) from None
        if bad:
            ctx.warn(
                f"{self.id}: skipped {bad:,} malformed line{'s' if bad != 1 else ''} of {name} "
                f"(the first is line {first_bad})"
            )
        if not times:
            raise DataError(f"{name} has no plays", where=str(path), hint="check the file")
        user_column, user_ids = users.columns()
        item_column, item_ids = items.columns()
        return Interactions(
            user=user_column[::-1].copy(),
            item=item_column[::-1].copy(),
            timestamp=np.frombuffer(times, dtype=np.int64)[::-1].copy(),
            user_ids=user_ids,
            item_ids=item_ids,
        )


@contextmanager
def open_plays(path: Path) -> Iterator[IO[bytes]]:
    """The lines of the plays file as bytes: the file, gzipped or not, or its member of
    the official archive (streamed, nothing is unpacked)."""
    if path.name == ARCHIVE_NAME:
        with tarfile.open(path, "r|gz") as archive:
            for member in archive:
                if member.name == ARCHIVE_MEMBER and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is None:  # pragma: no cover - isfile() members have contents
                        break
                    yield handle
                    return
        raise DataError(
            f"{path.name} holds no {ARCHIVE_MEMBER}",
            where=str(path),
            hint=f"check that it is the official archive from {PAGE_URL}, or unpack it and "
            f"put {FILE_NAME} in {path.parent}",
        )
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with path.open("rb") as handle:
            yield handle


def _seconds(stamp: str) -> int | None:
    """Unix seconds of an ISO 8601 time (UTC when it names no zone), else ``None``."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return math.floor(moment.timestamp())


LASTFM_DATASETS: tuple[type, ...] = (LastFm1K,)
