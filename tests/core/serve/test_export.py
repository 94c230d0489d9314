"""ONNX export of one-step cells: every neural model exports, checks and matches torch;
a broken graph or a cell that disagrees with its graph fails parity; failures are
reported, never raised."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from model_checks import fit_context
from recbench_rnn.gru4rec import GRU4RecModel
from recbench_rnn.lstm import LSTMModel
from recbench_rnn.mlstm import MLSTMModel
from torch import nn

from recbench.data.interactions import Sequences
from recbench.serve.export import (
    EXAMPLE_BATCH,
    ExportError,
    ExportOptions,
    assert_batch_axis_symbolic,
    check_parity,
    export_and_check,
    export_cell,
    onnx_parity,
    onnxruntime_session,
    session_runner,
)

N_ITEMS = 40
MODELS = {"lstm": LSTMModel, "gru4rec": GRU4RecModel, "mlstm": MLSTMModel}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    """Each neural model trained for one epoch on tiny random sequences."""
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(1, N_ITEMS + 1, size=rng.integers(3, 12))) for _ in range(60)]
    train = Sequences.from_lists(rows, N_ITEMS)
    models = {}
    for name, cls in MODELS.items():
        size = {"hidden_size": 8} if cls is GRU4RecModel else {"embedding_dim": 8}
        model = cls(replace(cls.Options(), epochs=1, batch_size=16, max_length=10, **size))
        model.fit(train, None, fit_context(train))
        models[name] = model
    return models


@pytest.fixture(scope="module")
def exports(trained, tmp_path_factory):
    """Each trained model's cell, exported and checked once (top-k with k = 5)."""
    root = tmp_path_factory.mktemp("export")
    return {
        name: export_and_check(model.cell(), root / name, top_k=5, options=ExportOptions())
        for name, model in trained.items()
    }


def batch_dims(path):
    model = onnx.load(str(path), load_external_data=False)
    return {
        value.name: value.type.tensor_type.shape.dim[0].dim_param
        for value in (*model.graph.input, *model.graph.output)
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_neural_model_exports_and_matches_torch(trained, exports, name):
    cell = trained[name].cell()
    result = exports[name]
    assert result.status == "ok", result.error
    exported = result.exported
    for kind, path in exported.graphs.items():
        assert path.is_file() and path.with_name(path.name + ".data").is_file(), kind
        onnx.checker.check_model(str(path), full_check=True)
        dims = batch_dims(path)
        assert all(dims.values()), dims  # every first axis is symbolic
    names = ("item_ids", *cell.state_names)
    assert exported.input_names == names
    assert exported.output_names == ("scores", *(f"new_{n}" for n in cell.state_names))
    assert exported.n_columns == N_ITEMS + 1
    parity = result.parity
    assert parity.passed and parity.reason is None
    assert parity.max_abs_diff_scores < 1e-5 and parity.max_abs_diff_state < 1e-5
    assert parity.topk_agreement == 1.0 and parity.top_k == 5
    assert EXAMPLE_BATCH not in parity.batch_sizes and 1 in parity.batch_sizes
    assert not list(exported.directory.parent.glob(".*")), "no staging folder is left behind"


def test_the_graph_runs_at_a_batch_size_other_than_the_example(trained, exports):
    model, exported = trained["lstm"], exports["lstm"].exported
    session, providers = onnxruntime_session(exported.graphs["topk"], device="cpu", threads=1)
    assert providers == ["CPUExecutionProvider"]
    cell = model.cell()
    batch = 7
    assert batch != EXAMPLE_BATCH
    state = [s.numpy() for s in cell.initial_state(batch)]
    items = np.arange(1, batch + 1, dtype=np.int64)
    top_scores, top_items, *new_state = session.run(
        None, dict(zip(exported.input_names, [items, *state], strict=True))
    )
    assert top_items.shape == (batch, 5) and top_scores.shape == (batch, 5)
    assert ((top_items >= 1) & (top_items <= N_ITEMS)).all()
    with torch.inference_mode():
        scores, *_ = cell(torch.from_numpy(items), *cell.initial_state(batch))
    expected = scores[:, 1:].topk(5).indices + 1
    assert (torch.from_numpy(top_items) == expected).all()
    assert [s.shape for s in new_state] == [s.shape for s in state]


def test_a_fixed_batch_axis_is_rejected(exports, tmp_path):
    exported = exports["lstm"].exported
    model = onnx.load(str(exported.graphs["cell"]), load_external_data=False)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = EXAMPLE_BATCH
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    assert_batch_axis_symbolic(exported.graphs["cell"])
    with pytest.raises(ExportError, match="batch axis of 'item_ids' is not symbolic"):
        assert_batch_axis_symbolic(fixed)


def test_perturbed_weights_in_the_onnx_file_fail_parity(trained, exports, tmp_path):
    cell = trained["gru4rec"].cell()
    exported = exports["gru4rec"].exported
    copy = tmp_path / "gru4rec"
    shutil.copytree(exported.directory, copy)
    graphs = {kind: copy / path.name for kind, path in exported.graphs.items()}
    for path in graphs.values():
        data = path.with_name(path.name + ".data")
        weights = np.frombuffer(data.read_bytes(), dtype=np.float32).copy()
        weights += np.float32(0.25)
        data.write_bytes(weights.tobytes())
    parity = onnx_parity(cell, replace(exported, directory=copy, graphs=graphs), tolerance=1e-4)
    assert not parity.passed
    assert "exceeds" in parity.reason
    assert parity.max_abs_diff_scores > 1e-2


class ShiftedCell(nn.Module):
    """Wraps a cell; adds ``shift`` to its scores -- a Python number, so the exported
    graph keeps the value it had at export time."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell
        self.state_names = cell.state_names
        self.shift = 0.0

    def initial_state(self, batch_size):
        return self.cell.initial_state(batch_size)

    def forward(self, item_ids, *state):
        scores, *new_state = self.cell(item_ids, *state)
        return (scores + self.shift, *new_state)


def test_a_cell_whose_torch_output_differs_from_its_graph_fails_parity(trained, tmp_path):
    cell = ShiftedCell(trained["mlstm"].cell())
    exported = export_cell(cell, tmp_path / "shifted", top_k=5)
    assert onnx_parity(cell, exported, tolerance=1e-4).passed
    cell.shift = 0.5
    parity = onnx_parity(cell, exported, tolerance=1e-4)
    assert not parity.passed
    assert parity.max_abs_diff_scores == pytest.approx(0.5, rel=1e-3)
    assert parity.topk_agreement == 1.0  # a constant shift keeps the ranking


class MaskedPaddingCell(ShiftedCell):
    """A shifted cell that scores the padding column -inf, as a cell may."""

    def forward(self, item_ids, *state):
        scores, *new_state = super().forward(item_ids, *state)
        return (scores.index_fill(1, torch.tensor([0]), float("-inf")), *new_state)


def test_minus_infinity_scores_must_match_and_do_not_blind_the_check(trained, tmp_path):
    cell = MaskedPaddingCell(trained["mlstm"].cell())
    exported = export_cell(cell, tmp_path / "masked", top_k=5)
    parity = onnx_parity(cell, exported, tolerance=1e-4)
    assert parity.passed and np.isfinite(parity.score_scale)
    cell.shift = 0.5  # torch's finite scores move; the graph's do not
    parity = onnx_parity(cell, exported, tolerance=1e-4)
    assert not parity.passed
    assert parity.max_abs_diff_scores == pytest.approx(0.5, rel=1e-3)


class UnexportableCell(nn.Module):
    state_names = ("h",)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, 3),)

    def forward(self, item_ids, h):
        if float(h.sum()) > 0:  # data-dependent control flow: torch.export refuses it
            h = h * 2
        return torch.zeros(item_ids.shape[0], 6) + h.sum(1, keepdim=True), h + 1


def test_an_export_failure_is_reported_not_raised(tmp_path):
    result = export_and_check(
        UnexportableCell(), tmp_path / "bad", top_k=3, options=ExportOptions()
    )
    assert result.status == "failed" and result.exported is None and result.parity is None
    assert "torch.onnx.export failed" in result.error
    assert not (tmp_path / "bad").exists()


class PaddingFirstCell(nn.Module):
    """Scores with the largest value in the padding column."""

    state_names = ("h",)

    def __init__(self):
        super().__init__()
        self.scores = nn.Parameter(torch.linspace(0, 1, 9).flip(0), requires_grad=False)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, 2),)

    def forward(self, item_ids, h):
        return self.scores.expand(item_ids.shape[0], -1) + h[:, :1], h + 1


def test_the_top_k_graph_never_recommends_padding(tmp_path):
    cell = PaddingFirstCell()
    exported = export_cell(cell, tmp_path / "pad", top_k=3)
    session, _ = onnxruntime_session(exported.graphs["topk"], device="cpu", threads=1)
    _, top_items, _ = session.run(
        None, {"item_ids": np.array([1, 2, 3]), "h": np.zeros((3, 2), np.float32)}
    )
    assert top_items.tolist() == [[1, 2, 3]] * 3
    parity = check_parity(
        cell,
        session_runner(
            onnxruntime_session(exported.graphs["cell"], device="cpu", threads=1)[0],
            exported.input_names,
        ),
        run_topk=session_runner(session, exported.input_names),
        top_k=3,
    )
    assert parity.passed and parity.topk_agreement == 1.0


def test_the_legacy_exporter_also_gives_a_dynamic_batch(trained, tmp_path):
    exported = export_cell(trained["lstm"].cell(), tmp_path / "legacy", top_k=4, exporter="legacy")
    assert all(batch_dims(exported.graphs["cell"]).values())
    assert onnx_parity(trained["lstm"].cell(), exported, tolerance=1e-4).passed
