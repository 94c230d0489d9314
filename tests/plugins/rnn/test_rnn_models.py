"""The recurrent models: recurrences, one-step cells, learning and reproducibility."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from model_checks import assert_cell_is_a_frozen_snapshot, assert_cell_steps_to_the_scores
from recbench_rnn.gru4rec import GRU4RecModel
from recbench_rnn.lstm import LSTMModel
from recbench_rnn.mlstm import MLSTMModel
from recbench_rnn.recurrence import gru_fused, gru_loop, mlstm_fused, mlstm_loop
from recbench_rnn.rnn_cce import RNNCCEModel

import recbench
from recbench.data.batches import SequenceBatch

N_ITEMS = 13


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the recurrences ---------------------------------------------------------------------


def mlstm_inputs(dtype=torch.float64, steps=5, batch=3, dim=4):
    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=True)

    return (
        rand(steps, batch, dim),
        rand(steps, batch, 4 * dim),
        rand(batch, dim),
        rand(batch, dim),
        rand(dim, dim),
        rand(dim),
        rand(4 * dim, dim),
    )


@pytest.mark.parametrize("output", ["h", "c"])
def test_fused_mlstm_backward_is_the_exact_gradient(output):
    torch.manual_seed(0)
    inputs = mlstm_inputs()
    assert torch.autograd.gradcheck(lambda *x: mlstm_fused(*x, output=output), inputs)
    fused = mlstm_fused(*inputs, output=output)
    assert torch.allclose(fused, mlstm_loop(*inputs, output=output), atol=1e-12)
    with torch.no_grad():  # the inference path (nothing saved) gives the same outputs
        assert torch.allclose(mlstm_fused(*inputs, output=output), fused, atol=1e-12)


def test_fused_gru_backward_is_the_exact_gradient():
    torch.manual_seed(0)
    inputs = tuple(
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in ((5, 3, 12), (3, 4), (12, 4), (12,))
    )
    assert torch.autograd.gradcheck(gru_fused, inputs)
    assert torch.allclose(gru_fused(*inputs), gru_loop(*inputs), atol=1e-12)


def test_fused_and_loop_mlstm_agree_in_float32_with_gradients():
    torch.manual_seed(1)
    inputs = tuple(
        (x * 0.3).detach().requires_grad_()  # well-conditioned: no exploding gradients
        for x in mlstm_inputs(torch.float32, steps=30, batch=8, dim=16)
    )
    grads = []
    for recurrence in (mlstm_fused, mlstm_loop):
        out = recurrence(*inputs)
        grads.append(torch.autograd.grad((out * out).sum(), inputs))
    for fused, loop in zip(*grads, strict=True):
        assert torch.allclose(fused, loop, rtol=1e-4, atol=1e-5)


# -- one-step cells ------------------------------------------------------------------------

VARIANTS = [
    (LSTMModel, {}),
    (MLSTMModel, {}),
    (MLSTMModel, {"representation": "c"}),
    (MLSTMModel, {"implementation": "loop"}),
    (GRU4RecModel, {"embedding": "none"}),
    (GRU4RecModel, {"embedding": "separate", "embedding_dim": 6}),
    (GRU4RecModel, {"embedding": "shared"}),
]


def untrained(model_cls, options):
    size = {"hidden_size": 8} if model_cls is GRU4RecModel else {"embedding_dim": 8}
    model = model_cls(replace(model_cls.Options(), **size, **options))
    torch.manual_seed(0)
    model.network = model.build_network(N_ITEMS)
    with torch.no_grad():  # weights far from their small initial values
        for parameter in model.network.parameters():
            parameter.normal_(0.0, 0.5)
    model.network.eval()
    return model


@pytest.mark.parametrize(("model_cls", "options"), VARIANTS)
def test_stepping_the_cell_gives_the_scores_of_the_full_forward_pass(model_cls, options):
    model = untrained(model_cls, options)
    assert_cell_steps_to_the_scores(model, [[3, 1, 4, 1, 5], [9], [2, 6, 5]], N_ITEMS)


def test_cell_is_a_frozen_snapshot():
    model = untrained(LSTMModel, {})
    assert_cell_is_a_frozen_snapshot(model, model.cell())


def test_score_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="before fit"):
        LSTMModel().score(SequenceBatch(torch.tensor([[1]]), torch.tensor([1])))


# -- learning and reproducibility on structured synthetic data ---------------------------

NO_EXPORT = ["export.enabled=false"]  # ONNX export and latency have their own tests
SMALL = {
    "lstm": ["lstm.embedding_dim=32", "lstm.batch_size=32", "lstm.epochs=20"],
    "gru4rec": ["gru4rec.hidden_size=32", "gru4rec.batch_size=32", "gru4rec.epochs=20"],
    "mlstm": ["mlstm.embedding_dim=32", "mlstm.batch_size=32", "mlstm.epochs=20"],
}
#: Calibrated on seeds 0-4 of synthetic:tiny (see the test): pop reaches mrr@10 ≈ 0.14
#: and sps@10 ≈ 0.36 under the iterative protocol, the models 0.2-0.3 and 0.5-0.6.
MIN_MRR = {"lstm": 0.18, "gru4rec": 0.18, "mlstm": 0.18}


def test_every_model_learns_the_sequential_structure_and_beats_pop(settings, tmp_path):
    result = recbench.run(
        models=["pop", "lstm", "gru4rec", "mlstm"],
        dataset="synthetic:tiny",
        protocols=["iterative"],
        metrics=["mrr", "sps"],
        cutoffs=[10],
        overrides=[o for model in SMALL.values() for o in model] + NO_EXPORT,
        out=tmp_path / "run",
        settings=settings,
    )
    frame = result.to_dataframe()
    assert (frame["status"] == "ok").all()
    value = frame.set_index(["model", "metric"])["mean"]
    for model, minimum in MIN_MRR.items():
        assert value[model, "mrr"] >= minimum, model
        assert value[model, "mrr"] > 1.3 * value["pop", "mrr"], model
        assert value[model, "sps"] > 1.2 * value["pop", "sps"], model


@pytest.mark.parametrize("model", ["lstm", "gru4rec", "mlstm"])
def test_the_same_seed_gives_the_same_metrics_twice(settings, tmp_path, model):
    overrides = [o.replace("epochs=20", "epochs=2") for o in SMALL[model]] + NO_EXPORT
    metrics = []
    for attempt in range(2):
        result = recbench.run(
            models=[model],
            dataset="synthetic:tiny",
            protocols=["last-item"],
            overrides=overrides,
            out=tmp_path / f"run{attempt}",
            settings=settings,
        )
        # the model's cell and the order check's (the same model on shuffled sequences)
        cells = {c["model_label"]: c for c in result.cells}
        assert set(cells) == {model, f"{model} (order-shuffled)"}
        metrics.append(
            {(label, k): v["mean"] for label, c in cells.items() for k, v in c["metrics"].items()}
        )
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize(
    "model_cls, options",
    [(LSTMModel, {}), (RNNCCEModel, {"cell": "lstm"}), (RNNCCEModel, {"cell": "gru"})],
)
def test_fused_recurrent_layers_run_in_float32_under_bf16_autocast(model_cls, options):
    # CPU autocast runs nn.LSTM in bfloat16 (CUDA's cuDNN path in float16), or fails on a
    # CPU without a bfloat16 LSTM kernel (no AVX-512): the layer must leave autocast and
    # compute in float32 (recbench_rnn.recurrence.rnn_float32)
    items = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            plain = torch.nn.LSTM(4, 4)(torch.randn(2, 3, 4))[0]
        except RuntimeError:  # no bfloat16 kernel on this CPU
            plain = None
        assert plain is None or plain.dtype == torch.bfloat16  # the premise
        network = untrained(model_cls, options).network
        hidden = network.encode(items)
        stepped, _ = network.step(items[:, 0], network.initial_state(2))
    assert hidden.dtype == torch.float32 and stepped.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(hidden, network.encode(items))  # as without autocast
