"""The one-step scoring cell (recbench.serve.cell): the default forward runs the network's
step; a cell with an int64 state (the windowed attention model of docs/plugins.md) and a
cell without state export to ONNX and pass parity."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from recbench.plugin import FitContext, ScoringCell, SequenceBatch, Sequences
from recbench.registry import discover
from recbench.serve.export import ExportOptions, export_and_check

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
N_ITEMS = 30


class TinyRecurrence(nn.Module):
    """A network with a ``step``: ``h' = tanh(W h + e_item)``, with dropout on ``h'``."""

    def __init__(self, n_items: int, dim: int = 6):
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim)
        self.recurrent = nn.Linear(dim, dim)
        self.item_bias = nn.Parameter(torch.randn(n_items + 1))
        self.dropout = nn.Dropout(0.5)

    def initial_state(self, batch_size: int) -> tuple[Tensor, ...]:
        return (self.item_bias.new_zeros(batch_size, self.items.embedding_dim),)

    def step(self, items: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor]]:
        (h,) = state
        h = torch.tanh(self.recurrent(h) + self.items(items))
        return self.dropout(h), (h,)

    def output_weights(self) -> tuple[Tensor, Tensor]:
        return self.items.weight, self.item_bias


class TinyCell(ScoringCell):
    state_names = ("h",)


def test_the_default_forward_scores_what_the_network_step_returns():
    torch.manual_seed(0)
    network = TinyRecurrence(N_ITEMS)
    cell = TinyCell(network)
    items = torch.tensor([3, 7])
    (h0,) = cell.initial_state(2)
    scores, h1 = cell(items, h0)
    network.eval()  # the cell runs its copy in eval mode: dropout off
    with torch.no_grad():
        hidden, (expected_h,) = network.step(items, (h0,))
        expected = hidden @ network.items.weight.t() + network.item_bias
    assert scores.shape == (2, N_ITEMS + 1)
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(h1, expected_h)


def test_the_cell_is_a_frozen_snapshot_of_the_network():
    network = TinyRecurrence(N_ITEMS)
    cell = TinyCell(network)
    items, state = torch.tensor([1]), cell.initial_state(1)
    before = cell(items, *state)[0].clone()
    with torch.no_grad():
        network.item_bias.add_(1.0)
        network.recurrent.weight.mul_(2.0)
    torch.testing.assert_close(cell(items, *state)[0], before)
    assert not any(p.requires_grad for p in cell.parameters())
    assert not cell.network.training


@pytest.fixture(scope="module")
def walkthrough() -> Iterator[types.ModuleType]:
    """The code of the walkthrough "a neural model on the shared trainer", as a module."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## A neural model on the shared trainer") :]
    [code] = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "WindowCell" in b]
    module = types.ModuleType("recbench_docs_walkthrough")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(code, str(DOCS), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[module.__name__]


@pytest.fixture(scope="module")
def window_model(walkthrough):
    """The walkthrough's windowed attention model, trained for two epochs."""
    options = walkthrough.WindowOptions(
        epochs=2, batch_size=32, max_length=12, window=4, embedding_dim=8
    )
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(1, N_ITEMS + 1, size=rng.integers(3, 20))) for _ in range(120)]
    train = Sequences.from_lists(rows, N_ITEMS)
    model = walkthrough.WindowAttention(options)
    context = FitContext(
        n_items=N_ITEMS,
        device=torch.device("cpu"),
        seed=0,
        item_counts=train.item_counts(),
        registry=discover(),
    )
    model.fit(train, None, context)
    return model


def test_the_windowed_cell_keeps_the_last_item_ids_and_matches_score(window_model):
    inputs = [5, 9, 2, 11, 4, 8]
    batch = SequenceBatch(torch.tensor([[0, 0, *inputs]]), torch.tensor([len(inputs)]))
    expected = window_model.score(batch)
    cell = window_model.cell()
    state = cell.initial_state(1)
    assert [s.dtype for s in state] == [torch.int64]
    for item in inputs:
        scores, *state = cell(torch.tensor([item]), *state)
    assert state[0].tolist() == [inputs[-4:]]
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_a_cell_with_an_int64_state_exports_and_passes_parity(window_model, tmp_path):
    result = export_and_check(
        window_model.cell(), tmp_path / "window", top_k=5, options=ExportOptions()
    )
    assert result.status == "ok", result.error
    assert result.exported.input_names == ("item_ids", "window")
    assert result.parity.passed and result.parity.max_abs_diff_state == 0.0


class TableCell(nn.Module):
    """A cell without state: one row of a score table per item."""

    state_names: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.rand(N_ITEMS + 1, N_ITEMS + 1))

    def initial_state(self, batch_size: int) -> tuple[Tensor, ...]:
        return ()

    def forward(self, item_ids: Tensor) -> tuple[Tensor]:
        return (self.table[item_ids],)


def test_a_cell_without_state_exports_and_passes_parity(tmp_path):
    result = export_and_check(TableCell(), tmp_path / "table", top_k=5, options=ExportOptions())
    assert result.status == "ok", result.error
    assert result.exported.input_names == ("item_ids",)
    assert result.parity.passed and result.parity.max_abs_diff_scores == 0.0
