"""Ray tasks as work units (``--executor ray [--ray-address ADDR]``, extra ``recbench[ray]``).

Each unit is a Ray task that declares its :class:`~recbench.runner.executors.Resources`
(``num_cpus``, ``num_gpus``) and runs with ``torch.set_num_threads`` set to its CPUs.
Shared values go to Ray's object store once (:func:`ray.put`); every task reads them
from there. A task whose worker dies is retried once by Ray (``max_retries=1``); when the
retry dies too it completes as lost. An exception the unit raises is not retried.

Without an address a local Ray instance is started for the run and stopped after it (a
Ray session that is already running in this process is used, and left running). With an
address the driver joins that cluster: ``auto`` (a cluster started on this machine with
``ray start``), ``HOST:PORT`` of the head node, or ``ray://HOST:10001`` (Ray Client).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

from recbench.errors import ConfigError
from recbench.runner.executors import ONE_CPU, Completed, Executor, Resources

#: How often Ray runs a task again when its worker dies.
RETRIES = 1
#: Seconds to wait for the head node's port before calling an address unreachable.
CONNECT_TIMEOUT = 5.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed",
            where="--executor",
            hint="install recbench[ray] (pip install 'recbench[ray]')",
        ) from None
    return ray


class RayExecutor(Executor):
    """Units as Ray tasks (see the module docstring)."""

    slots = 0

    def __init__(self, address: str | None = None):
        self.ray = import_ray()
        self._started = False
        if not self.ray.is_initialized():
            if address not in (None, "auto") and not address.startswith("ray://"):
                _check_reachable(address)
            try:
                self.ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot connect to the Ray cluster: {str(exc).splitlines()[0]}",
                    where=f"--ray-address {address}" if address else "--executor ray",
                    hint="start the cluster (ray start --head, or ray up) and pass the head "
                    "node's address, e.g. --ray-address HOST:6379",
                ) from None
            self._started = True
        self._pending: dict[Any, int] = {}
        self._tickets = 0

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def submit(
        self, function: Callable[..., Any], *args: Any, resources: Resources = ONE_CPU
    ) -> int:
        remote = self.ray.remote(_call).options(
            num_cpus=resources.cpus,
            num_gpus=resources.gpus,
            max_retries=RETRIES,
            retry_exceptions=False,
        )
        self._tickets += 1
        threads = max(1, int(resources.cpus))
        self._pending[remote.remote(function, threads, *args)] = self._tickets
        return self._tickets

    def completed(self) -> Iterator[Completed]:
        exceptions = self.ray.exceptions
        while self._pending:
            (ready,), _ = self.ray.wait(list(self._pending), num_returns=1)
            ticket = self._pending.pop(ready)
            try:
                value = self.ray.get(ready)
            except exceptions.RayTaskError as exc:  # the unit raised: not the worker's fault
                yield Completed(ticket, error=exc.as_instanceof_cause())
            except exceptions.RayError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                yield Completed(ticket, lost=f"Ray worker lost ({type(exc).__name__}) {reason}")
            else:
                yield Completed(ticket, value=value)

    def close(self) -> None:
        for reference in self._pending:
            self.ray.cancel(reference, force=True)
        self._pending.clear()
        if self._started:
            self.ray.shutdown()
            self._started = False


def _call(function: Callable[..., Any], threads: int, *args: Any) -> Any:
    """Run ``function(*args)`` in a Ray worker on ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return function(*args)


def _check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` whose port does not answer within :data:`CONNECT_TIMEOUT`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"not a Ray address: '{address}'",
            where="--ray-address",
            hint="pass HOST:PORT of the head node (e.g. 10.0.0.5:6379), ray://HOST:10001 or auto",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ConfigError(
            f"the Ray cluster at {address} is unreachable ({exc.strerror or exc})",
            where="--ray-address",
            hint="check that the head node runs (ray status) and that this machine can "
            "reach its port",
        ) from None
