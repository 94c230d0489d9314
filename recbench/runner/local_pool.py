"""A pool of worker processes on this machine (``--jobs N``).

Each worker is a fresh Python process (the ``spawn`` start method: no state of the driver
is inherited by accident, and CUDA works in it) that runs one unit at a time with
``torch.set_num_threads(threads)`` -- the driver's threads split between the workers --
and, when the run uses GPUs, on GPU ``i mod gpus`` for worker ``i``. The driver talks to
each worker over its own pipe, so it knows which unit a worker was running when it died:
that unit is retried once on a fresh worker, then completes as lost.

Workers ignore Ctrl-C: the driver receives it, stops every worker (SIGTERM, on which a
worker leaves through ``finally`` blocks, removing its scratch files) and re-raises. A
driver killed outright (SIGKILL, the OOM killer) cannot stop them: each worker watches its
driver and leaves as on SIGTERM within a second of its death.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from recbench.runner.executors import ONE_CPU, Completed, Executor, Resources

#: How often a unit whose worker died is tried again on a fresh worker.
RETRIES = 1
#: How often a worker checks that its driver is alive.
DRIVER_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class SharedValue:
    """The handle :meth:`ProcessPool.share` returns: the value is sent to each worker
    once and put in place of the handle there."""

    token: str


@dataclass
class _Unit:
    ticket: int
    function: Callable[..., Any]
    args: tuple[Any, ...]
    attempts: int = 0


@dataclass
class _Worker:
    index: int
    process: Any
    connection: Connection
    sent: set[str] = field(default_factory=set)
    unit: _Unit | None = None


class ProcessPool(Executor):
    """``jobs`` worker processes, each on ``threads`` CPU threads (see the module
    docstring); ``gpus``: the GPUs the workers take in turn (0: none)."""

    def __init__(self, jobs: int, *, threads: int = 1, gpus: int = 0):
        self.slots = jobs
        self.threads = threads
        self.gpus = gpus
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * jobs
        self._queue: deque[_Unit] = deque()
        self._shared: dict[str, Any] = {}
        self._tickets = 0

    def share(self, value: Any) -> SharedValue:
        token = uuid.uuid4().hex
        self._shared[token] = value
        return SharedValue(token)

    def submit(
        self, function: Callable[..., Any], *args: Any, resources: Resources = ONE_CPU
    ) -> int:
        self._tickets += 1
        self._queue.append(_Unit(self._tickets, function, args))
        return self._tickets

    def completed(self) -> Iterator[Completed]:
        while True:
            self._dispatch()
            busy = [w for w in self._workers if w is not None and w.unit is not None]
            if not busy:
                return
            wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                finished = self._collect(worker)
                if finished is not None:
                    yield finished

    def close(self) -> None:
        for worker in self._workers:
            if worker is None:
                continue
            if worker.process.is_alive():
                if worker.unit is None:
                    try:
                        worker.connection.send(("stop",))
                    except OSError:
                        worker.process.terminate()
                else:
                    worker.process.terminate()
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers = [None] * self.slots
        self._queue.clear()

    # -- the driver's side ---------------------------------------------------------------

    def _start(self, index: int) -> _Worker:
        driver_end, worker_end = self._context.Pipe()
        gpu = index % self.gpus if self.gpus else None
        process = self._context.Process(
            target=_serve,
            args=(worker_end, self.threads, gpu),
            name=f"recbench-job-{index + 1}",
            daemon=True,
        )
        process.start()
        worker_end.close()
        return _Worker(index, process, driver_end)

    def _dispatch(self) -> None:
        for index, worker in enumerate(self._workers):
            if not self._queue:
                return
            if worker is not None and worker.unit is not None:
                continue
            if worker is None or not worker.process.is_alive():
                worker = self._workers[index] = self._start(index)
            unit = self._queue.popleft()
            for token in _tokens(unit.args) - worker.sent:
                worker.connection.send(("share", token, self._shared[token]))
                worker.sent.add(token)
            unit.attempts += 1
            worker.connection.send(("run", unit.function, unit.args))
            worker.unit = unit

    def _collect(self, worker: _Worker) -> Completed | None:
        """The outcome of ``worker``'s unit when it finished or its worker died; ``None``
        while it runs (or when it was queued again after a death)."""
        unit = worker.unit
        assert unit is not None
        message = None
        if worker.connection.poll():
            try:
                message = worker.connection.recv()
            except (EOFError, OSError):
                message = None
        if message is None:
            if worker.process.is_alive():
                return None
            worker.process.join()
            reason = _death(worker.process.exitcode, worker.process.name)
            worker.connection.close()
            self._workers[worker.index] = None
            if unit.attempts <= RETRIES:
                self._queue.appendleft(unit)
                return None
            return Completed(unit.ticket, lost=reason)
        worker.unit = None
        status, payload = message
        if status == "ok":
            return Completed(unit.ticket, value=payload)
        return Completed(unit.ticket, error=payload)


def _tokens(args: tuple[Any, ...]) -> set[str]:
    return {arg.token for arg in args if isinstance(arg, SharedValue)}


def _death(exitcode: int | None, name: str) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            cause = signal.Signals(-exitcode).name
        except ValueError:
            cause = f"signal {-exitcode}"
        return f"worker {name} was killed ({cause})"
    return f"worker {name} exited with status {exitcode}"


# -- the worker's side -------------------------------------------------------------------


#: Set once the worker's interpreter is exiting (its ``atexit`` callbacks run).
_exiting = threading.Event()


def _leave(signum: int, frame: Any) -> None:
    if _exiting.is_set():  # an exception raised in an exit callback prints a traceback
        os._exit(128 + signum)
    sys.exit(128 + signum)  # through finally blocks: scratch files are removed


def _leave_with(driver: int) -> None:
    """Wait for the driver process to die (this process is then adopted by another), then
    leave as on SIGTERM."""
    while os.getppid() == driver:
        time.sleep(DRIVER_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _serve(connection: Connection, threads: int, gpu: int | None) -> None:
    """A worker's loop: receive shared values and units, send back each outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave)
    threading.Thread(target=_leave_with, args=(os.getppid(),), daemon=True).start()
    import torch

    atexit.register(_exiting.set)  # after torch's: runs before its exit callbacks

    torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    shared: dict[str, Any] = {}
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return  # the driver is gone
        if message[0] == "stop":
            return
        if message[0] == "share":
            shared[message[1]] = message[2]
            continue
        _, function, args = message
        args = tuple(shared[a.token] if isinstance(a, SharedValue) else a for a in args)
        try:
            reply: tuple[str, Any] = ("ok", function(*args))
        except Exception as exc:
            reply = ("error", exc)
        try:
            connection.send(reply)
        except Exception as exc:  # the value or the error does not pickle
            connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
