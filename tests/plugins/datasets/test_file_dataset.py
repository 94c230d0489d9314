"""The ``file`` dataset: detection of separator, header and compression; errors by line."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import numpy as np
import pytest
from recbench_datasets.file import FileDataset, FileOptions

from recbench.config.options import parse_options
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext
from recbench.errors import ConfigError, DataError

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
    with pytest.raises(DataError, match=r"line 3: item 'x' is not a number"):
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
    assert "line 2: user 'u2' is not a number" in message and "ids must be integers" in message
    fractional = write(tmp_path / "fractional.csv", "1,10,4,1000\n2,10.5,5,999\n")
    assert "line 2: item '10.5' is not an integer" in error_of(fractional, tmp_path)


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
