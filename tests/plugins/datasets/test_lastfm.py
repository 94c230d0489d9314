"""``lastfm-1k``: the Last.fm 1K users file read from a small file in the official format
(plain, gzipped, inside the official archive); items by track or by artist; malformed
lines are one-line errors naming the file and the line, or skipped with a warning."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from recbench_datasets.lastfm import ARCHIVE_MEMBER, ARCHIVE_NAME, FILE_NAME, LastFm1K, LastFm1KOptions

from recbench import cli
from recbench.config.options import parse_options
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext
from recbench.errors import DataError

FIXTURE = Path(__file__).parents[2] / "fixtures" / "lastfm" / FILE_NAME
LINES = FIXTURE.read_text(encoding="utf-8").splitlines()


def context(root: Path) -> DataContext:
    return DataContext(data_root=root, download_root=root, cache_root=root / "cache", offline=True)


def place(root: Path, text: str | None = None, name: str = FILE_NAME) -> Path:
    """The fixture (or ``text``) at ``<root>/lastfm-1k/<name>``, gzipped for ``.gz``."""
    folder = root / "lastfm-1k"
    folder.mkdir(parents=True, exist_ok=True)
    data = (FIXTURE.read_text(encoding="utf-8") if text is None else text).encode("utf-8")
    target = folder / name
    target.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return target


def load(root: Path, **options: object) -> tuple[Interactions, DataContext]:
    ctx = context(root)
    parsed = parse_options(LastFm1KOptions, dict(options), owner="lastfm-1k")
    return LastFm1K(parsed).load(ctx), ctx


def raw_ids(events: Interactions, column: str) -> list[object]:
    table = getattr(events, f"{column}_ids")
    values = getattr(events, column)
    return (values if table is None else table[values]).tolist()


def unix(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def expected_rows() -> list[list[str]]:
    """The fixture's fields, oldest play first (the file lists the newest first)."""
    return [line.split("\t") for line in reversed(LINES)]


def test_tracks_users_and_times_are_read_oldest_first(tmp_path):
    place(tmp_path)
    events, ctx = load(tmp_path)
    rows = expected_rows()
    assert len(events) == len(LINES) == 12
    assert events.rating is None and ctx.warnings == []
    assert raw_ids(events, "user") == [row[0] for row in rows]
    assert events.timestamp is not None
    assert events.timestamp.tolist() == [unix(row[1]) for row in rows]
    assert unix("2009-05-04T23:08:57Z") == 1241478537 == events.timestamp.max()
    # A track is its MusicBrainz id, else "artist name<TAB>track name".
    assert raw_ids(events, "item") == [row[4] or f"{row[3]}\t{row[5]}" for row in rows]
    items = raw_ids(events, "item")
    assert items[0] == "Björk\tArmy of Me" and items[1] == "2c4e1d8a-7b8f-4b7e-8c1e-3f9d0e5a6b22"
    assert items.count("Björk\tHyperballad") == 2  # one track, heard by both users


def test_items_by_artist_are_mbids_else_names(tmp_path):
    place(tmp_path)
    events, _ = load(tmp_path, item="artist")
    assert raw_ids(events, "item") == [row[2] or row[3] for row in expected_rows()]
    assert sorted(set(raw_ids(events, "item"))) == [
        "Björk",
        "a7f7df4a-77d8-4f12-8acd-5c60c93f4de8",
        "ba853904-ae25-4ebb-89d6-c44cfbd71bd2",
        "f1b1cf71-bd35-4e99-8624-24a6e15f133a",
    ]


def test_unknown_item_option_is_refused():
    with pytest.raises(Exception, match="album"):
        parse_options(LastFm1KOptions, {"item": "album"}, owner="lastfm-1k")


@pytest.mark.parametrize("packing", ["gzip", "archive"])
def test_gzipped_file_and_official_archive_read_the_same(tmp_path, packing):
    plain, _ = load(place(tmp_path / "plain").parents[1])
    if packing == "gzip":
        place(tmp_path / "packed", name=f"{FILE_NAME}.gz")
    else:
        folder = tmp_path / "packed" / "lastfm-1k"
        folder.mkdir(parents=True)
        with tarfile.open(folder / ARCHIVE_NAME, "w:gz") as archive:
            readme = tarfile.TarInfo("lastfm-dataset-1K/README.txt")
            readme.size = 5
            archive.addfile(readme, io.BytesIO(b"notes"))
            archive.add(FIXTURE, arcname=ARCHIVE_MEMBER)
    packed, _ = load(tmp_path / "packed")
    for column in ("user", "item"):
        assert raw_ids(packed, column) == raw_ids(plain, column)
    assert packed.timestamp is not None and plain.timestamp is not None
    assert packed.timestamp.tolist() == plain.timestamp.tolist()


def test_archive_without_the_file_is_a_one_line_error(tmp_path):
    folder = tmp_path / "lastfm-1k"
    folder.mkdir()
    with tarfile.open(folder / ARCHIVE_NAME, "w:gz") as archive:
        archive.add(FIXTURE, arcname="elsewhere.tsv")
    with pytest.raises(DataError, match=f"holds no {ARCHIVE_MEMBER}"):
        load(tmp_path)


BAD_LINES = [
    ("user_000003\t2009-01-01T00:00:00Z\t\tArtist\t\tTrack\textra", "has 7 tab-separated fields"),
    ("user_000003\t2009-01-01T00:00:00Z\tArtist only", "has 3 tab-separated fields"),
    ("user_000003\tyesterday\t\tArtist\t\tTrack", "has the time 'yesterday'"),
    ("\t2009-01-01T00:00:00Z\t\tArtist\t\tTrack", "has no user id"),
    ("user_000003\t2009-01-01T00:00:00Z\t\t\t\t", "has no track"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    lines = [*LINES[:5], line, *LINES[5:]]
    place(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        load(tmp_path)
    text = error.value.one_line()
    assert f"{FILE_NAME} line 6 {message}" in text
    assert "\n" not in text and "skip_bad_lines=true" in text


def test_bytes_that_are_not_utf8_are_a_bad_line(tmp_path):
    target = place(tmp_path)
    target.write_bytes(target.read_bytes() + b"user_000003\t2009-01-01T00:00:00Z\t\t\xff\t\tx\n")
    with pytest.raises(DataError, match="line 13 is not UTF-8"):
        load(tmp_path)


def test_skip_bad_lines_skips_them_and_warns_with_the_count(tmp_path):
    lines = [LINES[0], BAD_LINES[0][0], *LINES[1:8], BAD_LINES[2][0], *LINES[8:]]
    place(tmp_path, "\n".join(lines) + "\n")
    events, ctx = load(tmp_path, skip_bad_lines=True)
    good, _ = load(place(tmp_path / "good").parents[1])
    assert raw_ids(events, "item") == raw_ids(good, "item")
    assert ctx.warnings == [f"lastfm-1k: skipped 2 malformed lines of {FILE_NAME} (the first is line 2)"]


def test_missing_file_offline_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as error:
        load(tmp_path)
    text = error.value.one_line()
    assert "lastfm-dataset-1K.tar.gz" in text and "mtg.upf.edu" in text
    assert str(tmp_path / "lastfm-1k") in text and "\n" not in text
    assert LastFm1K(LastFm1KOptions()).fingerprint(context(tmp_path)) == f"{FILE_NAME}:missing"


def test_run_pop_on_lastfm_1k_end_to_end(tmp_path, env):
    shutil.copy(FIXTURE, place(env.data_root))
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--models",
            "pop",
            "--dataset",
            "lastfm-1k",
            "-o",
            "preprocess.min_item_pop=1",
            "-o",
            "split.test=1",  # two users: one to train on, one to test on
            "-o",
            "split.valid=0",
            "--protocols",
            "half-split",
            "--cutoffs",
            "1,5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    cell = json.loads(next((out / "cells").glob("lastfm-1k__pop__*.json")).read_text())
    assert cell["metrics"]
