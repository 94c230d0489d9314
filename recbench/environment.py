"""Records of the environment results were made in: versions, processor, threads, device.

:func:`process_environment` describes this process (versions, processor, thread
settings); both records recbench writes start from it: a run's ``environment.json``
(:func:`describe_environment`: plus recbench's version and git hash, the device and the
plugins) and every latency record (:func:`recbench.serve.latency.environment`: plus ONNX
versions, GPUs and the load average).
"""

from __future__ import annotations

import contextlib
import os
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
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                "--device cuda was asked for but no CUDA device is available",
                hint="use --device cpu or --device auto",
            )
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"unknown device '{name}'", hint="use auto, cpu or cuda") from None
    if device.type == "cuda":
        enable_tf32()
    return device


def enable_tf32() -> None:
    """Let CUDA float32 matrix products and cuDNN use TensorFloat-32 (10-bit mantissa
    inputs, float32 accumulation: about 1e-3 relative error per product, up to 8x the
    float32 throughput on an A100/H100). Recorded as ``float32_matmul_precision`` and
    ``cudnn_allow_tf32`` in ``environment.json``; a CPU run is unaffected."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else platform's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


#: Environment variables that set the thread pools of the numeric libraries.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def process_environment() -> dict[str, Any]:
    """Versions, processor and thread settings of this process.

    Keys: ``python``, ``platform``, ``processor`` (the machine type), ``cpu`` (the
    processor's model name), ``cpu_count`` (logical CPUs), ``torch``, ``numpy``,
    ``torch_threads``, ``torch_interop_threads`` and ``thread_variables`` (those of
    :data:`THREAD_VARIABLES` that are set).
    """
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_variables": {
            name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ
        },
    }


def describe_environment(registry: Registry, device: torch.device) -> dict[str, Any]:
    """A run's ``environment.json``: :func:`process_environment`, recbench's version,
    plugin API and git hash, the device (``cuda``: the CUDA version, ``gpu``: its name,
    and whether TensorFloat-32 is on: :func:`enable_tf32`)
    and the plugins (distribution and version) with those that failed to load."""
    info: dict[str, Any] = {
        **process_environment(),
        "recbench": __version__,
        "plugin_api": PLUGIN_API_VERSION,
        "device": str(device),
        "git": git_revision(Path(__file__).resolve().parent),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
        info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        info["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    info["plugins"] = sorted({(dist, version) for dist, version in registry.distributions.values()})
    info["plugin_failures"] = [failure.one_line() for failure in registry.failures]
    return info
