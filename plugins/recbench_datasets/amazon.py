"""Amazon product reviews (McAuley et al.), the 2014 and 2018 releases, as JSON lines.

Both releases hold one review per line with the fields ``reviewerID`` (the user, a
string), ``asin`` (the product, a string), ``overall`` (the rating, 1-5) and
``unixReviewTime`` (unix seconds); every other field (``vote``, ``style``,
``reviewText`` ...) is ignored. ``--dataset amazon:PATH`` reads any such file (a
category's full review file, a 5-core file, gzipped or not). The categories used in
sequential-recommendation papers (SASRec, BERT4Rec, S3-Rec ...) have their own ids and
read the official 5-core file of their category from ``<root>/<id>/`` (``<root>`` is the
data root, then the download folder): the 2014 release by default, the 2018 one with
``-o <id>.release=2018``.

recbench does not download these files: the publishers give no checksum with which a
download could be verified. A missing file is an error that names its URL and the path
where to put it (see ``datasets/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from recbench.plugin import DataContext, DataError, Interactions
from recbench_datasets.jsonl import file_fingerprint, read_json_events, resolve_path
from recbench_datasets.local_files import find_local_file, local_file_fingerprint

#: Where the official 5-core files of each release are published.
RELEASE_URLS = {
    "2014": "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "2018": "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/",
}
#: The fields of a review that recbench reads.
USER_FIELD, ITEM_FIELD, RATING_FIELD, TIME_FIELD = "reviewerID", "asin", "overall", "unixReviewTime"


def read_reviews(path: Path) -> Interactions:
    """The reviews of an Amazon review file (2014 or 2018 format) as events."""
    events = read_json_events(path, USER_FIELD, ITEM_FIELD, TIME_FIELD, RATING_FIELD)
    if len(events) == 0:
        raise DataError(f"{path.name} has no reviews", where=str(path), hint="check the file")
    return events


@dataclass(frozen=True)
class AmazonFileOptions:
    """Options of ``amazon``.

    path:
        The review file (``amazon:PATH``): a relative path is looked up in the current
        directory, then in the data root.
    """

    path: str = ""


class AmazonReviewFile:
    """Any Amazon review file of the 2014 or 2018 release: ``--dataset amazon:PATH``."""

    id: ClassVar[str] = "amazon"
    summary: ClassVar[str] = (
        "Amazon reviews from a review file of the 2014 or 2018 release (--dataset amazon:PATH)"
    )
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = AmazonFileOptions
    argument_option: ClassVar[str | None] = "path"

    def __init__(self, options: AmazonFileOptions):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        return file_fingerprint(resolve_path(self.options.path, self.id, ctx))

    def load(self, ctx: DataContext) -> Interactions:
        return read_reviews(resolve_path(self.options.path, self.id, ctx))


@dataclass(frozen=True)
class AmazonCategoryOptions:
    """Options of an Amazon category.

    release:
        ``2014`` (the 5-core files of He & McAuley 2016, used by most sequential
        recommendation papers) or ``2018`` (the 5-core files of Ni et al. 2019).
    """

    release: Literal["2014", "2018"] = "2014"


class AmazonCategory:
    """The official 5-core review file of one category; each category is a subclass."""

    id: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = AmazonCategoryOptions
    argument_option: ClassVar[str | None] = None

    #: The official 5-core file name in the 2014 and in the 2018 release.
    file_2014: ClassVar[str]
    file_2018: ClassVar[str]

    def __init__(self, options: AmazonCategoryOptions):
        self.options = options

    @property
    def file_name(self) -> str:
        return self.file_2014 if self.options.release == "2014" else self.file_2018

    @property
    def url(self) -> str:
        return RELEASE_URLS[self.options.release] + self.file_name

    def fingerprint(self, ctx: DataContext) -> str:
        return local_file_fingerprint(self.find(ctx), self.file_name)

    def load(self, ctx: DataContext) -> Interactions:
        path = self.find(ctx)
        if path is None:
            expected = ctx.data_root / self.id / self.file_name
            raise DataError(
                f"{self.id} needs the official {self.options.release} file {self.file_name}, "
                "which recbench does not download (no checksum is published to verify it)",
                where=str(expected),
                hint=f"download {self.url} and put it (gzipped or not) at {expected}",
            )
        return read_reviews(path)

    def find(self, ctx: DataContext) -> Path | None:
        """The official file, gzipped or unpacked, under the data or download root."""
        names = (self.file_name, self.file_name.removesuffix(".gz"))
        return find_local_file(ctx, self.id, names)


class AmazonBeauty(AmazonCategory):
    id = "amazon-beauty"
    summary = "Amazon Beauty reviews, 5-core (2014 release; 2018: All_Beauty)"
    file_2014 = "reviews_Beauty_5.json.gz"
    file_2018 = "All_Beauty_5.json.gz"


class AmazonSports(AmazonCategory):
    id = "amazon-sports"
    summary = "Amazon Sports and Outdoors reviews, 5-core (2014 or 2018 release)"
    file_2014 = "reviews_Sports_and_Outdoors_5.json.gz"
    file_2018 = "Sports_and_Outdoors_5.json.gz"


class AmazonToys(AmazonCategory):
    id = "amazon-toys"
    summary = "Amazon Toys and Games reviews, 5-core (2014 or 2018 release)"
    file_2014 = "reviews_Toys_and_Games_5.json.gz"
    file_2018 = "Toys_and_Games_5.json.gz"


class AmazonVideoGames(AmazonCategory):
    id = "amazon-video-games"
    summary = "Amazon Video Games reviews, 5-core (2014 or 2018 release)"
    file_2014 = "reviews_Video_Games_5.json.gz"
    file_2018 = "Video_Games_5.json.gz"


AMAZON_DATASETS: tuple[type, ...] = (
    AmazonReviewFile,
    AmazonBeauty,
    AmazonSports,
    AmazonToys,
    AmazonVideoGames,
)
