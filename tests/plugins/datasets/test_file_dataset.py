"""The ``file`` dataset: detection of separator, header and compression; errors by line."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import numpy as np
import pytest
from recbench_datasets import file as file_module
from recbench_datasets.file import FileDataset, FileOptions
from rich.console import Console

from recbench.config.options import parse_options
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext
from recbench.data.preprocess import PreprocessOptions, preprocess
from recbench.data.splits import SplitOptions, make_split
from recbench.errors import ConfigError, DataError
from recbench.progress import Progress

ROWS = [(1, 10, 4, 1000), (1, 20, 3, 1001), (2, 10, 5, 999), (3, 30, 1, 1002)]


def context(tmp_path: Path) -> DataContext:
    return DataContext(
        data_root=tmp_path / "data", download_root=tmp_path / "data", cache_root=tmp_path / "cache"
    )


def load(path: Path | str, tmp_path: Path, **options: object) -> Interactions:
    parsed = parse_options(FileOptions, {"path": str(path), **options}, owner="dataset 'file'")
    return FileDataset(parsed).load(context(tmp_path))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def lines(sep: str, rows: list[tuple] = ROWS) -> str:  # type: ignore[type-arg]
    return "".join(sep.join(str(v) for v in row) + "\n" for row in rows)


def assert_rows(loaded: Interactions) -> None:
    assert loaded.user.tolist() == [r[0] for r in ROWS]
    assert loaded.item.tolist() == [r[1] for r in ROWS]
    assert loaded.rating.tolist() == [r[2] for r in ROWS]
    assert loaded.timestamp.tolist() == [r[3] for r in ROWS]


@pytest.mark.parametrize("sep", ["::", "\t", ",", ";", "|", " ", "  \t "])
def test_detects_the_separator(tmp_path: Path, sep: str) -> None:
    assert_rows(load(write(tmp_path / "ratings.txt", lines(sep)), tmp_path))


def test_detects_a_header_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n" + lines(","))
    assert_rows(load(path, tmp_path))
    broken = write(
        tmp_path / "broken.csv", "userId,movieId,rating,timestamp\n1,10,4,1000\n1,x,3,1001\n"
    )
    with pytest.raises(DataError, match=r"non-numeric item id 'x' at line 3"):
        load(broken, tmp_path)


def test_header_option_overrides_detection(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "9,9,9,9\n" + lines(","))
    assert_rows(load(path, tmp_path, header="true"))
    assert len(load(path, tmp_path)) == len(ROWS) + 1


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)],
)
def test_compression_from_the_suffix(tmp_path: Path, suffix: str, compress) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"ratings.dat{suffix}"
    path.write_bytes(compress(lines("::").encode()))
    assert_rows(load(path, tmp_path))


def test_a_zip_with_one_file(tmp_path: Path) -> None:
    path = tmp_path / "ratings.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("inner/ratings.tsv", lines("\t"))
    assert_rows(load(path, tmp_path))
    with zipfile.ZipFile(path, "a") as bundle:
        bundle.writestr("inner/movies.tsv", "1\tA\n")
    with pytest.raises(DataError, match="holds 2 files"):
        load(path, tmp_path)


def test_columns_in_another_order_and_ignored_fields(tmp_path: Path) -> None:
    text = "".join(f'{t},{i},"a title, with a comma",{u}\n' for u, i, _, t in ROWS)
    loaded = load(
        write(tmp_path / "events.csv", text), tmp_path, columns="timestamp,item,ignore,user"
    )
    assert loaded.user.tolist() == [r[0] for r in ROWS] and loaded.timestamp.tolist() == [
        r[3] for r in ROWS
    ]
    assert loaded.rating is None


def test_user_and_item_only(tmp_path: Path) -> None:
    loaded = load(
        write(tmp_path / "pairs.tsv", "1\t10\n1\t20\n2\t10\n"), tmp_path, columns="user,item"
    )
    assert (
        loaded.timestamp is None and loaded.rating is None and loaded.item.tolist() == [10, 20, 10]
    )
    assert loaded.user.dtype == np.int32


def test_blank_lines_and_crlf_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(
        lines(",").replace("\n", "\r\n").replace("1,20", "\r\n1,20", 1).encode() + b"\r\n"
    )
    assert_rows(load(path, tmp_path))


def test_relative_paths_try_the_current_directory_then_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "ratings.csv", lines(","))
    monkeypatch.chdir(tmp_path)
    assert_rows(load("ratings.csv", tmp_path))  # found in the data root
    write(tmp_path / "ratings.csv", "7,70,1,1\n")
    assert load("ratings.csv", tmp_path).user.tolist() == [7]  # the current directory wins


def test_fingerprint_changes_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(","))
    dataset = FileDataset(FileOptions(path=str(path)))
    before = dataset.fingerprint(context(tmp_path))
    write(path, lines(",") + "4,40,2,2000\n")
    assert dataset.fingerprint(context(tmp_path)) != before


# -- malformed input: one line naming the file, the line and what to do ------------------


def error_of(path: Path, tmp_path: Path, **options: object) -> str:
    with pytest.raises(DataError) as caught:
        load(path, tmp_path, **options)
    message = caught.value.one_line()
    assert path.name in message and "\n" not in message
    return message


def test_a_line_with_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(",") + "5,50,3,1003,extra\n")
    message = error_of(path, tmp_path)
    assert "line 5 has 5 fields, other lines have 4" in message and "'sep'" in message


def test_a_line_with_too_few_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "1,10,4,1000\n\n1,20,3\n2,10,5,999\n")
    assert "line 3 has 3 fields, other lines have 4" in error_of(
        path, tmp_path
    )  # seen while sniffing
    assert "line 3 has no timestamp" in error_of(path, tmp_path, sep=",")  # seen while parsing


def test_a_bad_line_past_the_sniffed_sample_is_found_by_the_parser(tmp_path: Path) -> None:
    text = lines(",", ROWS * 3000) + "5,50,3,1003,extra\n"  # well beyond the first 64 KiB
    path = write(tmp_path / "ratings.csv", text)
    assert f"line {len(ROWS) * 3000 + 1} has 5 fields, expected 4" in error_of(path, tmp_path)


def test_a_line_with_the_wrong_separator(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", lines("::") + "5\t50\t3\t1003\n")
    message = error_of(path, tmp_path)
    assert "line 5 has 1 fields, other lines have 4 (separator '::')" in message


def test_non_integer_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "1,10,4,1000\nu2,10,5,999\n")
    message = error_of(path, tmp_path)
    assert "non-numeric user id 'u2' at line 2" in message and "ids must be integers" in message
    fractional = write(tmp_path / "fractional.csv", "1,10,4,1000\n2,10.5,5,999\n")
    assert "item id '10.5' at line 2 is not a whole number" in error_of(fractional, tmp_path)


def test_columns_that_do_not_fit_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(","))
    message = error_of(path, tmp_path, columns="user,item,rating")
    assert "4 fields per line" in message and "columns names 3" in message and "ignore" in message


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    assert "is empty" in error_of(write(tmp_path / "empty.csv", ""), tmp_path)
    assert "is empty" in error_of(write(tmp_path / "blank.csv", "\n\n"), tmp_path)
    assert "no events" in error_of(
        write(tmp_path / "header.csv", "user,item,rating,timestamp\n"), tmp_path
    )


def test_missing_file_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        load("absent.csv", tmp_path)
    message = str(caught.value)
    assert (
        str(tmp_path / "absent.csv") in message and str(tmp_path / "data" / "absent.csv") in message
    )


def test_no_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file:PATH"):
        FileDataset(FileOptions()).load(context(tmp_path))


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        ("user,film", "unknown column 'film'"),
        ("user,rating", "no 'item' column"),
        ("user,item,user", "twice"),
    ],
)
def test_bad_columns_option(columns: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        FileDataset(FileOptions(path="x", columns=columns))


def test_the_partial_ml1m_ratings_file_loads_without_options(
    real_data_root: Path, tmp_path: Path
) -> None:
    path = real_data_root / "ml-1m" / "ratings.users0001-2999.dat.gz"
    if not path.is_file():
        pytest.skip("the partial 1M ratings file is not in RECBENCH_DATA")
    loaded = FileDataset(FileOptions(path=str(path))).load(context(tmp_path))
    assert len(loaded) == 487_650
    assert len(np.unique(loaded.user)) == 2_999 and len(np.unique(loaded.item)) == 3_615


# -- strict parsing: nothing mis-read, nothing dropped silently ------------------------


class Recorded:
    """A data context whose log lines and warnings a test can read."""

    def __init__(self, tmp_path: Path):
        self.output = io.StringIO()
        console = Console(file=self.output, width=400, color_system=None)
        self.ctx = DataContext(
            data_root=tmp_path / "data",
            download_root=tmp_path / "data",
            cache_root=tmp_path / "cache",
            progress=Progress(console=console),
        )

    def load(self, path: Path, **options: object) -> Interactions:
        parsed = parse_options(FileOptions, {"path": str(path), **options}, owner="dataset 'file'")
        return FileDataset(parsed).load(self.ctx)

    @property
    def log(self) -> str:
        return self.output.getvalue()


def test_an_id_beyond_64_bits_is_an_error_naming_file_line_and_value(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(",") + "99999999999999999999,10,4,1000\n")
    message = error_of(path, tmp_path)
    assert "user id '99999999999999999999' at line 5 does not fit a 64-bit integer" in message


def test_large_ids_that_fit_are_read_exactly(tmp_path: Path) -> None:
    big = 2**63 - 1
    odd = 2**53 + 1  # not exact as a float
    text = f"{big},10,4,1000\n\n{odd},10,4,1001\n"  # the blank line forces the text parse
    loaded = load(write(tmp_path / "ratings.csv", text), tmp_path)
    assert loaded.user.tolist() == [big, odd] and loaded.user.dtype == np.int64


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "NA", "1e39"])
def test_a_rating_that_is_not_finite_is_an_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "ratings.csv", lines(",") + f"5,50,{value},1003\n")
    assert f"rating '{value}' at line 5 is not a finite number" in error_of(path, tmp_path)


def test_a_negative_rating_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(",") + "5,50,-3,1003\n")
    message = error_of(path, tmp_path)
    assert "negative rating '-3' at line 5" in message and "file.negative_ratings=true" in message
    assert load(path, tmp_path, negative_ratings="true").rating.tolist()[-1] == -3


def test_a_literal_na_id_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", lines(",") + "NA,50,3,1003\n")
    message = error_of(path, tmp_path)
    assert "non-numeric user id 'NA' at line 5" in message and "too few fields" not in message


def test_a_bom_file_without_header_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"\xef\xbb\xbf" + lines(",").encode())
    recorded = Recorded(tmp_path)
    assert_rows(recorded.load(path))
    assert "ratings.csv: no header (line 1 is data)" in recorded.log
    with_header = tmp_path / "header.csv"
    with_header.write_bytes(b"\xef\xbb\xbfuser,item,rating,timestamp\n" + lines(",").encode())
    recorded = Recorded(tmp_path)
    assert_rows(recorded.load(with_header))
    assert "header.csv: header: yes (user,item,rating,timestamp)" in recorded.log


def test_a_first_line_with_an_empty_field_is_data_not_a_header(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "1,10,,1000\n" + lines(","))
    assert "line 1 has no rating" in error_of(path, tmp_path)  # reported, not dropped
    ignored = write(tmp_path / "ignored.csv", "1,10,,1000\n" + lines(","))
    loaded = load(ignored, tmp_path, columns="user,item,ignore,timestamp")
    assert len(loaded) == len(ROWS) + 1 and loaded.user.tolist()[0] == 1


def test_a_mixed_first_line_is_data_and_the_error_says_how_to_skip_it(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "user,item,3,1000\n" + lines(","))
    message = error_of(path, tmp_path)
    assert "non-numeric user id 'user' at line 1" in message and "'header' option" in message
    assert_rows(load(path, tmp_path, header="true"))


def test_json_lines_are_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.json", '{"user": 1, "item": 2}\n{"user": 2, "item": 3}\n')
    message = error_of(path, tmp_path)
    assert "looks like JSON lines" in message and "--dataset jsonl:" in message


def test_permission_denied_is_not_blamed_on_the_compression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "ratings.csv.gz", "")

    def refuse(path: Path, kind: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(file_module, "_open", refuse)
    message = error_of(path, tmp_path)
    assert f"cannot read {path}: permission denied" in message and "compression" not in message


def test_a_file_that_is_not_what_its_suffix_says_names_the_compression(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv.gz", lines(","))
    assert "cannot read ratings.csv.gz as gzip" in error_of(path, tmp_path)


MS_ROWS = [
    (1, 10, 4, 1_600_000_000_500),
    (1, 20, 3, 1_600_000_000_100),
    (2, 10, 5, 1_600_000_100_000),
]


@pytest.mark.parametrize(("unit", "factor"), [("ms", 1_000), ("us", 1_000_000)])
def test_finer_timestamps_are_detected_converted_and_reported(
    tmp_path: Path, unit: str, factor: int
) -> None:
    rows = [(u, i, r, t * factor // 1_000) for u, i, r, t in MS_ROWS]
    path = write(tmp_path / "ratings.csv", lines(",", rows))
    recorded = Recorded(tmp_path)
    loaded = recorded.load(path)
    # converted to seconds; the event 100 ms into the second comes before the one at 500 ms
    assert loaded.timestamp.tolist() == [1_600_000_000, 1_600_000_000, 1_600_000_100]
    assert loaded.item.tolist() == [20, 10, 10]
    assert len(recorded.ctx.warnings) == 1 and "converted to seconds" in recorded.ctx.warnings[0]
    assert "file.time_unit=s" in recorded.ctx.warnings[0] and "warning:" in recorded.log
    kept = Recorded(tmp_path).load(path, time_unit="s")
    assert kept.timestamp.tolist() == [r[3] for r in rows]


def test_seconds_are_left_alone_and_an_explicit_unit_converts(tmp_path: Path) -> None:
    recorded = Recorded(tmp_path)
    assert_rows(recorded.load(write(tmp_path / "ratings.csv", lines(","))))
    assert recorded.ctx.warnings == []
    small = write(tmp_path / "small.csv", lines(",", [(1, 10, 4, 5_000), (2, 10, 4, 7_999)]))
    assert load(small, tmp_path, time_unit="ms").timestamp.tolist() == [5, 7]
    with pytest.raises(ConfigError, match="time_unit"):
        load(small, tmp_path, time_unit="hours")


def test_a_30_day_temporal_split_of_millisecond_data_holds_out_the_right_users(
    tmp_path: Path,
) -> None:
    """120 users, user u's last event u days before the end: 30 days hold users 0..30."""
    day_ms = 86_400_000
    end = 1_700_000_000_000
    rows = []
    for user in range(120):
        last = end - user * day_ms
        rows += [(user, 1 + user % 7, 4, last - 3_600_000), (user, 2 + user % 5, 4, last)]
    path = write(tmp_path / "events.csv", lines(",", rows))
    sequences, _ = preprocess(load(path, tmp_path), PreprocessOptions(min_item_pop=1))
    split = make_split(sequences, SplitOptions(method="temporal", test_days=30), seed=0)
    assert sorted(split.test.users.tolist()) == list(range(31))
