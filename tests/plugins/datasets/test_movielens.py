"""MovieLens loaders: official formats and layouts, zip handling, download, refusals.

The fixtures are made-up rows written in the official formats; no MovieLens data is
copied here. Tests against the real files use ``RECBENCH_DATA`` and skip without it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import recbench_datasets.movielens as movielens
from recbench_datasets.movielens import (
    MOVIELENS_DATASETS,
    MovieLens1M,
    MovieLens10M,
    MovieLens20M,
    MovieLens100K,
    MovieLensDataset,
    MovieLensOptions,
)

from recbench.config.settings import Settings
from recbench.data.prepare import DataContext
from recbench.errors import DataError
from recbench.registry import discover

# (user, item, rating, timestamp), invented for these tests.
ROWS = [
    (3, 41, 4.0, 890000300),
    (1, 17, 3.0, 890000100),
    (1, 23, 5.0, 890000050),
    (2, 17, 4.5, 890000200),
    (2, 99, 0.5, 890000200),
    (3, 23, 2.0, 890000000),
]
README = Path(__file__).resolve().parents[3] / "datasets" / "README.md"


def official_text(dataset: type[MovieLensDataset]) -> str:
    """ROWS in the dataset's official ratings format."""
    if dataset.separator == ",":
        lines = ["userId,movieId,rating,timestamp"] + [
            f"{u},{i},{r:.1f},{t}" for u, i, r, t in ROWS
        ]
    else:
        whole_stars = dataset in (MovieLens100K, MovieLens1M)
        lines = [
            dataset.separator.join(str(v) for v in (u, i, int(r) if whole_stars else r, t))
            for u, i, r, t in ROWS
        ]
    return "\n".join(lines) + "\n"


def make_official_zip(dataset: type[MovieLensDataset], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(f"{dataset.folder}/{dataset.ratings_file}", official_text(dataset))
        bundle.writestr(f"{dataset.folder}/README", "terms of use")
    return path


@pytest.fixture(params=MOVIELENS_DATASETS, ids=lambda d: d.id)
def dataset(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> type[MovieLensDataset]:
    """Each release, made to accept the six-row fixture as complete."""
    monkeypatch.setattr(request.param, "official_events", len(ROWS))
    return request.param


def context(settings: Settings) -> DataContext:
    return DataContext(
        data_root=settings.data_root,
        download_root=settings.download_root,
        cache_root=settings.cache_root,
        offline=settings.offline,
    )


def assert_rows(loaded, dataset: type[MovieLensDataset]) -> None:  # type: ignore[no-untyped-def]
    assert loaded.user.tolist() == [u for u, _, _, _ in ROWS]
    assert loaded.item.tolist() == [i for _, i, _, _ in ROWS]
    assert loaded.timestamp.tolist() == [t for _, _, _, t in ROWS]
    expected = [int(r) if dataset in (MovieLens100K, MovieLens1M) else r for _, _, r, _ in ROWS]
    assert loaded.rating.tolist() == expected
    assert loaded.timestamp.dtype == np.int64 and loaded.rating.dtype == np.float32


def test_reads_the_ratings_file_put_in_the_data_root(
    dataset: type[MovieLensDataset], settings: Settings
) -> None:
    folder = settings.data_root / dataset.id
    folder.mkdir(parents=True)
    (folder / dataset.ratings_file).write_text(official_text(dataset))
    assert_rows(dataset(MovieLensOptions()).load(context(settings)), dataset)


def test_reads_an_unpacked_official_zip(
    dataset: type[MovieLensDataset], settings: Settings
) -> None:
    folder = settings.data_root / dataset.id / dataset.folder
    folder.mkdir(parents=True)
    (folder / dataset.ratings_file).write_text(official_text(dataset))
    assert_rows(dataset(MovieLensOptions()).load(context(settings)), dataset)


def test_the_ml10m_zip_folder_is_ml_10M100K() -> None:
    assert MovieLens10M.folder == "ml-10M100K" and MovieLens10M.ratings_file == "ratings.dat"


def test_unpacks_a_checked_zip_put_in_the_data_root(
    dataset: type[MovieLensDataset], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_official_zip(dataset, settings.data_root / dataset.id / f"{dataset.id}.zip")
    monkeypatch.setattr(dataset, "sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    assert_rows(dataset(MovieLensOptions()).load(context(settings)), dataset)
    unpacked = settings.download_root / dataset.id / dataset.folder
    assert sorted(p.name for p in unpacked.iterdir()) == [
        dataset.ratings_file
    ]  # only what is needed


def test_a_zip_with_another_hash_is_refused(settings: Settings) -> None:
    make_official_zip(MovieLens1M, settings.data_root / "ml-1m" / "ml-1m.zip")
    with pytest.raises(DataError, match=f"expected {MovieLens1M.sha256}.*delete it and retry"):
        MovieLens1M(MovieLensOptions()).load(context(settings))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server and the folder it serves."""
    root = tmp_path / "grouplens"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_downloads_checks_and_unpacks_when_missing(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served = server
    archive = make_official_zip(MovieLens20M, served / "ml-20m.zip")
    monkeypatch.setattr(movielens, "_BASE_URL", base_url)
    monkeypatch.setattr(MovieLens20M, "sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(MovieLens20M, "official_events", len(ROWS))
    online = Settings(data_root=tmp_path / "data", cache_root=tmp_path / "cache", offline=False)
    ml20m = MovieLens20M(MovieLensOptions())
    assert ml20m.fingerprint(context(online)).endswith("not downloaded")
    assert_rows(ml20m.load(context(online)), MovieLens20M)
    assert (online.download_root / "ml-20m" / "ml-20m.zip").read_bytes() == archive.read_bytes()
    assert (online.download_root / "ml-20m" / "ml-20m" / "ratings.csv").is_file()
    assert MovieLens20M.sha256 in ml20m.fingerprint(context(online))
    archive.unlink()  # the next load needs no network
    assert_rows(ml20m.load(context(online)), MovieLens20M)


def test_offline_and_missing_names_the_url_and_the_exact_place(settings: Settings) -> None:
    with pytest.raises(DataError) as caught:
        MovieLens1M(MovieLensOptions()).load(context(settings))
    message = caught.value.one_line()
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert str(settings.data_root / "ml-1m" / "ratings.dat") in message
    assert "\n" not in message


def test_a_file_with_another_number_of_ratings_is_not_the_official_dataset(
    settings: Settings,
) -> None:
    folder = settings.data_root / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text(official_text(MovieLens1M))
    with pytest.raises(DataError) as caught:
        MovieLens1M(MovieLensOptions()).load(context(settings))
    message = str(caught.value)
    assert "holds 6 ratings" in message and "1,000,209" in message and "file:PATH" in message


def test_fingerprint_follows_the_local_file(settings: Settings) -> None:
    folder = settings.data_root / "ml-100k"
    folder.mkdir(parents=True)
    ratings = folder / "u.data"
    ratings.write_text(official_text(MovieLens100K))
    ml100k = MovieLens100K(MovieLensOptions())
    before = ml100k.fingerprint(context(settings))
    assert MovieLens100K.sha256 in before
    ratings.write_text(official_text(MovieLens100K) + "4\t17\t3\t890000400\n")
    assert ml100k.fingerprint(context(settings)) != before


def test_every_release_and_alias_is_registered() -> None:
    registry = discover()
    for dataset in MOVIELENS_DATASETS:
        assert registry.get("dataset", dataset.id).cls is dataset
        for alias in dataset.aliases:
            assert registry.get("dataset", alias).cls is dataset
    assert [d.id for d in MOVIELENS_DATASETS] == ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m"]


def test_the_readme_lists_each_url_and_sha256() -> None:
    text = README.read_text(encoding="utf-8")
    for dataset in MOVIELENS_DATASETS:
        row = next(
            line for line in text.splitlines() if line.startswith(f"| `{dataset.id}` | https://")
        )
        assert dataset(MovieLensOptions()).url in row and dataset.sha256 in row
        assert f"{dataset.official_events:,}" in text
    assert len(set(re.findall(r"`([0-9a-f]{64})`", text))) == len(MOVIELENS_DATASETS)


def test_real_movielens_100k_has_the_official_counts(real_settings: Settings) -> None:
    loaded = MovieLens100K(MovieLensOptions()).load(context(real_settings))
    assert len(loaded) == 100_000
    assert len(np.unique(loaded.user)) == 943 and len(np.unique(loaded.item)) == 1_682
    assert set(np.unique(loaded.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_real_ml1m_is_only_ever_the_complete_official_file(real_settings: Settings) -> None:
    ml1m = MovieLens1M(MovieLensOptions())
    if (real_settings.data_root / "ml-1m" / "ratings.dat").is_file():
        assert len(ml1m.load(context(real_settings))) == 1_000_209
        return
    with pytest.raises(DataError, match="downloads are off"):  # other files there are ignored
        ml1m.load(context(real_settings))
