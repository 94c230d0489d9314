"""Parallel fits on one machine (``--jobs N``): the same results as one after another,
resumable after an interrupt, a killed worker's cells failed and nothing else lost, and
the executor flags' bad input as one-line errors."""

from __future__ import annotations

import os
import signal
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import recbench
import recbench.runner.execute
from recbench import cli, hookimpl
from recbench.contracts import FitContext
from recbench.errors import ConfigError
from recbench.registry import discover
from recbench.runner.local_pool import ProcessPool

TINY = "synthetic:tiny"


def test_two_jobs_give_the_sequential_results_bit_for_bit(
    sequential_run, module_settings, grid, same_results, tmp_path, monkeypatch
):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # one thread per worker
    out = tmp_path / "run"
    recbench.run(**grid, out=out, settings=module_settings, jobs=2)
    same_results(sequential_run, out)
    assert (out / "report.md").is_file()
    assert any((out / "checkpoints").rglob("*.pt"))  # the workers' checkpoints came back


def test_an_interrupted_parallel_run_resumes_to_the_sequential_results(
    sequential_run, module_settings, grid, same_results, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    record = recbench.runner.execute.record_outcome
    recorded = []

    def interrupted_after_one(*args: Any) -> None:
        if recorded:
            raise KeyboardInterrupt
        record(*args)
        recorded.append(args)

    monkeypatch.setattr(recbench.runner.execute, "record_outcome", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        recbench.run(**grid, out=out, settings=module_settings, jobs=2, report=False)
    finished = len(list((out / "cells").glob("*.json")))
    assert finished == 2  # one fit's two protocols: the rest was stopped
    monkeypatch.setattr(recbench.runner.execute, "record_outcome", record)
    recbench.run(**grid, out=out, settings=module_settings, jobs=2, resume=True)
    same_results(sequential_run, out)


@dataclass
class _NoOptions:
    pass


class SelfKilling:
    """A model whose process is killed while it trains (as by the kernel's OOM killer)."""

    id = "self-killing"
    summary = "a model whose worker dies in fit"
    version = "1"
    Options = _NoOptions

    def __init__(self, options: _NoOptions):
        self.options = options

    def fit(self, train, valid, ctx: FitContext) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def score(self, batch):
        raise NotImplementedError


def test_a_killed_worker_fails_its_cells_and_nothing_else(module_settings, tmp_path):
    registry = discover()

    @hookimpl
    def register_models(register):
        register(SelfKilling)

    registry.add_plugin(
        "self-killing", types.SimpleNamespace(register_models=register_models), "tests", "0"
    )
    result = recbench.run(
        models=["self-killing", "pop"],
        dataset=TINY,
        protocols=["last-item"],
        seeds=[0, 1],
        overrides=["export.enabled=false"],
        out=tmp_path / "run",
        settings=module_settings,
        registry=registry,
        jobs=2,
    )
    status = {(c["model_label"], c["seed"]): c for c in result.cells}
    assert {key: cell["status"] for key, cell in status.items()} == {
        ("self-killing", 0): "failed",
        ("self-killing", 1): "failed",
        ("pop", 0): "ok",
        ("pop", 1): "ok",
    }
    assert "was killed (SIGKILL)" in status["self-killing", 0]["error"]
    assert "## Failures" in (result.path / "report.md").read_text()


def _dies_on_first_try(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(3)
    return "second try"


def test_a_unit_whose_worker_dies_is_retried_once_then_lost(tmp_path):
    with ProcessPool(2) as pool:
        retried = pool.submit(_dies_on_first_try, str(tmp_path / "marker"))
        lost = pool.submit(os._exit, 4)
        done = {c.ticket: c for c in pool.completed()}
    assert done[retried].value == "second try" and done[retried].lost is None
    assert done[lost].lost is not None and "exited with status 4" in done[lost].lost


def _read_shared(shared: dict[str, int], key: str) -> int:
    return shared[key] * 10


def test_a_shared_value_reaches_every_unit(tmp_path):
    with ProcessPool(2) as pool:
        shared = pool.share({"a": 1, "b": 2, "c": 3})
        tickets = {pool.submit(_read_shared, shared, key): key for key in "abc"}
        values = {tickets[c.ticket]: c.value for c in pool.completed()}
    assert values == {"a": 10, "b": 20, "c": 30}


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


RUN = [
    "run",
    "--models",
    "pop",
    "--dataset",
    TINY,
    "--protocols",
    "last-item",
    "--no-export",
    "--quiet",
]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--jobs", "0"], "--jobs takes a positive integer, got '0'"),
        (["--jobs", "3"], "--jobs 3 is more jobs than the run has fits"),
        (["--executor", "rya"], "unknown executor 'rya' (in --executor): did you mean 'ray'?"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--jobs", "2"], "--jobs applies to the local executor"),
        (
            ["--executor", "ray", "--ray-address", "127.0.0.1:1"],
            "the Ray cluster at 127.0.0.1:1 is unreachable",
        ),
    ],
)
def test_bad_executor_flags_are_one_line_errors(env, tmp_path, capsys, flags, message):
    code, stderr = run_cli(capsys, *RUN, "--seeds", "0,1", "--out", str(tmp_path / "r"), *flags)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr
    assert message in lines[0]
    assert not (tmp_path / "r").exists()


def test_more_jobs_than_fits_names_how_many(env, tmp_path, capsys):
    code, stderr = run_cli(capsys, *RUN, "--out", str(tmp_path / "r"), "--jobs", "2")
    assert code == 2 and stderr.strip().endswith("(1 fit) (in --jobs): pass --jobs 1 or fewer")


def test_ray_not_installed_says_which_extra_to_install(env, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, stderr = run_cli(capsys, *RUN, "--out", str(tmp_path / "r"), "--executor", "ray")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "needs Ray, which is not installed" in stderr and "install recbench[ray]" in stderr


def test_executor_options_refuse_zero_jobs_from_the_api(settings, tmp_path):
    with pytest.raises(ConfigError, match="--jobs takes a positive integer, got 0"):
        recbench.run(["pop"], TINY, out=tmp_path / "r", settings=settings, jobs=0)


def test_a_worker_stopped_while_its_interpreter_exits_leaves_quietly() -> None:
    """SIGTERM during a worker's exit callbacks (the pool stopping workers after Ctrl-C):
    the worker leaves with 128 + SIGTERM and no 'Exception ignored' traceback."""
    import subprocess

    script = (
        "import atexit, os, signal, time\n"
        "from recbench.runner import local_pool\n"
        "signal.signal(signal.SIGTERM, local_pool._leave)\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(2)))\n"
        "atexit.register(local_pool._exiting.set)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 128 + signal.SIGTERM
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
