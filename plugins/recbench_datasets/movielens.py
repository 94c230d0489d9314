"""The MovieLens rating datasets of GroupLens Research (100K, 1M, 10M, 20M, 25M).

Where the ratings file is looked for, in order (``<root>`` is the data root, then the
download folder when that differs):

1. ``<root>/<id>/<ratings file>``: the official file put there by hand
   (``$RECBENCH_DATA/ml-100k/u.data``);
2. ``<root>/<id>/<folder in the zip>/<ratings file>``: the official zip unpacked there
   (``$RECBENCH_DATA/ml-10m/ml-10M100K/ratings.dat``);
3. ``<root>/<id>/<id>.zip``: the official zip, checked against its SHA-256 and unpacked
   into the download folder;
4. otherwise the zip is downloaded (unless offline) into ``<download root>/<id>/``.

A ratings file whose number of events differs from the official count is refused: a
partial or modified copy must not be reported under the official name (load it with
``--dataset file:PATH`` instead). See ``datasets/README.md`` for sources, licences and
checksums.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recbench.plugin import DataContext, DataError, Interactions, fetch, safe_extract
from recbench_datasets.file import read_interactions

_COLUMNS = ("user", "item", "rating", "timestamp")
_BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class MovieLensOptions:
    """MovieLens datasets have no options: the official files are used as they are."""


class MovieLensDataset:
    """Shared loader; each release is a subclass that fills in the class attributes."""

    id: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]]
    summary: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = MovieLensOptions
    argument_option: ClassVar[str | None] = None

    #: SHA-256 of the official zip (see datasets/README.md for where it comes from).
    sha256: ClassVar[str]
    #: Folder inside the zip that holds the ratings file.
    folder: ClassVar[str]
    ratings_file: ClassVar[str]
    #: Separator and whether the ratings file starts with a header line.
    separator: ClassVar[str]
    has_header: ClassVar[bool]
    #: Official number of ratings (the file is refused when it holds another number).
    official_events: ClassVar[int]

    def __init__(self, options: MovieLensOptions):
        self.options = options

    @property
    def url(self) -> str:
        return f"{_BASE_URL}/{self.id}.zip"

    def fingerprint(self, ctx: DataContext) -> str:
        path = self._local_ratings(ctx)
        if path is None:
            return f"{self.sha256}:not downloaded"
        status = path.stat()
        return f"{self.sha256}:{self.ratings_file}:{status.st_size}:{status.st_mtime_ns}"

    def load(self, ctx: DataContext) -> Interactions:
        path = self._local_ratings(ctx) or self._unpack(ctx)
        interactions = read_interactions(
            path, sep=self.separator, columns=_COLUMNS, header=self.has_header
        )
        if len(interactions) != self.official_events:
            raise DataError(
                f"{path.name} holds {len(interactions):,} ratings, the official {self.id} has "
                f"{self.official_events:,}",
                where=str(path),
                hint="the file is partial or modified: replace it with the official one, "
                "or load it under its own name with --dataset file:PATH",
            )
        return interactions

    def _roots(self, ctx: DataContext) -> list[Path]:
        roots = [ctx.data_root / self.id]
        if ctx.download_root != ctx.data_root:
            roots.append(ctx.download_root / self.id)
        return roots

    def _local_ratings(self, ctx: DataContext) -> Path | None:
        for root in self._roots(ctx):
            for candidate in (root / self.ratings_file, root / self.folder / self.ratings_file):
                if candidate.is_file():
                    return candidate
        return None

    def _unpack(self, ctx: DataContext) -> Path:
        """Find (or download) the official zip and unpack its ratings file."""
        archive_name = f"{self.id}.zip"
        archive = next(
            (root / archive_name for root in self._roots(ctx) if (root / archive_name).is_file()),
            ctx.download_root / self.id / archive_name,
        )
        if ctx.offline and not archive.is_file():
            raise DataError(
                f"{self.id} is not in {ctx.data_root / self.id} and downloads are off",
                where=str(ctx.data_root / self.id),
                hint=f"download {self.url} and put its {self.ratings_file} at "
                f"{ctx.data_root / self.id / self.ratings_file} (or the zip at "
                f"{ctx.data_root / self.id / archive_name})",
            )
        fetch(self.url, archive, sha256=self.sha256, progress=ctx.progress, offline=ctx.offline)
        member = f"{self.folder}/{self.ratings_file}"
        safe_extract(archive, ctx.download_root / self.id, members=[member])
        return ctx.download_root / self.id / self.folder / self.ratings_file


class MovieLens100K(MovieLensDataset):
    id = "ml-100k"
    aliases = ("ml100k",)
    summary = "MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, 1997-1998"
    sha256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    folder = "ml-100k"
    ratings_file = "u.data"
    separator = "\t"
    has_header = False
    official_events = 100_000


class MovieLens1M(MovieLensDataset):
    id = "ml-1m"
    aliases = ("ml1m",)
    summary = "MovieLens 1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users, 2000-2003"
    sha256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    folder = "ml-1m"
    ratings_file = "ratings.dat"
    separator = "::"
    has_header = False
    official_events = 1_000_209


class MovieLens10M(MovieLensDataset):
    id = "ml-10m"
    aliases = ("ml10m",)
    summary = "MovieLens 10M: 10,000,054 ratings (0.5-5) of 10,677 movies by 69,878 users"
    sha256 = "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862"
    folder = "ml-10M100K"
    ratings_file = "ratings.dat"
    separator = "::"
    has_header = False
    official_events = 10_000_054


class MovieLens20M(MovieLensDataset):
    id = "ml-20m"
    aliases = ("ml20m",)
    summary = "MovieLens 20M: 20,000,263 ratings (0.5-5) of 26,744 movies by 138,493 users"
    sha256 = "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"
    folder = "ml-20m"
    ratings_file = "ratings.csv"
    separator = ","
    has_header = True
    official_events = 20_000_263


class MovieLens25M(MovieLensDataset):
    id = "ml-25m"
    aliases = ("ml25m",)
    summary = "MovieLens 25M: 25,000,095 ratings (0.5-5) of 59,047 movies by 162,541 users"
    sha256 = "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"
    folder = "ml-25m"
    ratings_file = "ratings.csv"
    separator = ","
    has_header = True
    official_events = 25_000_095


MOVIELENS_DATASETS: tuple[type[MovieLensDataset], ...] = (
    MovieLens100K,
    MovieLens1M,
    MovieLens10M,
    MovieLens20M,
    MovieLens25M,
)
