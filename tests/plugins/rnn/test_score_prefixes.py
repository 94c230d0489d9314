"""The recurrent models' one-pass ``score_prefixes``: the cell stepped over the whole
history, and ``score()`` on every prefix within ``max_length``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from recbench_rnn.gru4rec import GRU4RecModel
from recbench_rnn.lstm import LSTMModel
from recbench_rnn.mlstm import MLSTMModel
from recbench_rnn.moc import MoCModel
from recbench_rnn.rnn_cce import RNNCCEModel

from recbench.data.batches import SequenceBatch
from recbench.registry import validate_class

N_ITEMS = 13
MAX_LENGTH = 3
ROWS = [[3, 1, 4, 1, 5, 9, 2, 6], [9], [2, 6, 5], [7, 7, 8, 10, 11, 12, 13]]

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANTS = [
    (LSTMModel, {"embedding_dim": 8}),
    (MLSTMModel, {"embedding_dim": 8}),
    (MLSTMModel, {"embedding_dim": 8, "representation": "c"}),
    (GRU4RecModel, {"hidden_size": 8, "embedding": "none"}),
    (GRU4RecModel, {"hidden_size": 8, "embedding": "separate", "embedding_dim": 6}),
    (GRU4RecModel, {"hidden_size": 8, "embedding": "shared"}),
    (MoCModel, {"dim": 4, "hidden_size": 8, "mixtures": 2}),
    (RNNCCEModel, {"cell": "gru", "embedding_dim": 6, "hidden_dim": 8}),
    (RNNCCEModel, {"cell": "lstm", "embedding_dim": 8, "tied": False}),
]
IDS = [f"{cls.id}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for cls, o in VARIANTS]


def untrained(model_cls, options):
    model = model_cls(replace(model_cls.Options(), max_length=MAX_LENGTH, **options))
    torch.manual_seed(0)
    model.network = model.build_network(N_ITEMS)
    with torch.no_grad():  # weights far from their small initial values
        for parameter in model.network.parameters():
            parameter.normal_(0.0, 0.5)
    model.network.eval()
    return model


def one_pass(model, steps):
    width = max(map(len, ROWS))
    items = torch.tensor([r + [0] * (width - len(r)) for r in ROWS])  # right-padded
    lengths = torch.tensor([len(r) for r in ROWS])
    with torch.no_grad():
        chunks = list(model.score_prefixes(items, lengths, steps))
    assert [c.shape[1] for c in chunks] == [min(steps, width - t0) for t0 in range(0, width, steps)]
    return torch.cat(chunks, dim=1)


@pytest.mark.parametrize(("model_cls", "options"), VARIANTS, ids=IDS)
def test_one_pass_equals_the_cell_stepped_over_the_whole_history(model_cls, options):
    model = untrained(model_cls, options)
    assert validate_class("model", model_cls).has_score_prefixes
    cell = model.cell().eval()
    for steps in (1, 3, 100):
        prefixes = one_pass(model, steps)
        assert prefixes.shape == (len(ROWS), max(map(len, ROWS)), N_ITEMS + 1)
        for row, sequence in enumerate(ROWS):
            state = cell.initial_state(1)
            with torch.no_grad():
                for t, item in enumerate(sequence):
                    stepped, *state = cell(torch.tensor([item]), *state)
                    assert torch.allclose(prefixes[row, t], stepped[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("model_cls", "options"), VARIANTS, ids=IDS)
def test_one_pass_equals_score_within_max_length_and_reads_past_it(model_cls, options):
    model = untrained(model_cls, options)
    prefixes = one_pass(model, 2)
    differs_past_max_length = False
    for row, sequence in enumerate(ROWS):
        for t in range(len(sequence)):
            window = sequence[max(0, t + 1 - MAX_LENGTH) : t + 1]
            batch = SequenceBatch(torch.tensor([window]), torch.tensor([len(window)]))
            with torch.no_grad():
                scores = model.score(batch)[0]
            same = torch.allclose(prefixes[row, t], scores, rtol=1e-4, atol=1e-4)
            if t + 1 <= MAX_LENGTH:
                assert same, (row, t)
            else:
                differs_past_max_length |= not same
    assert differs_past_max_length  # the history, not the window of max_length items


@pytest.mark.parametrize(("model_cls", "options"), VARIANTS, ids=IDS)
def test_one_pass_scores_the_marked_rows_alike(model_cls, options):
    model = untrained(model_cls, options)
    whole = one_pass(model, 3)
    width = whole.shape[1]
    items = torch.tensor([r + [0] * (width - len(r)) for r in ROWS])
    lengths = torch.tensor([len(r) for r in ROWS])
    rows = torch.zeros(items.shape, dtype=torch.bool)
    rows[torch.arange(len(ROWS)), lengths - 1] = True  # last-item: one row per sequence
    rows[0, 2] = True
    with torch.no_grad():
        marked = torch.cat(list(model.score_prefixes(items, lengths, 3, rows)), dim=1)
    torch.testing.assert_close(marked[rows], whole[rows], rtol=1e-5, atol=1e-5)
