"""Every registered plugin (recbench's own and any installed third party's) passes the
conformance kit of :mod:`recbench.testing`, the same checks a plugin author runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from recbench.contracts import KINDS
from recbench.data.prepare import DataContext
from recbench.registry import PluginInfo, discover
from recbench.testing import assert_conforms

#: Models that are not personalised by design: they are not required to beat popularity.
NOT_PERSONALISED = {"pop"}

_REGISTRY = discover()
REGISTERED = [
    pytest.param(info, id=f"{info.kind}-{info.id}")
    for kind in KINDS
    for info in _REGISTRY.all(kind)
]


def test_discovery_had_no_failures():
    assert [f.one_line() for f in _REGISTRY.failures] == []


@pytest.mark.parametrize("info", REGISTERED)
def test_registered_plugin_conforms(info: PluginInfo, tmp_path: Path):
    kwargs: dict[str, Any] = {}
    if info.kind == "model":
        kwargs["learns"] = info.id not in NOT_PERSONALISED
    if info.kind == "dataset":
        kwargs["options"] = _dataset_options(info.id, tmp_path)
        kwargs["data_context"] = _data_context(tmp_path)
    assert_conforms(info, **kwargs)


def _dataset_options(dataset_id: str, tmp_path: Path) -> dict[str, Any]:
    if dataset_id == "synthetic":
        return {"size": "tiny"}
    if dataset_id == "file":
        path = tmp_path / "events.csv"
        rows = [
            f"{u},{(u * 7 + i * 3) % 40 + 1},{1 + (u + i) % 5},{1_000_000 + 60 * i}"
            for u in range(1, 31)
            for i in range(10)
        ]
        path.write_text("user,item,rating,timestamp\n" + "\n".join(rows) + "\n")
        return {"path": str(path)}
    if dataset_id in JSON_FIXTURES:
        return {
            "path": str(Path(__file__).parents[2] / "fixtures" / "json" / JSON_FIXTURES[dataset_id])
        }
    return {}


#: The fixture file that each dataset reading a JSON lines file of its own is checked on.
JSON_FIXTURES = {"jsonl": "events.jsonl", "amazon": "amazon-2014-reviews.json"}


def _data_context(tmp_path: Path) -> DataContext:
    """Real files under RECBENCH_DATA when it is set (read-only), offline: datasets whose
    files are not there are skipped by the kit."""
    real = os.environ.get("RECBENCH_DATA")
    data_root = Path(real) if real else tmp_path / "data"
    download_root = tmp_path / "downloads"
    return DataContext(
        data_root=data_root,
        download_root=download_root,
        cache_root=tmp_path / "cache",
        offline=True,
    )
