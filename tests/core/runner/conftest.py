"""Fixtures of the executor tests: a small grid and its sequential run, shared by the
local pool's and Ray's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import recbench
from recbench.config.settings import Settings
from recbench.results import RunDirectory

#: A baseline and a tiny neural model (with its order check), two seeds, no export.
GRID: dict[str, Any] = {
    "models": ["pop", "lstm"],
    "dataset": "synthetic:tiny",
    "seeds": [0, 1],
    "protocols": ["half-split", "last-item"],
    "overrides": ["lstm.epochs=1", "lstm.embedding_dim=8", "export.enabled=false"],
}


def _comparable(out: Path) -> dict[str, Any]:
    """Every cell of a run without its timings, and its per-query arrays."""
    run_dir = RunDirectory.open(out)
    cells = {}
    for cell in run_dir.cells():
        name = f"{cell['model_label']}/{cell['protocol']}/{cell['seed']}"
        record = {k: v for k, v in cell.items() if k not in ("timing", "record_sha256")}
        cells[name] = (record, run_dir.per_query(cell))
    return cells


def _assert_same_results(a: Path, b: Path) -> None:
    cells_a, cells_b = _comparable(a), _comparable(b)
    assert sorted(cells_a) == sorted(cells_b)
    for name, (record, arrays) in cells_a.items():
        other_record, other_arrays = cells_b[name]
        assert record == other_record, name
        assert sorted(arrays) == sorted(other_arrays), name
        for metric, values in arrays.items():
            assert values.dtype == other_arrays[metric].dtype
            assert np.array_equal(values, other_arrays[metric]), f"{name} {metric}"


@pytest.fixture(scope="session")
def grid() -> dict[str, Any]:
    return dict(GRID)


@pytest.fixture(scope="session")
def same_results() -> Callable[[Path, Path], None]:
    """Assert that two runs hold the same cells, bit for bit (timings aside)."""
    return _assert_same_results


@pytest.fixture(scope="session")
def module_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("executors")
    return Settings(data_root=root / "data", cache_root=root / "cache", offline=True)


@pytest.fixture(scope="session")
def sequential_run(module_settings: Settings, tmp_path_factory) -> Path:
    """The grid fitted one after another, in this process, on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("sequential") / "run"
        recbench.run(**GRID, out=out, settings=module_settings, report=False)
    finally:
        torch.set_num_threads(threads)
    return out
