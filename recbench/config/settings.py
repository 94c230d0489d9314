"""Where recbench reads raw data and writes derived data, and which plugins it loads.

This is the only module that reads environment variables; the CLI and the Python API
build :class:`Settings` from them once and pass it down.

``RECBENCH_DATA``
    Raw dataset files, ``<RECBENCH_DATA>/<dataset id>/...`` (may be read-only).
    Default: the user cache directory's ``data`` folder.
``RECBENCH_CACHE``
    Derived data (parsed, filtered, split arrays). Default: the user cache directory's
    ``derived`` folder. Never inside ``RECBENCH_DATA``.
``RECBENCH_OFFLINE``
    ``1`` forbids downloads (missing data is then an error that says where to put it).
``RECBENCH_DISABLE_PLUGINS`` / ``RECBENCH_LOAD_PLUGINS``
    Comma-separated distribution names not to load / the only ones to load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    data_root: Path
    cache_root: Path
    offline: bool = False
    disabled_plugins: tuple[str, ...] = ()
    loaded_plugins: tuple[str, ...] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = Path(platformdirs.user_cache_dir("recbench"))
        loaded = _split(env.get("RECBENCH_LOAD_PLUGINS"))
        return cls(
            data_root=Path(env.get("RECBENCH_DATA") or base / "data").expanduser(),
            cache_root=Path(env.get("RECBENCH_CACHE") or base / "derived").expanduser(),
            offline=env.get("RECBENCH_OFFLINE", "").lower() in ("1", "true", "yes"),
            disabled_plugins=_split(env.get("RECBENCH_DISABLE_PLUGINS")),
            loaded_plugins=loaded or None,
        )

    @property
    def download_root(self) -> Path:
        """Where downloads go: ``data_root`` when writable, else a folder in the cache."""
        probe = self.data_root
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if os.access(probe, os.W_OK):
            return self.data_root
        return self.cache_root / "downloads"
