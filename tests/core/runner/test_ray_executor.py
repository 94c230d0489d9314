"""The Ray executor on a local Ray instance (one for the module: Ray starts slowly): the
same results as a sequential run, and a unit whose worker dies retried once, then lost.

Marked ``ray`` (deselect with ``-m 'not ray'``); skipped when Ray is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import recbench
from recbench.runner.ray_executor import RayExecutor

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """A local Ray instance with two CPUs; torch in its workers on one thread each."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_ray_gives_the_sequential_results(
    sequential_run, module_settings, grid, same_results, tmp_path: Path
):
    out = tmp_path / "run"
    recbench.run(**grid, out=out, settings=module_settings, executor="ray")
    same_results(sequential_run, out)


def test_a_ray_task_whose_worker_dies_is_lost_after_one_retry():
    with RayExecutor() as executor:
        lost = executor.submit(os._exit, 1)
        fine = executor.submit(len, "four")
        done = {c.ticket: c for c in executor.completed()}
    assert done[fine].value == 4
    assert done[lost].lost is not None and "Ray worker lost" in done[lost].lost
    assert ray.is_initialized()  # a session it did not start is left running
