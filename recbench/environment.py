"""A record of the environment a run was made in: versions, device, threads, git hash."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.hookspecs import PLUGIN_API_VERSION
from recbench.registry import Registry
from recbench.version import __version__


def git_revision(path: Path) -> str | None:
    """The commit hash of the git checkout containing ``path`` (``+dirty`` if modified)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    from recbench.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA device is available",
            hint="use --device cpu or --device auto",
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'", hint="use auto, cpu or cuda") from None


def describe_environment(registry: Registry, device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "recbench": __version__,
        "plugin_api": PLUGIN_API_VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "git": git_revision(Path(__file__).resolve().parent),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    info["plugins"] = sorted({(dist, version) for dist, version in registry.distributions.values()})
    info["plugin_failures"] = [failure.one_line() for failure in registry.failures]
    return info
