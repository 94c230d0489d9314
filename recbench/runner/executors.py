"""Executors: where the work units of a run (a benchmark's cells, tuning trials) run.

An :class:`Executor` takes work units -- a picklable callable with its arguments and the
:class:`Resources` it needs -- and hands back each unit's outcome as it finishes
(:meth:`Executor.completed`), in whatever order they finish. The caller (the driver)
alone writes results, so an executor never touches the run directory. Three kinds:

- :class:`InProcess` runs each unit in the calling process, one after another, in the
  order they were submitted (``--jobs 1``, the default);
- :class:`recbench.runner.local_pool.ProcessPool` runs them in N worker processes of this
  machine (``--jobs N``);
- :class:`recbench.runner.ray_executor.RayExecutor` runs each as a Ray task on a local or
  remote Ray cluster (``--executor ray``).

A value that every unit reads (the prepared dataset) is handed over once with
:meth:`Executor.share`: the handle it returns is passed as an argument and arrives in the
worker as the value itself. A unit whose worker dies (killed, out of memory, a lost node)
is retried once on a fresh worker; when that one dies too the unit completes as *lost*
(:attr:`Completed.lost`), and the others go on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resources:
    """What one work unit needs: CPU cores and GPUs (a Ray task declares them; the local
    pool gives every worker its share of the machine instead)."""

    cpus: float = 1.0
    gpus: float = 0.0


#: What a unit needs unless it says otherwise.
ONE_CPU = Resources()


@dataclass(frozen=True)
class Completed:
    """A finished work unit: ``ticket`` is what :meth:`Executor.submit` returned;
    ``value`` what the callable returned; ``error`` what it raised instead; ``lost`` why
    its worker died (after the retry), ``None`` when it did not."""

    ticket: int
    value: Any = None
    error: BaseException | None = None
    lost: str | None = None


class Executor(ABC):
    """Runs work units and hands back their outcomes as they finish (see the module
    docstring). Use it as a context manager: leaving it stops every worker, also on
    Ctrl-C, and units not finished by then are dropped."""

    #: How many units run at once (the most; Ray: ``0``, as many as resources allow).
    slots: int = 1

    def share(self, value: Any) -> Any:
        """A handle of ``value`` to pass as an argument of :meth:`submit`: it arrives in
        the worker as ``value``, sent there once rather than with every unit."""
        return value

    @abstractmethod
    def submit(
        self, function: Callable[..., Any], *args: Any, resources: Resources = ONE_CPU
    ) -> int:
        """Queue ``function(*args)`` (a picklable, module-level callable for executors
        with workers) and return its ticket."""

    @abstractmethod
    def completed(self) -> Iterator[Completed]:
        """Every unit submitted so far, as it finishes (units submitted while iterating
        are included)."""

    def close(self) -> None:  # noqa: B027 (nothing to stop by default)
        """Stop the workers (a running unit is stopped; its result is dropped)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcess(Executor):
    """Runs each unit in this process when :meth:`completed` reaches it, in the order
    they were submitted. An exception a unit raises is raised by :meth:`completed`
    (there is no worker to lose, and an interrupt stops the run where it is)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._tickets = 0

    def submit(
        self, function: Callable[..., Any], *args: Any, resources: Resources = ONE_CPU
    ) -> int:
        self._tickets += 1
        self._queue.append((self._tickets, function, args))
        return self._tickets

    def completed(self) -> Iterator[Completed]:
        while self._queue:
            ticket, function, args = self._queue.popleft()
            yield Completed(ticket, value=function(*args))
