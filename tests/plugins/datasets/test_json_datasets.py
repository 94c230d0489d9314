"""JSON lines datasets: generic ``jsonl`` with a field mapping, Amazon reviews (2014 and 2018
formats, the category ids) and OTTO sessions, read from small files in the official
formats; malformed lines are one-line errors naming the file and the line."""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from recbench_datasets.amazon import (
    AmazonBeauty,
    AmazonCategoryOptions,
    AmazonFileOptions,
    AmazonReviewFile,
    AmazonVideoGames,
)
from recbench_datasets.jsonl import JsonLinesDataset, JsonLinesOptions
from recbench_datasets.sessions import Otto, OttoOptions

from recbench import cli
from recbench.config.options import parse_options
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext
from recbench.data.preprocess import PreprocessOptions, preprocess
from recbench.errors import ConfigError, DataError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "json"


def context(root: Path) -> DataContext:
    return DataContext(data_root=root, download_root=root, cache_root=root / "cache", offline=True)


def load_jsonl(path: Path, tmp_path: Path, **options: object) -> Interactions:
    parsed = parse_options(JsonLinesOptions, {"path": str(path), **options}, owner="jsonl")
    return JsonLinesDataset(parsed).load(context(tmp_path))


def raw_ids(events: Interactions, column: str) -> list[object]:
    """The raw id of every row of ``column``, whether held directly or as codes."""
    table = getattr(events, f"{column}_ids")
    values = getattr(events, column)
    return (values if table is None else table[values]).tolist()


# --- generic JSON lines -------------------------------------------------------------


def test_jsonl_reads_string_ids_with_the_default_fields(tmp_path):
    events = load_jsonl(FIXTURES / "events.jsonl", tmp_path)
    assert raw_ids(events, "user") == ["alice", "alice", "bob", "bob", "bob"]
    assert raw_ids(events, "item") == [
        "book:dune",
        "book:emma",
        "book:dune",
        "book:emma",
        "book:ulysses",
    ]
    assert events.timestamp.tolist() == [1600000000 + 100 * i for i in range(5)]
    assert events.rating.tolist() == [5, 4, 3, 2, 1]


def test_jsonl_maps_fields_and_keeps_integer_ids_integer(tmp_path):
    path = tmp_path / "clicks.jsonl"
    rows = [{"who": 7, "what": 30, "when": "2020-01-01T00:00:10Z"}, {"who": 7, "what": 31}]
    rows[1]["when"] = 1577836811.9  # float seconds are floored
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n")  # a blank line
    events = load_jsonl(path, tmp_path, user="who", item="what", timestamp="when")
    assert events.user_ids is None and events.item_ids is None
    assert events.user.dtype == np.int64 and events.item.tolist() == [30, 31]
    assert events.timestamp.tolist() == [1577836810, 1577836811]
    assert events.rating is None  # the default field 'rating' is absent: no ratings


def test_jsonl_without_a_timestamp_field_by_choice(tmp_path):
    events = load_jsonl(FIXTURES / "events.jsonl", tmp_path, timestamp="", rating="")
    assert events.timestamp is None and events.rating is None


@pytest.mark.parametrize("opener", [gzip.open, bz2.open], ids=["gzip", "bzip2"])
def test_jsonl_reads_compressed_files_whatever_their_name(tmp_path, opener):
    packed = tmp_path / "events.data"  # no telling suffix: detected from the first bytes
    with opener(packed, "wb") as handle:
        handle.write((FIXTURES / "events.jsonl").read_bytes())
    assert raw_ids(load_jsonl(packed, tmp_path), "user")[:2] == ["alice", "alice"]


def test_jsonl_reads_the_one_file_in_a_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "events.zip", "w") as archive:
        archive.write(FIXTURES / "events.jsonl", "events.jsonl")
    assert len(load_jsonl(tmp_path / "events.zip", tmp_path)) == 5


def test_an_integer_and_its_text_are_one_id(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"user_id": 1, "item_id": "a"}\n{"user_id": "1", "item_id": "b"}\n')
    events = load_jsonl(path, tmp_path)
    assert raw_ids(events, "user") == ["1", "1"]
    assert events.user_ids.tolist() == ["1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"user_id": "u", "item_id": "i"}\n{"user_id": "u", "item_id": \n', "line 2 is not valid JSON"),
        ('{"user_id": "u", "item_id": "i"}\n["u", "i"]\n', "line 2 is a JSON list, not an object"),
        ('{"user_id": "u", "item_id": "i"}\n{"user_id": "u"}\n', "line 2 has no field 'item_id'"),
        ('{"user_id": "u", "item_id": 1.5}\n', "line 1: the item id 1.5 is not a string"),
        ('{"user_id": "", "item_id": "i"}\n', 'line 1: the user id "" is not a string'),
        ('{"user_id": "u", "item_id": "i", "rating": NaN}\n', "'rating' is NaN, not a finite"),
        ('{"user_id": "u", "item_id": "i", "timestamp": "soon"}\n', "'timestamp' is \"soon\""),
        (
            '{"user_id": "u", "item_id": "i", "timestamp": 1}\n{"user_id": "u", "item_id": "j"}\n',
            "line 2 has no field 'timestamp'",
        ),
    ],
)
def test_jsonl_malformed_lines_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        load_jsonl(path, tmp_path)
    assert message in error.value.one_line()
    assert "bad.jsonl" in error.value.one_line()
    assert "\n" not in error.value.one_line()


def test_jsonl_a_truncated_gzip_file_is_one_line(tmp_path):
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "events.jsonl").read_bytes())[:-20])
    with pytest.raises(DataError, match="cannot read events.jsonl.gz after line"):
        load_jsonl(packed, tmp_path)


def test_jsonl_an_explicit_field_missing_from_the_first_line_is_an_error(tmp_path):
    with pytest.raises(DataError, match="has no field 'when' \\(option jsonl.timestamp\\)"):
        load_jsonl(FIXTURES / "events.jsonl", tmp_path, timestamp="when")


def test_jsonl_needs_a_path_and_an_existing_file(tmp_path):
    with pytest.raises(ConfigError, match="needs a path"):
        JsonLinesDataset(JsonLinesOptions()).load(context(tmp_path))
    with pytest.raises(DataError, match="no file"):
        load_jsonl(tmp_path / "missing.jsonl", tmp_path)


# --- Amazon reviews -----------------------------------------------------------------


@pytest.mark.parametrize("release", ["2014", "2018"])
def test_amazon_reads_both_review_formats(tmp_path, release):
    path = FIXTURES / f"amazon-{release}-reviews.json"
    events = AmazonReviewFile(AmazonFileOptions(path=str(path))).load(context(tmp_path))
    expected = [json.loads(line) for line in path.read_text().splitlines()]
    assert raw_ids(events, "user") == [review["reviewerID"] for review in expected]
    assert raw_ids(events, "item") == [review["asin"] for review in expected]
    assert events.rating.tolist() == [review["overall"] for review in expected]
    assert events.timestamp.tolist() == [review["unixReviewTime"] for review in expected]


def test_amazon_a_review_without_asin_names_the_line(tmp_path):
    path = tmp_path / "reviews.json"
    lines = (FIXTURES / "amazon-2014-reviews.json").read_text().splitlines()
    broken = json.loads(lines[2])
    del broken["asin"]
    path.write_text("\n".join([lines[0], lines[1], json.dumps(broken)]) + "\n")
    with pytest.raises(DataError, match="reviews.json line 3 has no field 'asin'"):
        AmazonReviewFile(AmazonFileOptions(path=str(path))).load(context(tmp_path))


@pytest.mark.parametrize(
    ("release", "file_name"),
    [("2014", "reviews_Beauty_5.json.gz"), ("2018", "All_Beauty_5.json.gz")],
)
def test_amazon_category_reads_its_official_file(tmp_path, release, file_name):
    folder = tmp_path / "amazon-beauty"
    folder.mkdir()
    with gzip.open(folder / file_name, "wb") as handle:
        handle.write((FIXTURES / f"amazon-{release}-reviews.json").read_bytes())
    dataset = AmazonBeauty(AmazonCategoryOptions(release=release))
    assert file_name in dataset.fingerprint(context(tmp_path))
    assert len(dataset.load(context(tmp_path))) > 0


def test_amazon_category_reads_the_unpacked_file_too(tmp_path):
    folder = tmp_path / "amazon-video-games"
    folder.mkdir()
    shutil.copy(FIXTURES / "amazon-2014-reviews.json", folder / "reviews_Video_Games_5.json")
    assert len(AmazonVideoGames(AmazonCategoryOptions()).load(context(tmp_path))) == 5


@pytest.mark.parametrize(
    ("release", "url"),
    [
        (
            "2014",
            "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
            "reviews_Video_Games_5.json.gz",
        ),
        (
            "2018",
            "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/"
            "Video_Games_5.json.gz",
        ),
    ],
)
def test_amazon_category_missing_says_where_to_get_it_and_put_it(tmp_path, release, url):
    dataset = AmazonVideoGames(AmazonCategoryOptions(release=release))
    assert dataset.fingerprint(context(tmp_path)).endswith(":missing")
    with pytest.raises(DataError) as error:
        dataset.load(context(tmp_path))
    line = error.value.one_line()
    assert url in line
    assert str(tmp_path / "amazon-video-games" / url.rsplit("/", 1)[1]) in line
    assert "\n" not in line


def test_amazon_category_release_is_checked():
    with pytest.raises(ConfigError, match="release"):
        parse_options(AmazonCategoryOptions, {"release": "2016"}, owner="amazon-beauty")


# --- OTTO ---------------------------------------------------------------------------


def place_otto(root: Path, text: str | None = None) -> None:
    (root / "otto").mkdir(parents=True, exist_ok=True)
    source = (FIXTURES / "otto-train.jsonl").read_text() if text is None else text
    (root / "otto" / "train.jsonl").write_text(source)


def test_otto_reads_clicks_by_default_in_seconds(tmp_path):
    place_otto(tmp_path)
    events = Otto(OttoOptions()).load(context(tmp_path))
    # Session 1 has one click and is dropped; the cart of session 0 is not a click.
    assert events.user.tolist() == [0, 0, 0, 0, 2, 2]
    assert events.item.tolist() == [1517085, 1563459, 1309446, 16246, 763743, 137492]
    assert events.timestamp.tolist() == [
        1659304800,
        1659304904,
        1659367439,
        1659367719,
        1659304800,
        1659304839,
    ]


def test_otto_event_types_choose_what_counts(tmp_path):
    place_otto(tmp_path)
    options = parse_options(OttoOptions, {"event_types": "clicks,carts,orders"}, owner="otto")
    events = Otto(options).load(context(tmp_path))
    assert events.user.tolist() == [0] * 5 + [1] * 3 + [2] * 2
    # Events at the same millisecond keep the file order.
    assert events.item.tolist()[5:8] == [424964, 1492293, 1492293]
    orders = Otto(OttoOptions(event_types=("carts", "orders"))).load(context(tmp_path))
    assert orders.user.tolist() == [1, 1] and orders.item.tolist() == [424964, 1492293]


def test_otto_unknown_event_types_are_an_option_error():
    with pytest.raises(ConfigError, match="event_types"):
        parse_options(OttoOptions, {"event_types": "clicks,views"}, owner="otto")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"session": 5}', "line 2 has no field 'events'"),
        ('{"session": 5, "events": [{"aid": 1, "ts": 2}]}', "line 2 has no field 'type'"),
        (
            '{"session": 5, "events": [{"aid": "x", "ts": 2, "type": "clicks"}]}',
            "line 2 is not an OTTO session ('aid' and 'ts' must be integers)",
        ),
        (
            '{"session": 5, "events": [{"aid": 1, "ts": 2, "type": "views"}]}',
            "unknown event type 'views'",
        ),
    ],
)
def test_otto_malformed_sessions_name_the_line(tmp_path, line, message):
    first = (FIXTURES / "otto-train.jsonl").read_text().splitlines()[0]
    place_otto(tmp_path, first + "\n" + line + "\n")
    with pytest.raises(DataError) as error:
        Otto(OttoOptions()).load(context(tmp_path))
    assert message in error.value.one_line()
    assert "train.jsonl" in error.value.one_line()


def test_otto_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="otto/recsys-dataset.*train.jsonl"):
        Otto(OttoOptions()).load(context(tmp_path))


# --- string ids end to end ------------------------------------------------------------


def string_id_events(path: Path, users: int = 80, length: int = 10) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w") as handle:
        for user in range(users):
            for step in range(length):
                row = {
                    "user_id": f"user-{user}",
                    "item_id": f"sku-{int(rng.integers(30)):03d}",
                    "timestamp": 1_600_000_000 + 60 * step + user,
                }
                handle.write(json.dumps(row) + "\n")
    return path


def test_string_ids_are_preprocessed_with_their_raw_ids(tmp_path):
    events = load_jsonl(string_id_events(tmp_path / "events.jsonl"), tmp_path)
    sequences, item_ids = preprocess(events, PreprocessOptions())
    assert item_ids[0] == "" and item_ids[1:].tolist() == sorted(item_ids[1:].tolist())
    assert sequences.users.tolist()[:3] == ["user-0", "user-1", "user-10"]
    first = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    user_0 = [row["item_id"] for row in first if row["user_id"] == "user-0"]
    assert item_ids[sequences.sequence(0)].tolist() == user_0


def test_run_on_a_string_id_jsonl_file_and_again_from_the_cache(tmp_path, env, capsys):
    path = string_id_events(tmp_path / "events.jsonl")
    for attempt, out in enumerate(("run-a", "run-b")):
        code = cli.main(
            ["run", "--models", "pop", "--dataset", f"jsonl:{path}", "--out", str(tmp_path / out)]
        )
        assert code == 0
        if attempt == 1:
            assert "Using cached" in capsys.readouterr().err
    first, second = (
        json.loads(next((tmp_path / out / "cells").glob("*__pop__half-split__seed0.json")).read_text())[
            "metrics"
        ]
        for out in ("run-a", "run-b")
    )
    assert first == second and first  # the cached string ids give the same results
