"""Shared fixtures. Real MovieLens files are found through RECBENCH_DATA; tests that need
them are skipped (not failed) when they are absent. A module of tests on tiny tensors
runs them on one thread with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recbench.config.settings import Settings

# tests/fixtures holds data and an example plugin with its own tests, not tests of ours.
collect_ignore = ["fixtures"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with an empty data root and a fresh cache, offline."""
    return Settings(data_root=tmp_path / "data", cache_root=tmp_path / "cache", offline=True)


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``settings``, also given to the command line through its environment variables."""
    monkeypatch.setenv("RECBENCH_DATA", str(settings.data_root))
    monkeypatch.setenv("RECBENCH_CACHE", str(settings.cache_root))
    monkeypatch.setenv("RECBENCH_OFFLINE", "1")
    return settings


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test: with tiny tensors one thread is faster, and
    immune to a busy second core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_data_root() -> Path:
    """The folder holding real MovieLens files (``ml-100k/u.data``...), or skip."""
    root = os.environ.get("RECBENCH_DATA")
    if not root or not (Path(root) / "ml-100k" / "u.data").is_file():
        pytest.skip("real MovieLens data not available (set RECBENCH_DATA)")
    return Path(root)


@pytest.fixture
def real_settings(real_data_root: Path, tmp_path: Path) -> Settings:
    """Settings reading real data (read-only) with a fresh cache, offline."""
    return Settings(data_root=real_data_root, cache_root=tmp_path / "cache", offline=True)
