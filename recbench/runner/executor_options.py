"""Choosing a run's executor: ``--executor local|ray``, ``--jobs N``, ``--ray-address``.

:func:`open_executor` turns :class:`ExecutorOptions` into an
:class:`~recbench.runner.executors.Executor`: :class:`~recbench.runner.executors.InProcess`
for ``--jobs 1``, a :class:`~recbench.runner.local_pool.ProcessPool` for ``--jobs N``, a
:class:`~recbench.runner.ray_executor.RayExecutor` for ``--executor ray``.
"""

from __future__ import annotations

from dataclasses import dataclass

from recbench.errors import ConfigError, close_matches
from recbench.runner.executors import Executor, InProcess

#: The executors ``--executor`` names.
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorOptions:
    """How a run's cells are executed: ``kind`` (``local`` or ``ray``), ``jobs`` (local
    worker processes; 1: in this process) and ``ray_address`` (an existing Ray cluster;
    ``None``: a local one started for the run)."""

    kind: str = "local"
    jobs: int = 1
    ray_address: str | None = None

    def check(self) -> None:
        """Refuse an unknown executor, a job count below one, and flags of another
        executor."""
        if self.kind not in EXECUTORS:
            raise ConfigError(
                f"unknown executor '{self.kind}'",
                where="--executor",
                hint=close_matches(self.kind, EXECUTORS),
            )
        if self.jobs < 1:
            raise ConfigError(
                f"--jobs takes a positive integer, got {self.jobs}",
                where="--jobs",
                hint="pass --jobs 1 (the default) to run the cells one after another",
            )
        if self.kind == "ray" and self.jobs != 1:
            raise ConfigError(
                "--jobs applies to the local executor",
                where="--jobs",
                hint="Ray runs as many cells at once as the cluster has resources for: "
                "leave out --jobs",
            )
        if self.ray_address is not None and self.kind != "ray":
            raise ConfigError(
                "--ray-address needs --executor ray",
                where="--ray-address",
                hint="add --executor ray, or leave out --ray-address",
            )

    @property
    def parallel(self) -> bool:
        """Whether units run in other processes (possibly several at once)."""
        return self.kind != "local" or self.jobs > 1


#: The default: fits one after another in the driver's process.
IN_PROCESS = ExecutorOptions()


def open_executor(options: ExecutorOptions, *, threads: int, gpus: int) -> Executor:
    """The executor ``options`` asks for. ``threads`` are the CPU threads to split
    between local workers; ``gpus`` the visible GPUs the run uses (0: none), one local
    worker per GPU in turn.

    Raises
    ------
    ConfigError
        Ray is not installed, or its cluster cannot be reached.
    """
    options.check()
    if options.kind == "ray":
        from recbench.runner.ray_executor import RayExecutor

        return RayExecutor(address=options.ray_address)
    if options.jobs == 1:
        return InProcess()
    from recbench.runner.local_pool import ProcessPool

    return ProcessPool(options.jobs, threads=max(1, threads // options.jobs), gpus=gpus)
