"""prepare_dataset: name parsing, strict options, the preprocessed-array cache."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from recbench import hookimpl
from recbench.config.settings import Settings
from recbench.data.interactions import Interactions
from recbench.data.prepare import DataContext, PreparedData, prepare_dataset
from recbench.data.preprocess import PreprocessOptions
from recbench.errors import ConfigError, DataError
from recbench.progress import Progress
from recbench.registry import Registry, discover

NO_FILTERS = PreprocessOptions(min_user_activity=1, min_item_pop=1)


@dataclass(frozen=True)
class CountingOptions:
    n_users: int = 4
    stamp: str = "a"


class CountingDataset:
    """A tiny in-memory dataset that counts how often it is loaded."""

    id: ClassVar[str] = "counting"
    aliases: ClassVar[tuple[str, ...]] = ("count",)
    summary: ClassVar[str] = "Counts its loads"
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = CountingOptions
    loads: ClassVar[int] = 0

    def __init__(self, options: CountingOptions):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        return f"stamp {self.options.stamp}"

    def load(self, ctx: DataContext) -> Interactions:
        type(self).loads += 1
        users = np.repeat(np.arange(1, self.options.n_users + 1), 3)
        items = np.tile([30, 10, 20], self.options.n_users)
        return Interactions(
            user=users, item=items, timestamp=np.tile([3, 1, 2], self.options.n_users)
        )


@pytest.fixture
def registry() -> Registry:
    plugin = types.ModuleType("counting_plugin")

    @hookimpl
    def register_datasets(register):  # type: ignore[no-untyped-def]
        register(CountingDataset)

    plugin.register_datasets = register_datasets  # type: ignore[attr-defined]
    found = discover()
    assert found.add_plugin("counting_plugin", plugin, "counting-test", "0")
    CountingDataset.loads = 0
    return found


def prepare(
    name: str, registry: Registry, settings: Settings, options: dict | None = None, **kw: object
) -> PreparedData:
    preprocessing = kw.pop("preprocessing", NO_FILTERS)
    return prepare_dataset(
        name, options or {}, preprocessing, registry, settings, Progress.silent()
    )  # type: ignore[arg-type]


def test_a_cache_hit_does_not_load_or_parse_again(registry: Registry, settings: Settings) -> None:
    first = prepare("counting", registry, settings)
    assert CountingDataset.loads == 1
    second = prepare("counting", registry, settings)
    assert CountingDataset.loads == 1  # read from the cache
    assert second.key == first.key
    assert second.statistics == first.statistics
    np.testing.assert_array_equal(second.sequences.items, first.sequences.items)
    np.testing.assert_array_equal(second.sequences.offsets, first.sequences.offsets)
    np.testing.assert_array_equal(second.sequences.timestamps, first.sequences.timestamps)
    np.testing.assert_array_equal(second.item_ids, first.item_ids)
    assert second.sequences.n_items == first.sequences.n_items == 3
    assert second.sequences.ratings is None


def test_a_cache_hit_skips_the_synthetic_generator(
    registry: Registry, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recbench_datasets.synthetic as synthetic

    first = prepare("synthetic:tiny", registry, settings)

    def must_not_run(options: object) -> Interactions:
        raise AssertionError("the generator ran on a cache hit")

    monkeypatch.setattr(synthetic, "generate", must_not_run)
    second = prepare("synthetic", registry, settings, {"size": "tiny"})
    assert second.key == first.key and second.dataset_id == "synthetic"
    assert second.statistics["events"] == 5000


def test_the_cache_lives_under_the_cache_root(registry: Registry, settings: Settings) -> None:
    prepared = prepare("counting", registry, settings)
    folder = settings.cache_root / "datasets" / "counting"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{prepared.source_key}.json",
        f"{prepared.source_key}.npz",
    ]
    assert len(prepared.key) == 64 and int(prepared.key, 16) >= 0


def test_the_source_key_covers_options_preprocessing_and_fingerprint(
    registry: Registry, settings: Settings
) -> None:
    base = prepare("counting", registry, settings)
    assert prepare("count", registry, settings).source_key == base.source_key  # an alias
    assert prepare("counting", registry, settings, {"n_users": 5}).source_key != base.source_key
    restamped = prepare("counting", registry, settings, {"stamp": "b"})
    assert restamped.source_key != base.source_key  # new fingerprint: read again...
    assert restamped.key == base.key  # ...into the same content
    changed = PreprocessOptions(min_user_activity=2, min_item_pop=1)
    assert prepare("counting", registry, settings, preprocessing=changed).key != base.key
    assert CountingDataset.loads == 4


def test_the_key_is_the_content_wherever_and_whenever_the_file_was_read(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    """A copy of the same file elsewhere, or the file touched, prepares to the same key
    (runs and studies stay continuable on another machine); other events do not."""
    ratings = tmp_path / "a" / "ratings.csv"
    ratings.parent.mkdir()
    ratings.write_text("1,10,5,100\n1,20,4,200\n2,10,3,300\n")
    first = prepare(f"file:{ratings}", registry, settings)
    copy = tmp_path / "b" / "ratings.csv"
    copy.parent.mkdir()
    copy.write_bytes(ratings.read_bytes())
    moved = prepare(f"file:{copy}", registry, settings)
    assert moved.source_key != first.source_key and moved.key == first.key
    copy.write_text("1,10,5,100\n1,20,4,200\n2,20,3,300\n")
    assert prepare(f"file:{copy}", registry, settings).key != first.key


def test_prepared_data_records_what_was_asked(registry: Registry, settings: Settings) -> None:
    prepared = prepare("count", registry, settings, {"n_users": "2"})
    assert prepared.name == "count" and prepared.dataset_id == "counting"
    assert prepared.preprocessing == {
        "min_rating": None,
        "min_user_activity": 1,
        "min_item_pop": 1,
        "duplicates": "keep",
    }
    assert prepared.statistics["users"] == 2 and prepared.statistics["raw_events"] == 6
    assert prepared.item_ids.tolist() == [-1, 10, 20, 30]
    assert prepared.item_ids[prepared.sequences.sequence(0)].tolist() == [10, 20, 30]  # by time


def test_argument_sets_the_argument_option(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("1,10,5,100\n1,20,4,200\n2,10,3,300\n")
    prepared = prepare(f"file:{ratings}", registry, settings)
    assert prepared.dataset_id == "file" and prepared.name == f"file:{ratings}"
    assert prepared.statistics["raw_events"] == 3
    assert prepare("file", registry, settings, {"path": str(ratings)}).key == prepared.key


def test_argument_errors(registry: Registry, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="dataset 'counting' takes no argument"):
        prepare("counting:x", registry, settings)
    with pytest.raises(ConfigError, match="give it only once"):
        prepare("synthetic:tiny", registry, settings, {"size": "small"})
    assert (
        prepare("synthetic:tiny", registry, settings, {"size": "tiny"}).statistics["users"] == 200
    )


def test_unknown_dataset_and_option_list_close_matches(
    registry: Registry, settings: Settings
) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'ml-100'.*did you mean 'ml-100k'"):
        prepare("ml-100", registry, settings)
    with pytest.raises(
        ConfigError, match=r"unknown option 'n_user' for dataset 'counting'.*'n_users'"
    ):
        prepare("counting", registry, settings, {"n_user": 3})
    with pytest.raises(ConfigError, match="must be an integer"):
        prepare("counting", registry, settings, {"n_users": "many"})


def test_an_unwritable_cache_says_which_folder_and_what_to_set(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    blocked = Settings(data_root=settings.data_root, cache_root=blocker, offline=True)
    with pytest.raises(DataError) as caught:
        prepare("counting", registry, blocked)
    message = str(caught.value)
    assert str(blocker / "datasets" / "counting") in message and "RECBENCH_CACHE" in message


def test_the_cache_may_not_live_inside_the_data_root(registry: Registry, tmp_path: Path) -> None:
    nested = Settings(
        data_root=tmp_path / "data", cache_root=tmp_path / "data" / "cache", offline=True
    )
    with pytest.raises(DataError, match="RECBENCH_CACHE"):
        prepare("counting", registry, nested)


def test_nothing_is_written_inside_the_data_root(registry: Registry, settings: Settings) -> None:
    settings.data_root.mkdir(parents=True)
    (settings.data_root / "ratings.tsv").write_text("1\t10\n1\t20\n2\t10\n")
    before = sorted(settings.data_root.rglob("*"))
    prepare("file:ratings.tsv", registry, settings, {"columns": "user,item"})
    prepare("file:ratings.tsv", registry, settings, {"columns": "user,item"})
    assert sorted(settings.data_root.rglob("*")) == before


def test_a_damaged_cache_entry_is_rebuilt(registry: Registry, settings: Settings) -> None:
    first = prepare("counting", registry, settings)
    arrays = settings.cache_root / "datasets" / "counting" / f"{first.source_key}.npz"
    arrays.write_bytes(b"truncated")
    second = prepare("counting", registry, settings)
    assert CountingDataset.loads == 2
    np.testing.assert_array_equal(second.sequences.items, first.sequences.items)
    prepare("counting", registry, settings)
    assert CountingDataset.loads == 2  # the rebuilt entry is used again


class LogLines(Progress):
    """A silent progress that keeps its log lines."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def log(self, message: str, *, style: str | None = None) -> None:
        self.lines.append(message)


def _empty_arrays(folder: Path, key: str) -> None:
    (folder / f"{key}.npz").write_bytes(b"")


def _json_without_statistics(folder: Path, key: str) -> None:
    info = json.loads((folder / f"{key}.json").read_text())
    del info["statistics"]
    (folder / f"{key}.json").write_text(json.dumps(info))


def _other_arrays_of_the_same_size(folder: Path, key: str) -> None:
    path = folder / f"{key}.npz"
    content = bytearray(path.read_bytes())
    content[-30] ^= 0xFF
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_empty_arrays, "has 0 bytes"),
        (_json_without_statistics, "no 'statistics'"),
        (_other_arrays_of_the_same_size, "does not match the recorded hash"),
    ],
)
def test_an_unreadable_cache_entry_is_rebuilt_with_a_log_line(
    registry: Registry, settings: Settings, damage, reason: str
) -> None:
    first = prepare("counting", registry, settings)
    damage(settings.cache_root / "datasets" / "counting", first.source_key)
    progress = LogLines()
    second = prepare_dataset("counting", {}, NO_FILTERS, registry, settings, progress)
    assert CountingDataset.loads == 2
    np.testing.assert_array_equal(second.sequences.items, first.sequences.items)
    [line] = [line for line in progress.lines if "unreadable" in line]
    assert line.startswith("The cached counting was unreadable (") and reason in line
    prepare("counting", registry, settings)
    assert CountingDataset.loads == 2  # the rebuilt entry is used again


def test_a_cache_entry_without_a_recorded_hash_is_read_as_before(
    registry: Registry, settings: Settings
) -> None:
    first = prepare("counting", registry, settings)
    info_path = settings.cache_root / "datasets" / "counting" / f"{first.source_key}.json"
    info = json.loads(info_path.read_text())
    del info["arrays_bytes"], info["arrays_sha256"]
    info_path.write_text(json.dumps(info))
    prepare("counting", registry, settings)
    assert CountingDataset.loads == 1


def test_a_cache_hit_reads_the_content_key_instead_of_hashing_the_arrays(
    registry: Registry, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content key is recorded with the entry and read back on a hit (it is only
    computed for entries that lack it, or lack the arrays' hash that vouches for it)."""
    import recbench.data.prepare as prepare_module

    first = prepare("counting", registry, settings)
    info_path = settings.cache_root / "datasets" / "counting" / f"{first.source_key}.json"
    assert json.loads(info_path.read_text())["content_key"] == first.key
    computed = prepare_module.content_key

    def must_not_hash(*args: object) -> str:
        raise AssertionError("the content key was computed on a cache hit")

    monkeypatch.setattr(prepare_module, "content_key", must_not_hash)
    assert prepare("counting", registry, settings).key == first.key
    info = json.loads(info_path.read_text())
    del info["content_key"]  # an entry written before content keys were recorded
    info_path.write_text(json.dumps(info))
    monkeypatch.setattr(prepare_module, "content_key", computed)
    assert prepare("counting", registry, settings).key == first.key
    info["content_key"] = "0" * 64
    del info["arrays_sha256"]  # nothing vouches for a recorded key: it is computed
    info_path.write_text(json.dumps(info))
    assert prepare("counting", registry, settings).key == first.key
    assert CountingDataset.loads == 1


def test_real_movielens_100k(real_settings: Settings) -> None:
    prepared = prepare_dataset(
        "ml-100k", {}, NO_FILTERS, discover(), real_settings, Progress.silent()
    )
    stats = prepared.statistics
    assert (stats["raw_events"], stats["events"], stats["users"], stats["items"]) == (
        100_000,
        100_000,
        943,
        1_682,
    )
    assert stats["has_repeats"] is False and stats["sequence_length"]["min"] == 20
    default = prepare_dataset(
        "ml100k", {}, PreprocessOptions(), discover(), real_settings, Progress.silent()
    )
    assert default.key != prepared.key and default.statistics["items"] < 1_682
