"""Serving latency of trained models: a timing harness and per-model latency records.

Two units are timed, each at batch 1 (p50/p95/p99 of single calls) and at a large
batch (throughput, queries per second):

``step`` (neural models)
    One step of the model's ``cell()`` (:mod:`recbench.serve.export`): read one item per
    query, update the state, score every item -- the cost of serving one event to a
    user whose state is kept. Runtimes: ``torch`` (the cell in eager mode, under
    ``inference_mode``), ``onnxruntime`` (the exported ``cell.onnx``), and the opt-in
    ``torchscript`` (traced and frozen) and ``compile`` (``torch.compile``). CPU
    runtimes run at each requested thread count; on a machine where torch sees a GPU,
    ``torch`` and ``onnxruntime`` also run on CUDA.
``score`` (every model)
    The model's own ``score`` on real test queries (a :class:`SequenceBatch` of input
    sequences): the cost of scoring a user from the history, for neural models and
    baselines alike, on the run's device.

A measurement is: ``warmup`` untimed calls, then timed calls one by one
(``time.perf_counter_ns``, the garbage collector off, CUDA synchronised after each call)
until ``repeats`` calls are timed, or ``max_seconds`` have passed once a minimum of calls
is reached. Inputs are fixed random item ids and the cell's initial state (batch 1: one
id). Every measurement records its thread count, device, repeats and
``os.getloadavg()`` before and after, and every record the versions and thread
settings, so numbers can be compared only where they were measured alike.

A cell whose ONNX graph fails export or parity gets no step latency at all (the record
says why); its ``score`` latency is still measured.

Records
-------
:func:`benchmark_model` writes ``latency/<model>__seed<k>.json`` (atomically) with
``schema_version`` :data:`SCHEMA_VERSION`:

``model``, ``model_label``, ``dataset``, ``seed``, ``n_items``, ``kind`` (``neural`` or
``baseline``), ``status`` (``ok``; ``failed`` when export, parity or a measurement
failed, with ``error``), ``export`` (``null`` for a baseline; else ``status`` --
``ok``, ``failed`` or ``parity-failed`` --, ``error``, ``files`` relative to the run
directory, input and output names, ``top_k``, ``exporter``, ``opset``, ``seconds`` and
``parity``: ``passed``, ``max_abs_diff_scores``, ``max_abs_diff_state``, ``score_scale``,
``tolerance``, ``topk_agreement``, ``top_k``, ``batch_sizes``, ``steps``, ``reason``),
``measurements`` (a list, below), ``skipped`` (``runtime``, ``device``, ``reason``),
``settings`` (the export options) and ``environment`` (versions, CPU, thread settings,
load average).

A measurement: ``runtime``, ``unit`` (``step`` or ``score``), ``device``, ``provider``
(ONNX Runtime's), ``threads``, ``parity`` (``reference`` for torch eager on the CPU,
else ``passed`` and ``max_abs_diff``; ``null`` for ``score``), ``batch1`` (``repeats``,
``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``min_ms``, ``max_ms``), ``batch``
(the same at ``batch_size``, plus ``batch_size``), ``queries_per_second``
(``batch_size / batch.p50``), ``top_k`` (``score`` only: the timed call is ``score()``
followed by ``torch.topk`` of this size; a record without it timed ``score()`` alone,
which measures nothing for a ``score()`` that returns a lazy view), ``load_average`` (``before``, ``after``) and
``other_cpu_share`` (the share of the machine's CPU time that other processes used
while it ran, :class:`MachineLoad`; the record's ``environment.other_cpu_share`` is the
same over the model's whole export and timing: on a busy machine, timings with several
threads are unreliable).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recbench.config.options import as_dict
from recbench.data.batches import SequenceBatch
from recbench.environment import process_environment
from recbench.progress import Progress
from recbench.results import read_json, write_json
from recbench.serve.export import (
    ExportedCell,
    ExportOptions,
    Parity,
    RuntimeUnavailable,
    check_parity,
    cuda_usable,
    export_and_check,
    frozen_copy,
    initial_state,
    n_score_columns,
    onnx_versions,
    onnxruntime_session,
    random_items,
    session_runner,
    torch_runner,
)

SCHEMA_VERSION = 1
LATENCY_DIR = "latency"
EXPORT_DIR = "export"
#: Fewest timed calls at batch 1 and at the large batch, whatever ``max_seconds`` says.
MIN_REPEATS = 50
MIN_BATCH_REPEATS = 5


# -- the timing harness ------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of single calls, in milliseconds."""

    repeats: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(
            repeats=len(ms),
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "repeats": self.repeats,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
        }


def time_calls(
    call: Callable[[], Any],
    *,
    warmup: int,
    repeats: int,
    min_repeats: int,
    max_seconds: float,
    synchronize: Callable[[], None] | None = None,
) -> Timing:
    """Time ``call`` one call at a time (see the module docstring)."""
    for _ in range(warmup):
        call()
    if synchronize is not None:
        synchronize()
    times: list[float] = []
    min_repeats = min(min_repeats, repeats)
    enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + max_seconds
        while len(times) < repeats:
            start = time.perf_counter_ns()
            call()
            if synchronize is not None:
                synchronize()
            times.append((time.perf_counter_ns() - start) * 1e-9)
            if len(times) >= min_repeats and time.perf_counter() > deadline:
                break
    finally:
        if enabled:
            gc.enable()
    return Timing.of(times)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


class MachineLoad:
    """The share of the machine's CPU time that *other* processes used between
    construction and :meth:`other_share` (Linux ``/proc/stat``; ``None`` elsewhere, or
    when the interval is under :data:`MIN_WINDOW` CPU-seconds, too short for the
    kernel's 10 ms ticks): what a load average cannot tell, since it counts this
    process's own threads."""

    #: The shortest interval judged, in CPU-seconds (summed over the CPUs).
    MIN_WINDOW = 0.5

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as handle:
                fields = [int(x) for x in handle.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = sum(fields) / tick
        busy = total - (fields[3] + fields[4]) / tick  # minus idle and iowait
        own = os.times()
        return total, busy, own.user + own.system

    def other_share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        total, busy, own = (b - a for a, b in zip(self.start, end, strict=True))
        if total < self.MIN_WINDOW:
            return None
        return round(min(1.0, max(0.0, (busy - own) / total)), 3)


def environment() -> dict[str, Any]:
    """A latency record's environment: :func:`recbench.environment.process_environment`,
    whether CUDA is usable (``cuda``; then ``gpu`` and ``cuda_version``), the load
    average and the ONNX versions."""
    info: dict[str, Any] = {
        **process_environment(),
        "cuda": cuda_usable(),
        "load_average": load_average(),
        **onnx_versions(),
    }
    if cuda_usable():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


# -- runtimes ----------------------------------------------------------------------------


@dataclass
class _Target:
    """A runtime ready to be timed: ``make(batch)`` returns the call for a batch size."""

    runtime: str
    device: str
    threads: int | None
    make: Callable[[int], Callable[[], Any]]
    synchronize: Callable[[], None] | None = None
    provider: str | None = None
    parity: dict[str, Any] | str | None = None


def _step_inputs(cell: nn.Module, n_columns: int, batch: int, device: Any) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(batch)
    items = random_items(n_columns, batch, generator).to(device)
    return (items, *(s.to(device) for s in initial_state(cell, batch)))


def _torch_target(
    module: Callable[..., Any], cell: nn.Module, n_columns: int, device: str
) -> Callable[[int], Callable[[], Any]]:
    def make(batch: int) -> Callable[[], Any]:
        inputs = _step_inputs(cell, n_columns, batch, device)

        def call() -> Any:
            with torch.inference_mode():
                return module(*inputs)

        return call

    return make


def _ort_target(
    session: Any, exported: ExportedCell, cell: nn.Module, device: str
) -> Callable[[int], Callable[[], Any]]:
    def make(batch: int) -> Callable[[], Any]:
        inputs = [t.numpy() for t in _step_inputs(cell, exported.n_columns, batch, "cpu")]
        feeds = dict(zip(exported.input_names, inputs, strict=True))
        if device == "cuda":
            return ort_bound_call(session, feeds, exported.output_names, "cuda")[0]
        return lambda: session.run(None, feeds)

    return make


def ort_bound_call(
    session: Any, feeds: dict[str, np.ndarray], output_names: Sequence[str], device: str
) -> tuple[Callable[[], Any], Any]:
    """A call of ``session`` with inputs and outputs bound on ``device``, and its
    ``IOBinding`` (``cuda``: the inputs are copied to the GPU once and the outputs stay
    there, as torch's do; ``binding.copy_outputs_to_cpu()`` reads them)."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = [ort.OrtValue.ortvalue_from_numpy(a, device, 0) for a in feeds.values()]
    for name, value in zip(feeds, values, strict=True):
        binding.bind_ortvalue_input(name, value)
    for name in output_names:
        binding.bind_output(name, device, 0)
    bound = (binding, values)  # the call keeps the bound inputs alive

    def call() -> Any:
        session.run_with_iobinding(bound[0])

    return call, binding


def _parity_summary(parity: Parity) -> dict[str, Any]:
    return {
        "passed": parity.passed,
        "max_abs_diff": max(parity.max_abs_diff_scores, parity.max_abs_diff_state),
        "reason": parity.reason,
    }


def _step_targets(
    cell: nn.Module,
    exported: ExportedCell | None,
    onnx_parity: Parity | None,
    options: ExportOptions,
    threads: Sequence[int],
    skipped: list[dict[str, Any]],
) -> Iterator[_Target]:
    """The step runtimes of ``cell`` that this machine can run and that pass parity
    against torch eager on the CPU; the others go to ``skipped`` with the reason.
    ``onnx_parity`` is the export's check of ONNX Runtime on the CPU."""
    n_columns = n_score_columns(cell)
    devices = ["cpu", "cuda"] if cuda_usable() else ["cpu"]

    def skip(runtime: str, device: str, reason: str) -> None:
        skipped.append({"runtime": runtime, "device": device, "reason": reason})

    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else None
        counts: Sequence[int | None] = threads if device == "cpu" else [None]
        on_device = frozen_copy(cell, device)
        candidates: list[tuple[str, Callable[..., Any]]] = []
        if "torch" in options.runtimes:
            candidates.append(("torch", on_device))
        for runtime in ("torchscript", "compile"):
            if runtime in options.runtimes:
                try:
                    candidates.append(
                        (runtime, _compiled(runtime, on_device, cell, n_columns, device))
                    )
                except Exception as exc:
                    skip(runtime, device, f"{type(exc).__name__}: {exc}".splitlines()[0])
        for runtime, module in candidates:
            parity: dict[str, Any] | str = "reference"
            if runtime != "torch" or device != "cpu":
                try:
                    result = check_parity(
                        cell, torch_runner(module, device), tolerance=options.tolerance
                    )
                except Exception as exc:  # e.g. a compile error on the first call
                    skip(runtime, device, f"{type(exc).__name__}: {exc}".splitlines()[0])
                    continue
                if not result.passed:
                    skip(runtime, device, f"parity failed: {result.reason}")
                    continue
                parity = _parity_summary(result)
            make = _torch_target(module, cell, n_columns, device)
            for count in counts:
                yield _Target(runtime, device, count, make, sync, parity=parity)
        if "onnxruntime" not in options.runtimes:
            continue
        if exported is None:
            skip("onnxruntime", device, "no exported graph")
            continue
        ort_parity = onnx_parity if device == "cpu" else None
        for count in counts:
            try:
                session, providers = onnxruntime_session(
                    exported.graphs["cell"], device=device, threads=count or 1
                )
            except RuntimeUnavailable as exc:
                skip("onnxruntime", device, str(exc))
                break
            if ort_parity is None:
                ort_parity = check_parity(
                    cell, session_runner(session, exported.input_names), tolerance=options.tolerance
                )
            if not ort_parity.passed:
                skip("onnxruntime", device, f"parity failed: {ort_parity.reason}")
                break
            yield _Target(
                "onnxruntime",
                device,
                count,
                _ort_target(session, exported, cell, device),
                sync,
                provider=providers[0],
                parity=_parity_summary(ort_parity),
            )


def _compiled(
    runtime: str, module: nn.Module, cell: nn.Module, n_columns: int, device: str
) -> Callable[..., Any]:
    import warnings

    example = _step_inputs(cell, n_columns, 2, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if runtime == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False)
                return torch.jit.freeze(traced.eval())
        return torch.compile(module, dynamic=False)


def _measure(target: _Target, options: ExportOptions, unit: str, batch_size: int) -> dict[str, Any]:
    before = load_average()
    machine = MachineLoad()
    context = torch_threads(target.threads) if target.threads else contextlib.nullcontext()
    with context:
        batch1 = time_calls(
            target.make(1),
            warmup=options.warmup,
            repeats=options.repeats,
            min_repeats=MIN_REPEATS,
            max_seconds=options.max_seconds,
            synchronize=target.synchronize,
        )
        large = time_calls(
            target.make(batch_size),
            warmup=max(1, options.warmup // 10),
            repeats=options.batch_repeats,
            min_repeats=MIN_BATCH_REPEATS,
            max_seconds=options.max_seconds,
            synchronize=target.synchronize,
        )
    return {
        "runtime": target.runtime,
        "unit": unit,
        "device": target.device,
        "provider": target.provider,
        "threads": target.threads,
        "parity": target.parity,
        "batch1": batch1.as_dict(),
        "batch": {**large.as_dict(), "batch_size": batch_size},
        "queries_per_second": batch_size / (large.p50_ms * 1e-3),
        "load_average": {"before": before, "after": load_average()},
        "other_cpu_share": machine.other_share(),
    }


def measure_step(
    cell: nn.Module,
    exported: ExportedCell | None,
    options: ExportOptions,
    *,
    onnx_parity: Parity | None = None,
    skipped: list[dict[str, Any]] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Time one step of ``cell`` in every runtime of ``options`` this machine can run.

    ``exported`` is the cell's ONNX export (``None``: no ``onnxruntime`` measurement)
    and ``onnx_parity`` its parity on the CPU (``None``: checked here). Runtimes that
    cannot run here or fail parity are appended to ``skipped``.
    """
    skipped = skipped if skipped is not None else []
    threads = list(options.threads) or [torch.get_num_threads()]
    measurements = []
    for target in _step_targets(cell, exported, onnx_parity, options, threads, skipped):
        if progress is not None:
            progress.log(
                f"  timing {target.runtime} ({target.device}"
                + (f", {target.threads} threads)" if target.threads else ")"),
                style="dim",
            )
        measurements.append(_measure(target, options, "step", options.batch_size))
    return measurements


def query_batch(queries: Any, size: int, max_length: int | None, device: Any) -> SequenceBatch:
    """``size`` test queries' inputs (drawn with a fixed seed; repeated when there are
    fewer) as the :class:`SequenceBatch` a model's ``score`` receives."""
    rng = np.random.default_rng(0)
    index = rng.choice(len(queries), size=size, replace=len(queries) < size).astype(np.int64)
    return queries.model_inputs(np.sort(index), max_length, device)


def measure_score(
    model: Any, queries: Any, options: ExportOptions, device: torch.device, top_k: int
) -> list[dict[str, Any]]:
    """Time the model's own ``score`` followed by the ``top_k`` ranking of its scores
    (``torch.topk``, as evaluation and serving rank them), for one query and for
    ``batch_size`` queries, on ``device`` at each thread count of ``options`` (on CUDA:
    once).

    The ranking is part of the timed call so that every model's number is a measurement:
    a ``score`` may return a lazy view (popularity returns one row ``expand()``-ed to the
    batch, which costs nothing until read), and ``topk`` reads every score. Each
    measurement records ``top_k``.
    """
    max_length = getattr(model, "max_length", None)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    one = query_batch(queries, 1, max_length, device)
    many = query_batch(queries, options.batch_size, max_length, device)
    batches = {1: one, options.batch_size: many}

    def make(batch: int) -> Callable[[], Any]:
        inputs = batches[batch]

        def call() -> Any:
            with torch.no_grad():
                scores = model.score(inputs)
                return torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1)

        return call

    threads: Sequence[int | None] = (
        (list(options.threads) or [torch.get_num_threads()]) if device.type == "cpu" else [None]
    )
    return [
        {
            **_measure(
                _Target("score", device.type, t, make, sync), options, "score", options.batch_size
            ),
            "top_k": top_k,
        }
        for t in threads
    ]


# -- per-model records -------------------------------------------------------------------


def record_name(label: str, seed: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", f"{label}__seed{seed}").strip("-")


def record_path(run_path: Path, label: str, seed: int) -> Path:
    return Path(run_path) / LATENCY_DIR / f"{record_name(label, seed)}.json"


def has_cell(model: Any) -> bool:
    """Whether ``model`` offers a one-step ``cell()`` (a neural model)."""
    return callable(getattr(model, "cell", None))


def benchmark_model(
    model: Any,
    *,
    run_path: Path,
    label: str,
    model_id: str,
    dataset: str,
    seed: int,
    queries: Any,
    n_items: int,
    top_k: int,
    options: ExportOptions,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export (neural models), check parity, time every runtime and write the record.

    Never raises for a failure of export, parity or a runtime: the record says what
    failed, and the run goes on. ``queries`` are the test queries whose inputs the
    ``score`` runtime reads.
    """
    progress = progress or Progress.silent()
    name = record_name(label, seed)
    machine = MachineLoad()
    env_before = environment()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model_id,
        "model_label": label,
        "dataset": dataset,
        "seed": seed,
        "n_items": n_items,
        "kind": "neural" if has_cell(model) else "baseline",
        "status": "ok",
        "error": None,
        "export": None,
        "measurements": [],
        "skipped": [],
        "settings": {
            **as_dict(options),
            "min_repeats": MIN_REPEATS,
            "min_batch_repeats": MIN_BATCH_REPEATS,
        },
        "environment": env_before,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    errors: list[str] = []
    try:
        if has_cell(model):
            errors += _benchmark_cell(model, record, run_path, name, top_k, options, progress)
        if "score" in options.runtimes:
            progress.log(f"  timing score ({device.type})", style="dim")
            record["measurements"] += measure_score(model, queries, options, device, top_k)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
        record["traceback"] = traceback.format_exc(limit=8)
    if errors:
        record["status"] = "failed"
        record["error"] = "; ".join(errors)
    record["environment"]["load_average_after"] = load_average()
    record["environment"]["other_cpu_share"] = machine.other_share()
    write_json(record_path(run_path, label, seed), record)
    return record


def _benchmark_cell(
    model: Any,
    record: dict[str, Any],
    run_path: Path,
    name: str,
    top_k: int,
    options: ExportOptions,
    progress: Progress,
) -> list[str]:
    directory = Path(run_path) / EXPORT_DIR / name
    try:
        cell = frozen_copy(model.cell(), "cpu")
    except Exception as exc:
        reason = f"cell() failed: {type(exc).__name__}: {exc}".splitlines()[0]
        record["export"] = {"status": "failed", "error": reason}
        return [reason]
    note = getattr(cell, "serving_note", "")
    if isinstance(note, str) and note:
        record["serving_note"] = note
    progress.log(f"Exporting {record['model_label']} (seed {record['seed']}) to ONNX")
    result = export_and_check(cell, directory, top_k=top_k, options=options)
    export: dict[str, Any] = {"status": result.status, "error": result.error}
    if result.exported is not None:
        export.update(result.exported.describe(Path(run_path)))
    if result.parity is not None:
        export["parity"] = result.parity.as_dict()
    record["export"] = export
    if result.status != "ok":
        progress.log(f"  export {result.status}: {result.error}", style="red")
        return [f"export {result.status}: {result.error}"]
    try:
        record["measurements"] += measure_step(
            cell,
            result.exported,
            options,
            onnx_parity=result.parity,
            skipped=record["skipped"],
            progress=progress,
        )
    except Exception as exc:
        record["traceback"] = traceback.format_exc(limit=8)
        return [f"step latency: {type(exc).__name__}: {exc}".splitlines()[0]]
    return []


def read_records(run_path: Path) -> list[dict[str, Any]]:
    """The latency records of a run directory with this :data:`SCHEMA_VERSION`, in name
    order (records of another version are ignored)."""
    folder = Path(run_path) / LATENCY_DIR
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        record = read_json(path)
        if isinstance(record, dict) and record.get("schema_version") == SCHEMA_VERSION:
            records.append(record)
    return records
