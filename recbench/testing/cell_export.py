"""The kit's check that a model's cell exports to ONNX as a run exports it.

A run exports every trained neural model's cell (:mod:`recbench.serve.latency`): a frozen
CPU copy of ``model.cell()`` goes to :func:`recbench.serve.export.export_and_check` with the
run's :class:`~recbench.serve.export.ExportOptions` and ``top_k`` (the export section's,
else the largest cutoff), which writes and checks both graphs and compares ONNX Runtime
with torch (:func:`recbench.serve.export.onnx_parity`). The kit calls the same function with
the default options and cutoffs, so a cell that passes the kit does not fail export, nor
parity, in a run with the default settings.
"""

from __future__ import annotations

import importlib
import tempfile
import warnings
from pathlib import Path
from typing import Any

from recbench.testing.checker import Checker

#: What a cell must offer the exporter (see :mod:`recbench.serve.export`), said when its
#: export fails.
CELL_CONTRACT = (
    "the exported cell needs initial_state(batch_size) returning a tuple of [batch, ...] "
    "tensors (empty for a cell without state), state_names naming each of them, and "
    "forward(item_ids, *state) returning the tuple (scores [batch, n_items + 1], *new_state) "
    "traceable by torch.onnx.export"
)


def export_packages(exporter: str) -> tuple[str, ...]:
    """The packages a run needs to export a cell with ``exporter`` and check its parity."""
    return ("onnx", "onnxruntime", *(("onnxscript",) if exporter == "dynamo" else ()))


def missing_packages(names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that cannot be imported."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def check_cell_export(checker: Checker, model: Any) -> None:
    """Export ``model.cell()`` to ONNX and check ONNX Runtime's parity with torch, as a run
    does; fail with the run's reason when either fails.

    When the export packages (onnx, onnxruntime, and onnxscript for the default exporter)
    cannot be imported, the check is skipped with a warning: a run in this environment
    could not export either.
    """
    from recbench.config.run_config import DEFAULT_CUTOFFS
    from recbench.serve.export import ExportOptions, export_and_check, frozen_copy

    options = ExportOptions()
    missing = missing_packages(export_packages(options.exporter))
    if missing:
        warnings.warn(
            f"{checker.name}: its cell was not exported to ONNX (the kit's export check is "
            f"skipped): {', '.join(missing)} cannot be imported; install them (recbench "
            "depends on them) to check what a run exports",
            stacklevel=5,
        )
        return
    cell = checker.call("cell()", model.cell)
    cell = checker.call("copying the cell to the CPU", frozen_copy, cell, "cpu")
    top_k = options.top_k or max(DEFAULT_CUTOFFS)
    with tempfile.TemporaryDirectory() as folder:
        result = export_and_check(cell, Path(folder) / "cell", top_k=top_k, options=options)
    if result.status == "failed":
        raise checker.fail(
            f"its cell cannot be exported to ONNX as a run exports it ({result.error}): "
            f"{CELL_CONTRACT}"
        )
    if result.status == "parity-failed":
        raise checker.fail(
            f"its cell exports to ONNX, but ONNX Runtime does not compute what the torch cell "
            f"computes ({result.error}), so a run would refuse to time it: the exported graph "
            "is a trace of one call, so forward must not keep Python-side state, branch on "
            "the values of its inputs or depend on anything but its inputs and its weights"
        )
