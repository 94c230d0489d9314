"""Preparing a dataset: load it through its plugin, preprocess it, cache the result.

:func:`prepare_dataset` turns a dataset string such as ``ml-100k`` or
``file:ratings.dat`` into :class:`PreparedData`. The preprocessed arrays are cached under
``<cache_root>/datasets/<dataset id>/<key>.npz``, where the key is a hash of everything
that produced them (dataset id and version, resolved options, the plugin's fingerprint of
its raw files, the preprocessing options and :data:`DATA_FORMAT_VERSION`). A cache hit
reads only the ``.npz``; the raw files are not parsed. Nothing is ever written inside the
data root. The entry's JSON records the size and SHA-256 of its ``.npz``; an entry that
does not read back as written (an empty or truncated file, a missing key, another hash)
is rebuilt, with a log line saying why.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recbench.config.options import as_dict, parse_options
from recbench.config.settings import Settings
from recbench.data.files import WriteError, atomic_write, write_bytes_atomic
from recbench.data.interactions import Sequences
from recbench.data.preprocess import PreprocessOptions, dataset_statistics, preprocess
from recbench.errors import ConfigError, DataError
from recbench.progress import Progress


@dataclass
class DataContext:
    """What a dataset plugin may use while loading.

    ``data_root`` holds raw files (``<data_root>/<dataset id>/...``) and may be read-only;
    downloads go to ``download_root`` (the same folder unless it is read-only).
    ``offline`` forbids network access. ``cache_root`` is for derived files.
    :meth:`warn` records a problem with usable data (``warnings`` holds them).
    """

    data_root: Path
    download_root: Path
    cache_root: Path
    progress: Progress = field(default_factory=Progress.silent)
    offline: bool = False
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Record a problem with data that is still usable (duplicate events, converted
        timestamps, ...): it is printed, stored with the prepared data and shown by
        ``recbench check`` and in the report."""
        self.warnings.append(message)
        self.progress.log(f"warning: {message}", style="yellow")


class DatasetLookup(Protocol):
    """Where a dataset id is looked up (the plugin registry)."""

    def get(self, kind: str, name: str) -> Any: ...


#: Changes whenever the cached arrays would be laid out or computed differently.
DATA_FORMAT_VERSION = 2


@dataclass(frozen=True)
class PreparedData:
    """A dataset ready for splitting.

    ``name`` is the dataset string as given (``"ml100k"``, ``"file:/x/ratings.dat"``),
    ``dataset_id`` the registered id it resolved to (``"ml-100k"``, ``"file"``).
    ``item_ids[i]`` is the raw id of item ``i``: ``int64`` with ``item_ids[0] == -1``
    (padding), or ``str`` with ``item_ids[0] == ""`` for string ids. ``key``
    identifies the prepared content (the same on every machine that prepares the same
    events the same way: run cells and tuning studies are keyed by it); ``source_key``
    identifies the files it was read from here (their paths, sizes and modification
    times: the cache's lookup key, and the ``key`` of runs and studies made before
    content keys); ``statistics`` comes from
    :func:`recbench.data.preprocess.dataset_statistics`; ``preprocessing`` holds the resolved
    preprocessing options; ``warnings`` the problems found in usable data (loading and
    preprocessing), one line each.
    """

    name: str
    dataset_id: str
    sequences: Sequences
    item_ids: np.ndarray
    key: str
    source_key: str
    statistics: dict[str, Any]
    preprocessing: dict[str, Any]
    warnings: tuple[str, ...] = ()


def prepare_dataset(
    name: str,
    options: Mapping[str, Any],
    preprocessing: PreprocessOptions,
    registry: DatasetLookup,
    settings: Settings,
    progress: Progress,
) -> PreparedData:
    """Load, preprocess and cache a dataset (or read it from the cache).

    Parameters
    ----------
    name:
        ``id`` or ``id:argument``; the argument sets the option named by the dataset
        class's ``argument_option`` (``file:PATH`` sets ``path``). Aliases work.
    options:
        The dataset's options (strings are converted; unknown keys are errors).
    preprocessing:
        Filters applied to the raw events.
    registry:
        Where the dataset id is looked up.
    settings:
        Data and cache folders, and whether downloads are allowed.
    progress:
        Shows downloads and status lines.

    Raises
    ------
    ConfigError
        Unknown dataset or option, an argument for a dataset that takes none, or an
        argument that contradicts an option.
    DataError
        Missing or malformed data, or an unusable cache folder.
    """
    requested_id, has_argument, argument = name.partition(":")
    dataset_info = registry.get("dataset", requested_id)
    dataset_cls: Any = dataset_info.cls
    dataset_id: str = dataset_cls.id
    values = dict(options)
    if has_argument:
        values = _apply_argument(dataset_info, name, argument, values)
    parsed_options = parse_options(dataset_cls.Options, values, owner=f"dataset '{dataset_id}'")
    dataset = dataset_cls(parsed_options)
    context = DataContext(
        data_root=settings.data_root,
        download_root=settings.download_root,
        cache_root=settings.cache_root,
        progress=progress,
        offline=settings.offline,
    )
    cache_dir = _cache_dir(settings, dataset_id)

    def cache_key() -> str:
        return _cache_key(dataset_cls, parsed_options, dataset.fingerprint(context), preprocessing)

    key = cache_key()
    cached = _read_cache(cache_dir, key)
    if isinstance(cached, str):
        progress.log(f"The cached {name} was unreadable ({cached}): rebuilding it", style="yellow")
        cached = None
    data_key: str | None = None
    if cached is not None:
        sequences, item_ids, statistics, warnings, data_key = cached
        progress.log(f"Using cached {name} ({statistics['events']:,} events)")
        for warning in warnings:
            progress.log(f"warning: {warning}", style="yellow")
    else:
        with progress.task(f"Preparing {name}: reading", total=4) as bar:
            interactions = dataset.load(context)
            bar.update(description=f"Preparing {name}: filtering and ordering")
            bar.advance()
            sequences, item_ids = preprocess(
                interactions, preprocessing, dataset=name, warn=context.warn
            )
            warnings = list(context.warnings)
            bar.update(description=f"Preparing {name}: statistics")
            bar.advance()
            statistics = dataset_statistics(sequences, raw_events=len(interactions))
            del interactions
            bar.update(description=f"Preparing {name}: caching")
            bar.advance()
            key = cache_key()  # loading may have downloaded the files the fingerprint describes
            data_key = content_key(sequences, item_ids, as_dict(preprocessing))
            _write_cache(
                cache_dir,
                key,
                sequences,
                item_ids,
                statistics,
                name,
                as_dict(preprocessing),
                warnings,
                data_key,
            )
            bar.advance()
        progress.log(f"Prepared {name} ({statistics['events']:,} events)")
    return PreparedData(
        name=name,
        dataset_id=dataset_id,
        sequences=sequences,
        item_ids=item_ids,
        key=data_key or content_key(sequences, item_ids, as_dict(preprocessing)),
        source_key=key,
        statistics=statistics,
        preprocessing=as_dict(preprocessing),
        warnings=tuple(warnings),
    )


def _apply_argument(
    dataset_info: Any, name: str, argument: str, values: dict[str, Any]
) -> dict[str, Any]:
    dataset_id = dataset_info.id
    option = dataset_info.argument_option
    if option is None:
        raise ConfigError(
            f"dataset '{dataset_id}' takes no argument, got '{argument}'",
            where=f"dataset {name}",
            hint=f"use '{dataset_id}' without ':{argument}'",
        )
    if option in values and str(values[option]) != argument:
        raise ConfigError(
            f"dataset '{name}' sets {option}='{argument}' but option {dataset_id}.{option} "
            f"is '{values[option]}'",
            where=f"option {dataset_id}.{option}",
            hint="give it only once",
        )
    return {**values, option: argument}


def content_key(
    sequences: Sequences, item_ids: np.ndarray, preprocessing: Mapping[str, Any]
) -> str:
    """Hex SHA-256 of prepared data: every array of ``sequences`` and ``item_ids`` (with
    dtype and shape), the item count, the resolved ``preprocessing`` options and the
    data format. It does not depend on where or when the files were read."""
    digest = hashlib.sha256()
    header = {
        "n_items": sequences.n_items,
        "preprocessing": dict(preprocessing),
        "data_format": DATA_FORMAT_VERSION,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    arrays = {
        "offsets": sequences.offsets,
        "items": sequences.items,
        "users": sequences.users,
        "timestamps": sequences.timestamps,
        "ratings": sequences.ratings,
        "item_ids": item_ids,
    }
    for name, array in arrays.items():
        digest.update(name.encode("utf-8"))
        if array is None:
            digest.update(b"none")
            continue
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        if array.dtype.kind == "O":
            digest.update("\x1f".join(map(str, array.tolist())).encode("utf-8"))
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _cache_key(
    dataset_cls: Any, options: Any, fingerprint: str, preprocessing: PreprocessOptions
) -> str:
    description = {
        "dataset": dataset_cls.id,
        "version": dataset_cls.version,
        "options": as_dict(options),
        "fingerprint": fingerprint,
        "preprocessing": as_dict(preprocessing),
        "data_format": DATA_FORMAT_VERSION,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_dir(settings: Settings, dataset_id: str) -> Path:
    cache_dir = settings.cache_root / "datasets" / dataset_id
    if cache_dir.resolve().is_relative_to(settings.data_root.resolve()):
        raise DataError(
            "the cache folder is inside the data folder, which must stay untouched",
            where=str(cache_dir),
            hint="set RECBENCH_CACHE to a folder outside RECBENCH_DATA",
        )
    return cache_dir


def _read_cache(
    cache_dir: Path, key: str
) -> tuple[Sequences, np.ndarray, dict[str, Any], list[str], str | None] | str | None:
    """The cached arrays, statistics, warnings and content key (:func:`content_key`);
    ``None`` when absent; why, when unreadable.

    An entry written before sizes and hashes were recorded is read without checking them;
    its content key (like that of an entry written before content keys were recorded) is
    ``None``: computed from the arrays by the caller. A recorded content key is trusted
    only when the arrays matched their recorded hash.
    """
    arrays_path, info_path = cache_dir / f"{key}.npz", cache_dir / f"{key}.json"
    if not (arrays_path.is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        size, digest = info.get("arrays_bytes"), info.get("arrays_sha256")
        if size is not None and arrays_path.stat().st_size != size:
            return f"{arrays_path.name} has {arrays_path.stat().st_size:,} bytes, {size:,} were written"
        if digest is not None and _file_sha256(arrays_path) != digest:
            return f"{arrays_path.name} does not match the recorded hash"
        with np.load(arrays_path, allow_pickle=False) as stored:
            sequences = Sequences(
                offsets=stored["offsets"],
                items=stored["items"],
                users=stored["users"],
                n_items=int(info["n_items"]),
                timestamps=stored["timestamps"] if "timestamps" in stored.files else None,
                ratings=stored["ratings"] if "ratings" in stored.files else None,
            )
            item_ids = stored["item_ids"]
        statistics: dict[str, Any] = info["statistics"]
        if "events" not in statistics:  # the log line reads it
            raise KeyError("statistics.events")
        warnings = [str(warning) for warning in info["warnings"]]
        recorded = info.get("content_key") if digest is not None else None
    except KeyError as exc:
        return f"no {exc.args[0]!r} in the entry"  # a damaged entry is rebuilt and replaced
    except (OSError, ValueError, EOFError, AttributeError, TypeError, zipfile.BadZipFile) as exc:
        return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__).splitlines()[0]
    return sequences, item_ids, statistics, warnings, None if recorded is None else str(recorded)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache(
    cache_dir: Path,
    key: str,
    sequences: Sequences,
    item_ids: np.ndarray,
    statistics: dict[str, Any],
    name: str,
    preprocessing: dict[str, Any],
    warnings: list[str],
    data_key: str,
) -> None:
    arrays: dict[str, Any] = {
        "offsets": sequences.offsets,
        "items": sequences.items,
        "users": sequences.users,
        "item_ids": item_ids,
    }
    if sequences.timestamps is not None:
        arrays["timestamps"] = sequences.timestamps
    if sequences.ratings is not None:
        arrays["ratings"] = sequences.ratings
    info = {
        "name": name,
        "n_items": sequences.n_items,
        "statistics": statistics,
        "preprocessing": preprocessing,
        "warnings": warnings,
        "data_format": DATA_FORMAT_VERSION,
        "content_key": data_key,
    }
    arrays_path = cache_dir / f"{key}.npz"
    try:
        # The arrays first, then the JSON: an entry counts only when both are there.
        atomic_write(arrays_path, lambda handle: np.savez(handle, **arrays))
        info["arrays_bytes"] = arrays_path.stat().st_size
        info["arrays_sha256"] = _file_sha256(arrays_path)
        write_bytes_atomic(cache_dir / f"{key}.json", json.dumps(info, indent=2).encode("utf-8"))
    except WriteError as exc:
        raise DataError(
            f"cannot write the dataset cache: {exc.what}",
            where=exc.where,
            hint=f"{exc.hint}, or set RECBENCH_CACHE to a writable folder",
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot write the dataset cache ({exc.strerror or exc})",
            where=str(cache_dir),
            hint="set RECBENCH_CACHE to a writable folder",
        ) from None
