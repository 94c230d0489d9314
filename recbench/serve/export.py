"""ONNX export of one-step scoring cells, checked and compared with torch.

A neural model exposes ``cell()``: a ``torch.nn.Module`` for one step of the model,

    ``forward(item_ids [B] int64, *state) -> (scores [B, n_items + 1], *new_state)``

with ``initial_state(batch_size)`` (a tuple of ``[B, ...]`` float32 or int64 tensors: the state
before the first item) and ``state_names`` (one name per state tensor). Column ``j`` of
the scores is item id ``j``; column 0 is padding and is never recommended. This module
knows no concrete model: it works on any module that follows this contract
(:mod:`recbench.serve.cell` describes it).

:func:`export_cell` writes two graphs with :func:`torch.onnx.export`, each with a
**dynamic batch axis** (the only dynamic axis the exporter handles reliably; the one-step
cell needs no other):

``cell.onnx``
    ``(item_ids, *state) -> (scores, *new_state)``, the cell itself.
``cell-topk.onnx``
    ``(item_ids, *state) -> (top_scores [B, k], top_items [B, k], *new_state)``: the
    ``k`` best items (never the padding column) found inside the graph, so a server
    receives ``k`` ids instead of ``n_items`` scores. Seen items are not excluded (the
    cell keeps no history of item ids).

The weights are written as external data (``cell.onnx.data``) beside each graph; keep
the pair together. After writing, every graph is checked with
``onnx.checker.check_model(full_check=True)``, the first axis of every input and output
is asserted symbolic, and the graph is run once in ONNX Runtime at a batch size that
differs from the example's. :func:`check_parity` then runs a runtime and the torch cell
on the same random inputs and compares the outputs (max abs difference of the scores
and the states, top-k agreement).

ONNX Runtime is created through :func:`onnxruntime_session`, which trusts only the
providers a session reports after creation (``onnxruntime-gpu`` lists CUDA as available
on machines where CUDA cannot load) and never asks for CUDA where torch sees no GPU.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from recbench.data.files import replace_folder

#: The batch size of the example inputs the graphs are traced with. Not 1: the exporter
#: specialises sizes 0 and 1. Parity runs at other sizes, so the dynamic axis is tested.
EXAMPLE_BATCH = 2
#: Batch sizes of the parity test (none equals EXAMPLE_BATCH).
PARITY_BATCHES = (1, 5, 64)
#: Steps of the parity test at each batch size (the state is carried by the torch cell).
PARITY_STEPS = 3
GRAPH_FILES = {"cell": "cell.onnx", "topk": "cell-topk.onnx"}


class ExportError(RuntimeError):
    """A cell that cannot be exported, or whose graph fails a check."""


class RuntimeUnavailable(RuntimeError):
    """A runtime or device that this machine cannot provide (the reason is the message)."""


@dataclass(frozen=True)
class ExportOptions:
    """Options of ONNX export and latency measurement (section ``export``).

    enabled:
        Export and time every trained model at the end of its evaluation
        (``--no-export`` turns it off).
    top_k:
        ``k`` of the top-k graph; 0: the run's largest cutoff.
    tolerance:
        A runtime passes parity when the max abs difference of its scores (and states)
        from the torch cell is at most ``tolerance × max(1, max |score|)`` and its top-k
        lists differ only by items tied within that tolerance.
    exporter:
        ``dynamo`` (``torch.onnx.export(dynamo=True)``, needs ``onnxscript``) or
        ``legacy`` (the TorchScript-based exporter, deprecated by torch).
    runtimes:
        What is timed: ``torch`` (the cell in eager mode), ``onnxruntime``,
        ``score`` (the model's own ``score`` on real queries: the only runtime of a
        model without a cell), and the opt-in ``torchscript`` (traced and frozen) and
        ``compile`` (``torch.compile``; a cold compile takes minutes on a CPU). Each
        runs on the CPU, and also on CUDA where torch sees a GPU (``score`` runs on
        the run's device).
    threads:
        Thread counts to time CPU runtimes at (``1,2``); empty: torch's current one.
    warmup:
        Untimed calls before each measurement.
    repeats, batch_repeats:
        Timed calls at batch 1 and at ``batch_size`` (at most; see ``max_seconds``).
    batch_size:
        The large batch of the throughput measurement.
    max_seconds:
        A measurement stops after this many seconds once it has its minimum of calls
        (50 at batch 1, 5 at the large batch), so a slow model stays cheap.
    """

    enabled: bool = True
    top_k: int = 0
    tolerance: float = 1e-4
    exporter: Literal["dynamo", "legacy"] = "dynamo"
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "score")
    threads: tuple[int, ...] = ()
    warmup: int = 20
    repeats: int = 300
    batch_repeats: int = 20
    batch_size: int = 256
    max_seconds: float = 1.5

    def __post_init__(self) -> None:
        unknown = set(self.runtimes) - set(RUNTIMES)
        if unknown:
            raise ValueError(
                f"unknown runtime {', '.join(sorted(unknown))}; choose from {', '.join(RUNTIMES)}"
            )
        if any(t < 1 for t in self.threads):
            raise ValueError("threads must be positive")
        for name in ("repeats", "batch_repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warmup < 0 or self.top_k < 0:
            raise ValueError("warmup and top_k must not be negative")
        if not self.tolerance > 0 or not self.max_seconds > 0:
            raise ValueError("tolerance and max_seconds must be positive")


#: Runtime ids of ExportOptions.runtimes.
RUNTIMES = ("torch", "onnxruntime", "score", "torchscript", "compile")


@dataclass(frozen=True)
class ExportedCell:
    """The graphs written by :func:`export_cell` (paths to the ``.onnx`` files)."""

    directory: Path
    graphs: dict[str, Path]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    topk_output_names: tuple[str, ...]
    top_k: int
    n_columns: int
    exporter: str
    opset: int | None
    seconds: float

    def describe(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-friendly description; file paths relative to ``root`` when given."""

        def rel(path: Path) -> str:
            return str(path.relative_to(root)) if root is not None else str(path)

        files = {}
        for kind, path in self.graphs.items():
            files[kind] = rel(path)
            data = path.with_name(path.name + ".data")
            if data.is_file():
                files[f"{kind}_data"] = rel(data)
        return {
            "files": files,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            "topk_output_names": list(self.topk_output_names),
            "top_k": self.top_k,
            "n_columns": self.n_columns,
            "exporter": self.exporter,
            "opset": self.opset,
            "example_batch": EXAMPLE_BATCH,
            "batch_axis": "symbolic",
            "checker": "passed",
            "seconds": self.seconds,
        }


@dataclass
class Parity:
    """How a runtime's outputs compare with the torch cell's on the same inputs."""

    passed: bool
    max_abs_diff_scores: float
    max_abs_diff_state: float
    score_scale: float
    tolerance: float
    topk_agreement: float | None = None
    top_k: int | None = None
    batch_sizes: tuple[int, ...] = PARITY_BATCHES
    steps: int = PARITY_STEPS
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_abs_diff_scores": self.max_abs_diff_scores,
            "max_abs_diff_state": self.max_abs_diff_state,
            "score_scale": self.score_scale,
            "tolerance": self.tolerance,
            "topk_agreement": self.topk_agreement,
            "top_k": self.top_k,
            "batch_sizes": list(self.batch_sizes),
            "steps": self.steps,
            "reason": self.reason,
        }


# -- the cell contract -------------------------------------------------------------------


def state_names(cell: nn.Module) -> tuple[str, ...]:
    """The cell's ``state_names``, checked against its ``initial_state``."""
    names = tuple(getattr(cell, "state_names", ()))
    state = initial_state(cell, 1)
    if len(names) != len(state):
        raise ExportError(f"the cell has {len(state)} state tensors but {len(names)} state_names")
    if len(set(names)) != len(names) or "item_ids" in names:
        raise ExportError(f"state_names must be distinct and not 'item_ids', got {names}")
    return names


def initial_state(cell: nn.Module, batch_size: int) -> tuple[Tensor, ...]:
    make = getattr(cell, "initial_state", None)
    if not callable(make):
        raise ExportError("the cell has no initial_state(batch_size)")
    state = tuple(make(batch_size))
    for tensor in state:
        if not isinstance(tensor, Tensor) or tensor.dim() < 1 or tensor.shape[0] != batch_size:
            raise ExportError("initial_state(B) must return tensors whose first axis is B")
    return state


def cell_device(cell: nn.Module) -> torch.device:
    for tensor in (*cell.parameters(), *cell.buffers()):
        return tensor.device
    return torch.device("cpu")


def frozen_copy(cell: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of ``cell`` on ``device`` in eval mode, without gradients."""
    copied = copy.deepcopy(cell).to(device).eval()
    copied.requires_grad_(False)
    return copied


class _Step(nn.Module):
    """``(item_ids, *state)`` -> the cell's outputs, or with ``top_k`` the best ``k``
    items (never column 0) and their scores, then the new state."""

    def __init__(self, cell: nn.Module, top_k: int | None = None):
        super().__init__()
        self.cell = cell
        self.top_k = top_k

    def forward(self, item_ids: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        scores, *new_state = self.cell(item_ids, *state)
        if self.top_k is None:
            return (scores, *new_state)
        values, index = torch.topk(scores[:, 1:], self.top_k, dim=1)
        return (values, index + 1, *new_state)


def top_k_step(cell: nn.Module, top_k: int) -> nn.Module:
    """The cell followed by top-k selection: what ``cell-topk.onnx`` computes."""
    return _Step(cell, top_k)


def random_items(n_columns: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """``[batch_size]`` item ids drawn uniformly from 1..n_items."""
    return torch.randint(1, n_columns, (batch_size,), generator=generator, dtype=torch.int64)


def n_score_columns(cell: nn.Module) -> int:
    """``n_items + 1``: the width of the cell's scores (one step at batch 1)."""
    with torch.inference_mode():
        state = initial_state(cell, 1)
        device = state[0].device if state else cell_device(cell)
        outputs = cell(torch.ones(1, dtype=torch.int64, device=device), *state)
    scores = outputs[0]
    if scores.dim() != 2 or scores.shape[0] != 1:
        raise ExportError(f"the cell's scores must be [B, n_items + 1], got {tuple(scores.shape)}")
    if len(outputs) != 1 + len(state):
        raise ExportError(
            f"the cell returned {len(outputs)} outputs; expected scores and {len(state)} states"
        )
    return int(scores.shape[1])


# -- export ------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and log lines (optional-dependency notes,
    deprecations); errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_cell(
    cell: nn.Module,
    directory: Path,
    *,
    top_k: int,
    exporter: str = "dynamo",
) -> ExportedCell:
    """Export ``cell`` and its top-k variant to ``directory`` and check both graphs.

    The graphs are written to a temporary folder beside ``directory`` and moved into
    place when every check has passed, so ``directory`` holds either a complete, checked
    export or what was there before.

    Parameters
    ----------
    cell:
        A module following the cell contract (module docstring); it is copied to the CPU.
    directory:
        Where ``cell.onnx``, ``cell-topk.onnx`` and their ``.data`` files go.
    top_k:
        ``k`` of the top-k graph (at most ``n_items``).
    exporter:
        ``dynamo`` or ``legacy`` (:class:`ExportOptions`).

    Raises
    ------
    ExportError
        When the exporter fails or a graph fails a check.
    """
    import onnx

    started = time.perf_counter()
    cell = frozen_copy(cell, "cpu")
    names = state_names(cell)
    n_columns = n_score_columns(cell)
    top_k = max(1, min(top_k, n_columns - 1))
    input_names = ("item_ids", *names)
    output_names = ("scores", *(f"new_{n}" for n in names))
    topk_output_names = ("top_scores", "top_items", *(f"new_{n}" for n in names))
    generator = torch.Generator().manual_seed(0)
    example = (
        random_items(n_columns, EXAMPLE_BATCH, generator),
        *initial_state(cell, EXAMPLE_BATCH),
    )

    def write_graphs(staging: Path) -> int | None:
        for kind, module, outputs in (
            ("cell", _Step(cell), output_names),
            ("topk", _Step(cell, top_k), topk_output_names),
        ):
            path = staging / GRAPH_FILES[kind]
            _export_graph(module, example, path, input_names, outputs, exporter)
            try:
                onnx.checker.check_model(str(path), full_check=True)
            except Exception as exc:
                raise ExportError(f"onnx.checker rejected {path.name}: {exc}") from exc
            assert_batch_axis_symbolic(path)
            _run_once(path, input_names, cell, n_columns)
        model = onnx.load(str(staging / GRAPH_FILES["cell"]), load_external_data=False)
        return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)

    directory = Path(directory)
    opset = replace_folder(directory, write_graphs)
    return ExportedCell(
        directory=directory,
        graphs={kind: directory / name for kind, name in GRAPH_FILES.items()},
        input_names=input_names,
        output_names=output_names,
        topk_output_names=topk_output_names,
        top_k=top_k,
        n_columns=n_columns,
        exporter=exporter,
        opset=opset,
        seconds=time.perf_counter() - started,
    )


def _export_graph(
    module: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    exporter: str,
) -> None:
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            if exporter == "dynamo":
                torch.onnx.export(
                    module,
                    example,
                    str(path),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_shapes=_dynamic_shapes(len(example) - 1),
                    dynamo=True,
                    external_data=True,
                    verbose=False,
                )
            elif exporter == "legacy":
                torch.onnx.export(
                    module,
                    example,
                    str(path),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes={n: {0: "batch"} for n in (*input_names, *output_names)},
                    dynamo=False,
                )
            else:
                raise ExportError(f"unknown exporter '{exporter}' (use dynamo or legacy)")
    except ExportError:
        raise
    except ModuleNotFoundError as exc:
        raise ExportError(
            f"the ONNX exporter needs the package '{exc.name}' (pip install onnx onnxscript)"
        ) from exc
    except Exception as exc:
        # The dynamo exporter's message opens with advice; its cause is in its summary.
        cause = re.search(r"^<class '(?:\w+\.)*(\w+)'>: (.+)$", str(exc), flags=re.MULTILINE)
        first = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        if cause is not None:
            first = f"{cause[1]}: {cause[2]}"
        raise ExportError(f"torch.onnx.export failed: {first}") from exc
    if not path.is_file():
        raise ExportError(f"torch.onnx.export wrote no {path.name}")


def _dynamic_shapes(n_states: int) -> tuple[Any, ...]:
    """``dynamic_shapes`` of ``_Step.forward(item_ids, *state)``: the batch axis of every
    input is dynamic (a cell without state has no ``*state`` entry)."""
    batch = torch.export.Dim("batch", min=1)
    if n_states == 0:
        return ({0: batch},)
    return ({0: batch}, tuple({0: batch} for _ in range(n_states)))


def assert_batch_axis_symbolic(path: Path) -> None:
    """Raise :class:`ExportError` unless the first axis of every graph input and output
    is symbolic (a named dimension, not a number fixed to the example)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param or dims[0].HasField("dim_value"):
            fixed = dims[0].dim_value if dims else "no axis"
            raise ExportError(
                f"{path.name}: the batch axis of '{value.name}' is not symbolic ({fixed})"
            )


def _run_once(path: Path, input_names: Sequence[str], cell: nn.Module, n_columns: int) -> None:
    """Run the graph in ONNX Runtime at a batch size other than the example's."""
    batch = PARITY_BATCHES[-1]
    assert batch != EXAMPLE_BATCH
    session, _ = onnxruntime_session(path, device="cpu", threads=1)
    generator = torch.Generator().manual_seed(1)
    feeds = _feeds(
        input_names, random_items(n_columns, batch, generator), initial_state(cell, batch)
    )
    try:
        outputs = session.run(None, feeds)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime failed on {path.name} at batch {batch}: {exc}") from exc
    if any(np.asarray(o).shape[0] != batch for o in outputs):
        raise ExportError(f"{path.name}: outputs at batch {batch} do not have {batch} rows")


def _feeds(
    input_names: Sequence[str], items: Tensor, state: Sequence[Tensor]
) -> dict[str, np.ndarray]:
    arrays = [items.cpu().numpy(), *(s.detach().cpu().numpy() for s in state)]
    return dict(zip(input_names, arrays, strict=True))


# -- ONNX Runtime ------------------------------------------------------------------------


def onnxruntime_distributions() -> dict[str, str]:
    """Installed ONNX Runtime distributions (``onnxruntime``, ``onnxruntime-gpu``...)
    and their versions. They share the import name ``onnxruntime``: more than one
    installed means one silently overwrote the other."""
    found = {}
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def onnx_versions() -> dict[str, Any]:
    """Versions of the ONNX packages, and a warning when two ONNX Runtime builds clash."""
    versions: dict[str, Any] = {}
    for name in ("onnx", "onnxscript"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    distributions = onnxruntime_distributions()
    versions["onnxruntime_distributions"] = distributions
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        versions["onnxruntime"] = None
    if len(distributions) > 1:
        versions["warning"] = (
            f"{' and '.join(distributions)} are installed together; they share the import "
            "name 'onnxruntime' and overwrite each other: uninstall all of them, then "
            "install one: pip install 'recbench[cpu]' or 'recbench[gpu]'"
        )
    return versions


def cuda_usable() -> bool:
    """Whether torch sees a CUDA device (the only case in which CUDA is asked for)."""
    return bool(torch.cuda.is_available())


def onnxruntime_session(path: Path, *, device: str, threads: int) -> tuple[Any, list[str]]:
    """An ONNX Runtime session for ``path`` on ``device`` (``cpu`` or ``cuda``).

    The providers are decided from the session's own ``get_providers()`` after creation:
    a CUDA request is made only when torch sees a GPU, and a session that fell back to
    the CPU raises :class:`RuntimeUnavailable` instead of being timed as CUDA.
    ``threads`` sets the intra-op thread pool (inter-op: 1, sequential execution).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RuntimeUnavailable(
            "onnxruntime is not installed (pip install 'recbench[cpu]', or 'recbench[gpu]')"
        ) from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device == "cuda":
        if not cuda_usable():
            raise RuntimeUnavailable("no CUDA device (torch.cuda.is_available() is false)")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeUnavailable(
                "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
            )
        preload = getattr(ort, "preload_dlls", None)
        if callable(preload):  # CUDA/cuDNN from the nvidia packages torch installed
            with contextlib.suppress(Exception):
                preload()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        raise ValueError(f"unknown device '{device}'")
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    active = list(session.get_providers())
    wanted = providers[0]
    if not active or active[0] != wanted:
        raise RuntimeUnavailable(
            f"onnxruntime could not use {wanted} (the session runs on {', '.join(active)}); "
            "for CUDA it needs the CUDA and cuDNN libraries of its build"
        )
    return session, active


# -- parity ------------------------------------------------------------------------------

#: ``run(item_ids [B] int64 numpy, state numpy arrays) -> outputs as numpy arrays``.
StepRunner = Callable[[np.ndarray, Sequence[np.ndarray]], Sequence[np.ndarray]]


def session_runner(session: Any, input_names: Sequence[str]) -> StepRunner:
    """A :data:`StepRunner` over an ONNX Runtime session."""

    def run(items: np.ndarray, state: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        return [
            np.asarray(o)
            for o in session.run(None, dict(zip(input_names, [items, *state], strict=True)))
        ]

    return run


def torch_runner(module: Callable[..., Any], device: torch.device | str = "cpu") -> StepRunner:
    """A :data:`StepRunner` over a torch module (or compiled/scripted function)."""

    def run(items: np.ndarray, state: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        with torch.inference_mode():
            outputs = module(
                torch.from_numpy(items).to(device),
                *(torch.from_numpy(np.ascontiguousarray(s)).to(device) for s in state),
            )
        return [o.detach().cpu().numpy() for o in outputs]

    return run


def check_parity(
    cell: nn.Module,
    run: StepRunner,
    *,
    run_topk: StepRunner | None = None,
    top_k: int | None = None,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> Parity:
    """Compare a runtime with the torch cell on the same random inputs.

    At each batch size of :data:`PARITY_BATCHES`, :data:`PARITY_STEPS` steps are taken:
    random item ids (uniform over 1..n_items) and the torch cell's state (the initial
    state, then the state the torch cell reached) go to both; their scores and new states
    are compared. With ``run_topk`` (the top-k graph), the runtime's top-k lists are
    compared with torch's: ``topk_agreement`` is the mean share of common items, and
    an item that differs must be tied with torch's k-th score within the tolerance.

    The runtime passes when every difference is at most ``tolerance × max(1, max |score|)``.
    """
    cell = frozen_copy(cell, "cpu")
    n_columns = n_score_columns(cell)
    generator = torch.Generator().manual_seed(seed)
    diff_scores = diff_state = 0.0
    scale = 1.0
    overlaps: list[float] = []
    topk_ties_ok = True
    reason = None
    k = None if top_k is None else max(1, min(top_k, n_columns - 1))
    try:
        for batch in PARITY_BATCHES:
            state = initial_state(cell, batch)
            for _ in range(PARITY_STEPS):
                items = random_items(n_columns, batch, generator)
                with torch.inference_mode():
                    expected = [t.numpy() for t in cell(items, *state)]
                items_np = items.numpy()
                state_np = [s.numpy() for s in state]
                got = run(items_np, state_np)
                if len(got) != len(expected):
                    raise ExportError(
                        f"the runtime returned {len(got)} outputs, not {len(expected)}"
                    )
                for index, (want, have) in enumerate(zip(expected, got, strict=True)):
                    if np.shape(have) != want.shape:
                        raise ExportError(
                            f"output {index} has shape {np.shape(have)}, torch's {want.shape}"
                        )
                    diff = _difference(want, np.asarray(have))
                    if index == 0:
                        diff_scores = max(diff_scores, diff)
                        finite = np.abs(want[np.isfinite(want)])
                        scale = max(scale, float(np.max(finite)) if finite.size else 0.0)
                    else:
                        diff_state = max(diff_state, diff)
                if run_topk is not None and k is not None:
                    top = run_topk(items_np, state_np)
                    overlap, ties_ok = _topk_agreement(
                        expected[0], np.asarray(top[1]), k, tolerance * scale
                    )
                    overlaps.append(overlap)
                    topk_ties_ok &= ties_ok
                with torch.inference_mode():
                    state = tuple(cell(items, *state)[1:])
    except ExportError as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    limit = tolerance * scale
    if reason is None and max(diff_scores, diff_state) > limit:
        reason = (
            f"max abs difference {max(diff_scores, diff_state):.3g} exceeds "
            f"{limit:.3g} ({tolerance:g} × score scale {scale:.3g})"
        )
    if reason is None and not topk_ties_ok:
        reason = "the top-k graph returns items that torch does not rank in its top k"
    return Parity(
        passed=reason is None,
        max_abs_diff_scores=diff_scores,
        max_abs_diff_state=diff_state,
        score_scale=scale,
        tolerance=tolerance,
        topk_agreement=float(np.mean(overlaps)) if overlaps else None,
        top_k=k if run_topk is not None else None,
        reason=reason,
    )


def _difference(want: np.ndarray, have: np.ndarray) -> float:
    """The largest ``|want - have|`` over the entries where torch's output is finite;
    infinite when the runtime's non-finite entries (``-inf`` scores, NaN) are not exactly
    torch's. A cell may put ``-inf`` where an item can never be recommended; those
    entries must match, and they do not make the tolerance infinite."""
    want = want.astype(np.float64)
    have = have.astype(np.float64)
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(have)) or not np.array_equal(
        want[~finite], have[~finite], equal_nan=True
    ):
        return float("inf")
    return float(np.max(np.abs(want[finite] - have[finite]))) if finite.any() else 0.0


def _topk_agreement(
    scores: np.ndarray, top_items: np.ndarray, k: int, tolerance: float
) -> tuple[float, bool]:
    """Mean share of ``top_items`` rows found in torch's top ``k`` (padding excluded),
    and whether every other item is tied with torch's k-th score within ``tolerance``."""
    real = scores[:, 1:]
    order = np.argsort(-real, axis=1, kind="stable")[:, :k] + 1
    kth = np.take_along_axis(scores, order[:, -1:], axis=1)[:, 0]
    if top_items.shape != order.shape:
        return 0.0, False
    shares = []
    ties_ok = True
    for row in range(scores.shape[0]):
        expected = set(order[row].tolist())
        got = top_items[row].tolist()
        shares.append(len(expected.intersection(got)) / k)
        for item in set(got) - expected:
            if not 0 < item < scores.shape[1] or scores[row, item] < kth[row] - tolerance:
                ties_ok = False
    return float(np.mean(shares)), ties_ok


@dataclass
class ExportResult:
    """What :func:`export_and_check` found: the graphs (``None`` when export failed),
    the parity of ONNX Runtime on the CPU, and the reason of a failure."""

    exported: ExportedCell | None
    parity: Parity | None
    error: str | None = None
    status: Literal["ok", "failed", "parity-failed"] = "ok"


def export_and_check(
    cell: nn.Module, directory: Path, *, top_k: int, options: ExportOptions
) -> ExportResult:
    """Export ``cell`` (:func:`export_cell`) and check ONNX Runtime's parity on the CPU
    for both graphs. Never raises for a failed export or parity: the result says so."""
    try:
        exported = export_cell(cell, directory, top_k=top_k, exporter=options.exporter)
    except (ExportError, RuntimeUnavailable) as exc:
        return ExportResult(None, None, str(exc), "failed")
    except Exception as exc:  # the cell itself fails (wrong outputs, a bug in forward)
        return ExportResult(None, None, f"{type(exc).__name__}: {exc}".splitlines()[0], "failed")
    parity = onnx_parity(cell, exported, tolerance=options.tolerance)
    status: Literal["ok", "parity-failed"] = "ok" if parity.passed else "parity-failed"
    return ExportResult(exported, parity, parity.reason, status)


def onnx_parity(
    cell: nn.Module, exported: ExportedCell, *, tolerance: float, device: str = "cpu"
) -> Parity:
    """Parity of ONNX Runtime on ``device`` for the exported graphs of ``cell``."""
    try:
        session, _ = onnxruntime_session(exported.graphs["cell"], device=device, threads=1)
        topk_session, _ = onnxruntime_session(exported.graphs["topk"], device=device, threads=1)
    except (RuntimeUnavailable, Exception) as exc:
        return Parity(
            passed=False,
            max_abs_diff_scores=float("nan"),
            max_abs_diff_state=float("nan"),
            score_scale=float("nan"),
            tolerance=tolerance,
            reason=f"cannot load the graph in onnxruntime: {exc}".splitlines()[0],
        )
    return check_parity(
        cell,
        session_runner(session, exported.input_names),
        run_topk=session_runner(topk_session, exported.input_names),
        top_k=exported.top_k,
        tolerance=tolerance,
    )
