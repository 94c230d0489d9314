"""The shared trainer: windows, batches, lanes, negatives, early stopping, failures."""

from __future__ import annotations

import itertools
import math
import types
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_checks import fit_context
from torch import nn

from recbench import hookimpl
from recbench.data.interactions import Sequences
from recbench.errors import ConfigError
from recbench.progress import Progress
from recbench.registry import discover
from recbench.train.loop import EpochLoop
from recbench.train.sampling import NegativeSampler
from recbench.train.trainer import (
    TrainingDiverged,
    TrainingOptions,
    _Lanes,
    _Trainer,
    encode_by_length,
    epoch_batches,
    fit_network,
    gather_windows,
    last_positions,
    linear_scores,
    make_loss,
    start_aligned,
    training_windows,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def random_sequences(seed: int = 0, n_users: int = 30, n_items: int = 20) -> Sequences:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 25, n_users)
    items = rng.integers(1, n_items + 1, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Sequences(offsets=offsets, items=items, users=np.arange(n_users), n_items=n_items)


def transitions_of(sequences: Sequences) -> Counter:
    pairs: Counter = Counter()
    for row in range(len(sequences)):
        s = sequences.offsets[row]
        for e in range(s, sequences.offsets[row + 1] - 1):
            pairs[(e, e + 1)] += 1
    return pairs


class LastItemNetwork(nn.Module):
    """A first-order model: the representation after item t is an embedding of item t."""

    def __init__(self, n_items: int, dim: int = 8):
        super().__init__()
        self.n_items = n_items
        self.inputs = nn.Embedding(n_items + 1, dim)
        self.outputs = nn.Embedding(n_items + 1, dim)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))

    def encode(self, items):
        return self.inputs(items)

    def score(self, hidden, candidates):
        return linear_scores(hidden, candidates, self.outputs.weight, self.bias)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, 1),)

    def step(self, items, state):
        return self.inputs(items), state


@dataclass
class Holder:
    """What ctx.validate receives: a model around the network."""

    network: nn.Module


# -- windows, batches, lanes -----------------------------------------------------------


@pytest.mark.parametrize("max_length", [1, 3, 7, 50])
def test_windows_hold_every_transition_exactly_once(max_length):
    sequences = random_sequences()
    starts, lengths = training_windows(sequences, max_length)
    assert lengths.min() >= 2 and lengths.max() <= max_length + 1
    pairs: Counter = Counter()
    for start, length in zip(starts, lengths, strict=True):
        for e in range(start, start + length - 1):
            pairs[(e, e + 1)] += 1
    assert pairs == transitions_of(sequences)


def test_last_window_is_the_most_recent_items():
    sequences = random_sequences()
    starts, lengths = training_windows(sequences, 5, "last")
    long_enough = np.flatnonzero(sequences.lengths >= 2)
    assert len(starts) == len(long_enough)
    assert (starts + lengths == sequences.offsets[long_enough + 1]).all()
    assert (lengths == np.minimum(sequences.lengths[long_enough], 6)).all()


def test_epoch_batches_partition_the_windows_by_similar_length():
    lengths = np.random.default_rng(1).integers(2, 200, 1000)
    batches = epoch_batches(lengths, 32, np.random.default_rng(0), sort_by_length=True)
    together = np.concatenate(batches)
    assert sorted(together) == list(range(1000))
    assert max(len(b) for b in batches) == 32
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) == 32])
    unsorted = epoch_batches(lengths, 32, np.random.default_rng(0), sort_by_length=False)
    assert spread < 0.5 * np.mean([np.ptp(lengths[b]) for b in unsorted if len(b) == 32])


def test_gather_windows_and_start_aligned_rows():
    items = torch.arange(100, 120)
    window = gather_windows(items, torch.tensor([0, 5, 17]), torch.tensor([3, 1, 2]))
    assert window.tolist() == [[100, 101, 102], [105, 0, 0], [117, 118, 0]]
    left_padded = torch.tensor([[0, 0, 7, 8], [1, 2, 3, 4], [0, 0, 0, 9]])
    lengths = torch.tensor([2, 4, 1])
    assert start_aligned(left_padded, lengths).tolist() == [
        [7, 8, 0, 0],
        [1, 2, 3, 4],
        [9, 0, 0, 0],
    ]
    hidden = torch.arange(3 * 4).reshape(3, 4, 1)
    assert last_positions(hidden, lengths).flatten().tolist() == [1, 7, 8]


def test_session_parallel_lanes_read_every_transition_once_and_reset_new_sequences():
    sequences = random_sequences(n_users=12)
    lanes = _Lanes(sequences, batch_size=4, rng=np.random.default_rng(0))
    seen: Counter = Counter()
    previous_target: np.ndarray | None = None
    for inputs, targets, reset, keep in lanes:
        assert len(inputs) == len(targets) == len(reset) <= 4
        if previous_target is not None:
            carried = previous_target if keep is None else previous_target[keep]
            # a continuing lane reads the item it predicted at the previous step
            assert (inputs[~reset] == carried[~reset]).all()
        for a, b in zip(inputs, targets, strict=True):
            seen[(int(a), int(b))] += 1
        previous_target = targets
    expected: Counter = Counter()
    for row in range(len(sequences)):
        s = sequences.sequence(row)
        for a, b in itertools.pairwise(s):
            expected[(int(a), int(b))] += 1
    assert seen == expected


# -- scoring and negatives -----------------------------------------------------------------


def test_linear_scores_in_every_layout():
    torch.manual_seed(0)
    weight, bias = torch.randn(11, 4), torch.randn(11)
    hidden = torch.randn(3, 5, 4)
    full = hidden @ weight.t() + bias
    assert torch.allclose(linear_scores(hidden, None, weight, bias), full, atol=1e-6)
    candidates = torch.randint(0, 11, (3, 6))
    grouped = linear_scores(hidden, candidates, weight, bias)
    assert torch.allclose(grouped, full.gather(2, candidates[:, None, :].expand(3, 5, 6)))
    one = linear_scores(hidden[:, :1], candidates, weight, bias)
    assert torch.allclose(one, grouped[:, :1], atol=1e-6)


def test_gathered_scores_have_exact_gradients_in_blocks(monkeypatch):
    import recbench.train.trainer as training

    monkeypatch.setitem(training.GATHER_BLOCK, "cpu", 7)  # blocks of one or two rows
    torch.manual_seed(0)
    hidden = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    candidates = torch.tensor([[1, 1, 4], [0, 8, 2], [3, 3, 3], [5, 6, 7], [8, 1, 0]])

    def scores(h, w, b):
        return linear_scores(h.unsqueeze(1), candidates, w, b).squeeze(1)

    expected = (hidden.unsqueeze(1) * weight[candidates]).sum(-1) + bias[candidates]
    assert torch.allclose(scores(hidden, weight, bias), expected)
    assert torch.autograd.gradcheck(scores, (hidden, weight, bias))


def test_scores_accept_bf16_representations_under_autocast():
    torch.manual_seed(0)
    weight, bias = torch.randn(11, 4), torch.randn(11)
    hidden = torch.randn(6, 4)
    candidates = torch.randint(0, 11, (6, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        one = linear_scores(hidden.bfloat16().unsqueeze(1), candidates, weight, bias)
        many = linear_scores(hidden.bfloat16().unsqueeze(0), candidates[:1], weight, bias)
    exact = linear_scores(hidden.unsqueeze(1), candidates, weight, bias)
    assert torch.allclose(one.float(), exact, atol=0.1)
    assert many.shape == (1, 6, 3)


def test_in_batch_negatives_are_the_other_rows_targets_at_the_same_step():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    options = TrainingOptions(loss="bpr", in_batch_negatives=True, negatives=2)
    trainer = _Trainer(Holder(network), network, sequences, fit_context(sequences), options, "test")
    targets = torch.tensor([[3, 4, 0], [5, 6, 7], [8, 0, 0]])
    hidden = torch.randn(3, 3, 8)
    positive, negative = trainer.predictions(hidden, targets)
    full = network.score(hidden.reshape(1, 9, 8), None).reshape(3, 3, -1)
    valid = (targets != 0).nonzero().tolist()
    assert len(positive) == len(valid) and negative.shape == (len(valid), 2 + 2)
    for k, (b, t) in enumerate(valid):
        assert positive[k].item() == pytest.approx(full[b, t, targets[b, t]].item(), abs=1e-5)
        others = [targets[o, t].item() for o in range(3) if o != b]
        for j, item in enumerate(others):
            if item != 0:  # a padding slot holds a sampled item instead
                assert negative[k, j].item() == pytest.approx(full[b, t, item].item(), abs=1e-5)


def test_cce_receives_every_item_score():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    options = TrainingOptions(loss="cce")
    trainer = _Trainer(Holder(network), network, sequences, fit_context(sequences), options, "test")
    targets = torch.tensor([[3, 4, 0]])
    positive, negative = trainer.predictions(torch.randn(1, 3, 8), targets)
    assert negative.shape == (2, sequences.n_items)
    assert torch.equal(negative[torch.arange(2), targets[0, :2] - 1], positive)


def test_cce_in_blocks_gives_the_gradient_of_the_whole_loss(monkeypatch):
    import recbench.train.trainer as training

    sequences = random_sequences()
    gradients = []
    for block in (10**9, 3 * (sequences.n_items + 1)):  # one block; blocks of 3 rows
        monkeypatch.setitem(training.SCORE_BLOCK, "cpu", block)
        torch.manual_seed(0)
        network = LastItemNetwork(sequences.n_items)
        options = TrainingOptions(loss="cce")
        trainer = _Trainer(
            Holder(network), network, sequences, fit_context(sequences), options, "t"
        )
        window = torch.tensor([[3, 4, 5, 0], [5, 6, 7, 8], [8, 9, 0, 0]])
        loss, count = trainer.all_candidates_backward(network.encode(window[:, :-1]), window[:, 1:])
        gradients.append((loss, count, [p.grad.clone() for p in network.parameters()]))
    (loss1, count1, grads1), (loss2, count2, grads2) = gradients
    assert count1 == count2 == 6 and loss1.item() == pytest.approx(loss2.item(), rel=1e-6)
    for a, b in zip(grads1, grads2, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_sampler_never_draws_padding_and_excludes_the_positive():
    counts = np.array([0, 100, 0, 10, 1, 50], dtype=np.int64)
    exclude = torch.tensor([1, 3, 5, 1])
    for distribution in ("uniform", "popularity"):
        sampler = NegativeSampler(5, distribution, item_counts=counts, alpha=1.0, seed=3)
        draws = sampler.sample((4, 5000), exclude)
        assert draws.min() >= 1 and draws.max() <= 5
        assert not (draws == exclude[:, None]).any()
    popular = NegativeSampler(5, "popularity", item_counts=counts, alpha=1.0, seed=3)
    draws = popular.sample((200_000,))
    share = torch.bincount(draws, minlength=6).double() / len(draws)
    expected = torch.tensor(counts / counts.sum())
    assert torch.allclose(share, expected, atol=0.005)
    assert share[2] == 0  # no training event: never a negative
    flat = NegativeSampler(5, "popularity", item_counts=counts, alpha=0.0, seed=3)
    share0 = torch.bincount(flat.sample((100_000,)), minlength=6).double() / 100_000
    assert torch.allclose(
        share0[[1, 3, 4, 5]], torch.full((4,), 0.25, dtype=torch.float64), atol=0.01
    )
    again = NegativeSampler(5, "popularity", item_counts=counts, alpha=1.0, seed=3)
    assert torch.equal(again.sample((200_000,)), draws)


# -- the training loop -----------------------------------------------------------------


def test_early_stopping_restores_the_best_weights_from_a_weights_only_checkpoint(tmp_path):
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    metrics = iter([0.1, 0.3, 0.2, 0.25, 0.1, 0.9])
    snapshots: list[dict] = []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.network.state_dict().items()})
        assert not model.network.training
        return next(metrics)

    ctx = fit_context(sequences, validate=validate, checkpoint_dir=tmp_path / "ckpt")
    options = TrainingOptions(epochs=6, patience=3, batch_size=8, loss="bpr")
    history = fit_network(Holder(network), network, sequences, ctx, options, name="test")
    assert [e.metric for e in history.epochs] == [0.1, 0.3, 0.2, 0.25, 0.1]
    assert history.stopped_early and history.best_epoch == 2 and history.best_metric == 0.3
    for key, value in network.state_dict().items():
        assert torch.equal(value, snapshots[1][key])
    saved = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True)
    assert set(saved) == set(network.state_dict())
    assert not network.training


def test_without_validation_every_epoch_runs_and_the_last_weights_stay():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    options = TrainingOptions(epochs=3, batch_size=8, loss="bpr", patience=1)
    history = fit_network(
        Holder(network), network, sequences, fit_context(sequences), options, name="t"
    )
    assert len(history.epochs) == 3 and history.best_epoch is None
    assert all(e.metric is None and e.predictions > 0 for e in history.epochs)
    assert history.epochs[-1].loss < history.epochs[0].loss


def test_session_parallel_epoch_trains_on_every_transition():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    options = TrainingOptions(
        epochs=2,
        batch_size=4,
        loss="bpr_max",
        batching="session-parallel",
        in_batch_negatives=True,
        shared_negatives=True,
        negatives=3,
    )
    history = fit_network(
        Holder(network), network, sequences, fit_context(sequences), options, name="t"
    )
    assert history.epochs[0].predictions == sum(transitions_of(sequences).values())


def scripted_epochs(losses):
    """An epoch function that sets every weight to the epoch number and returns the
    next of ``losses``."""

    def train_epoch(epoch, bar):
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.fill_(epoch)
        bar.advance()
        return losses[epoch - 1], 10

    network = nn.Linear(2, 1)
    return network, train_epoch


def run_loop(loop, network, train_epoch, validate, checkpoint_dir=None):
    """``loop`` over scripted epochs, one step each, silently, on the CPU."""
    return loop.run(
        network,
        train_epoch,
        steps=1,
        validate=validate,
        checkpoint_dir=checkpoint_dir,
        device=CPU,
        progress=Progress.silent(),
    )


def test_the_loop_keeps_the_lowest_finite_score_when_lower_is_better(tmp_path):
    network, train_epoch = scripted_epochs([1.0] * 6)
    scores = iter([0.5, 0.3, float("nan"), 0.4, 0.35, 0.1])
    loop = EpochLoop("t", epochs=6, patience=3, higher_is_better=False)
    history = run_loop(loop, network, train_epoch, lambda: next(scores), tmp_path)
    assert history.best_epoch == 2 and history.best_metric == 0.3
    assert history.stopped_early and len(history.epochs) == 5  # nan, 0.4, 0.35: no better
    assert torch.equal(network.weight, torch.full((1, 2), 2.0)) and not network.training
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert torch.equal(saved["weight"], network.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_the_loop_validates_every_n_epochs_and_after_the_last():
    network, train_epoch = scripted_epochs([1.0] * 5)
    validated = []
    loop = EpochLoop("t", epochs=5, patience=0, validate_every=2)
    history = run_loop(
        loop, network, train_epoch, lambda: validated.append(network.weight[0, 0].item()) or 0.0
    )
    assert validated == [2.0, 4.0, 5.0] and history.best_epoch == 2
    assert [e.metric for e in history.epochs] == [None, 0.0, None, 0.0, 0.0]
    assert torch.equal(network.weight, torch.full((1, 2), 2.0))  # restored from memory


def test_the_loop_stops_when_an_epoch_loss_is_not_finite():
    network, train_epoch = scripted_epochs([0.5, float("inf")])
    loop = EpochLoop("t", epochs=3, patience=0, divergence_hint="do something")
    with pytest.raises(
        TrainingDiverged, match="t: the training loss became inf in epoch 2; do something"
    ):
        run_loop(loop, network, train_epoch, None)


def test_a_divergence_after_a_validated_epoch_keeps_the_best_weights():
    """Epoch 3's loss is NaN: training stops as early stopping would, with epoch 2's
    weights (the best validated), and the history says why it stopped."""
    network, train_epoch = scripted_epochs([0.5, 0.4, float("nan"), 0.3])
    scores = iter([0.1, 0.3])
    loop = EpochLoop("t", epochs=4, patience=0)
    history = run_loop(loop, network, train_epoch, lambda: next(scores))
    assert len(history.epochs) == 2 and history.best_epoch == 2 and history.best_metric == 0.3
    assert history.diverged == "t: the training loss became nan in epoch 3; lower the learning rate"
    assert torch.equal(network.weight, torch.full((1, 2), 2.0))
    assert not network.training


class NaNLoss:
    id = "nan_loss"
    summary = "Always NaN"
    version = "1"
    candidates = "sampled"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        pass

    def __call__(self, positive, negative, mask=None):
        return (positive.sum() + negative.sum()) * float("nan")


def registry_with(loss: type) -> Any:
    """The installed plugins and ``loss``."""
    registry = discover()

    @hookimpl
    def register_losses(register):
        register(loss)

    registry.add_plugin(
        f"{loss.id}-loss",
        types.SimpleNamespace(register_losses=register_losses),
        "recbench-tests",
        "0",
    )
    return registry


def registry_with_nan_loss():
    return registry_with(NaNLoss)


def test_a_nan_loss_stops_training_with_a_clear_message():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    ctx = fit_context(sequences, registry=registry_with_nan_loss())
    options = TrainingOptions(epochs=2, batch_size=8, loss="nan_loss")
    with pytest.raises(TrainingDiverged, match="the training loss became nan in epoch 1, batch 1"):
        fit_network(Holder(network), network, sequences, ctx, options, name="test")


def test_a_diverging_model_is_marked_failed_and_the_run_goes_on(settings, tmp_path):
    import recbench

    result = recbench.run(
        models=["lstm", "pop"],
        dataset="synthetic:tiny",
        out=tmp_path / "run",
        settings=settings,
        registry=registry_with_nan_loss(),
        overrides=["lstm.loss=nan_loss", "lstm.embedding_dim=8", "export.enabled=false"],
        protocols=["last-item"],
    )
    frame = result.to_dataframe()
    # the order check trains lstm again on shuffled sequences: it diverges too
    assert set(frame[frame["status"] == "failed"]["model"]) == {"lstm", "lstm (order-shuffled)"}
    assert (frame[frame["model"] == "pop"]["status"] == "ok").all()
    assert "the training loss became nan" in (result.path / "report.md").read_text()


def test_unknown_loss_and_bad_loss_options_are_config_errors():
    registry = discover()
    with pytest.raises(ConfigError, match="did you mean 'bpr_max'"):
        make_loss("bprmax", registry=registry)
    with pytest.raises(ConfigError, match="unknown option 'lambda' for loss 'bpr_max'"):
        make_loss("bpr_max", "lambda=2", registry=registry)
    with pytest.raises(ConfigError, match="cannot read"):
        make_loss("bpr_max", "score_regularization", registry=registry)
    loss = make_loss("bpr_max", "score_regularization=0.25", registry=registry)
    assert loss.options.score_regularization == 0.25


def test_the_trainer_looks_losses_up_in_the_context_registry_only():
    sequences = random_sequences()
    network = LastItemNetwork(sequences.n_items)
    options = TrainingOptions(epochs=1, batch_size=8, loss="bpr")
    ctx = fit_context(sequences, registry=None)
    with pytest.raises(ConfigError, match="the fit context has no plugin registry"):
        fit_network(Holder(network), network, sequences, ctx, options, name="test")
    ctx = fit_context(sequences)
    with pytest.raises(ConfigError, match="test names no training loss"):
        fit_network(
            Holder(network), network, sequences, ctx, replace(options, loss=""), name="test"
        )


def test_invalid_trainer_options_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        TrainingOptions(batch_size=0)
    with pytest.raises(ValueError, match="learning_rate"):
        replace(TrainingOptions(), learning_rate=0.0)


# -- losses that ask for candidate ids and sampling probabilities ------------------------


class LogQSoftmax:
    """A sampled softmax with the log-Q correction (Bengio and Senecal, 2008; Yi et al.,
    2019): each negative's logit minus the log of its sampling probability. Records
    what it receives."""

    id = "logq_softmax"
    summary = "Sampled softmax with log-Q correction (test)"
    version = "1"
    candidates = "sampled"
    extra_inputs = ("candidate_ids", "sampling_probabilities")
    calls: ClassVar[list[tuple[Any, ...]]] = []

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        pass

    def __call__(self, positive, negative, mask=None, *, candidate_ids, sampling_probabilities):
        self.calls.append((negative.detach(), candidate_ids, sampling_probabilities))
        logits = torch.cat([positive.unsqueeze(-1), negative - sampling_probabilities.log()], -1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.int64))


class AllItemsLogQ(LogQSoftmax):
    id = "all_items_logq"
    candidates = "all"


def logq_trainer(sequences, loss=LogQSoftmax, **options):
    network = LastItemNetwork(sequences.n_items)
    ctx = fit_context(sequences, registry=registry_with(loss))
    trainer_options = TrainingOptions(loss=loss.id, batch_size=8, **options)
    return network, _Trainer(Holder(network), network, sequences, ctx, trainer_options, "t")


@pytest.mark.parametrize(
    "options",
    [
        {"sampling": "popularity", "sampling_alpha": 0.5},
        {"sampling": "uniform", "negatives": 3},
        {"sampling": "popularity", "sampling_alpha": 1.0, "shared_negatives": True, "negatives": 4},
        {
            "sampling": "popularity",
            "sampling_alpha": 0.75,
            "in_batch_negatives": True,
            "negatives": 2,
        },
    ],
)
def test_a_loss_that_asks_gets_each_negatives_item_id_and_sampling_probability(options):
    sequences = random_sequences()
    counts = torch.as_tensor(sequences.item_counts(), dtype=torch.float64)
    network, trainer = logq_trainer(sequences, **options)
    targets = torch.tensor([[3, 4, 0], [5, 6, 7], [8, 0, 0]])
    hidden = torch.randn(3, 3, 8)
    _, negative, extra = trainer.scored(hidden, targets)
    ids, drawn = extra["candidate_ids"], extra["sampling_probabilities"]
    assert ids.shape == drawn.shape == negative.shape and ids.dtype == torch.int64
    # the ids are the items whose scores the loss gets
    full = network.score(hidden.reshape(1, 9, 8), None).reshape(3, 3, -1)
    valid = (targets != 0).nonzero().tolist()
    for k, (b, t) in enumerate(valid):
        assert torch.allclose(negative[k], full[b, t, ids[k]], atol=1e-5)
    # the probabilities are the sampler's distribution (count ** alpha over its sum) ...
    if options["sampling"] == "uniform":
        pmf = torch.full_like(counts, 1 / sequences.n_items)
    else:
        weights = counts ** options["sampling_alpha"] * (counts > 0)
        pmf = weights / weights.sum()
    expected = pmf[ids].float()
    # ... except for another row's target, which has its share of the training events
    if options.get("in_batch_negatives"):
        for k, (b, t) in enumerate(valid):
            others = [o for o in range(3) if o != b]
            for j, o in enumerate(others):
                if targets[o, t] != 0:
                    assert ids[k, j] == targets[o, t]
                    expected[k, j] = float(counts[targets[o, t]] / counts.sum())
    assert torch.allclose(drawn, expected)


def test_the_sampling_probabilities_are_how_often_the_trainer_draws_each_item():
    sequences = random_sequences(n_items=12)
    _, trainer = logq_trainer(
        sequences,
        epochs=1,
        sampling="popularity",
        sampling_alpha=1.0,
        negatives=64,
        exclude_positive=False,
    )
    LogQSoftmax.calls.clear()
    history = trainer.run()
    assert LogQSoftmax.calls and math.isfinite(history.epochs[0].loss)
    ids = torch.cat([call[1].reshape(-1) for call in LogQSoftmax.calls])
    drawn = torch.cat([call[2].reshape(-1) for call in LogQSoftmax.calls])
    frequency = torch.bincount(ids, minlength=sequences.n_items + 1).double() / len(ids)
    probability = torch.zeros(sequences.n_items + 1, dtype=torch.float64)
    probability[ids] = drawn.double()
    counts = torch.as_tensor(sequences.item_counts(), dtype=torch.float64)
    assert torch.allclose(probability[1:], (counts / counts.sum())[1:].where(frequency[1:] > 0, 0))
    assert torch.allclose(frequency, counts / counts.sum(), atol=0.01)


def test_a_loss_over_every_item_gets_every_id_with_probability_one():
    sequences = random_sequences()
    network, trainer = logq_trainer(sequences, loss=AllItemsLogQ)
    AllItemsLogQ.calls.clear()
    window = torch.tensor([[3, 4, 5, 0], [5, 6, 7, 8]])
    trainer.update(network.encode(window[:, :-1]), window[:, 1:])
    ((negative, ids, drawn),) = AllItemsLogQ.calls
    assert negative.shape == ids.shape == (5, sequences.n_items)
    assert torch.equal(ids[0], torch.arange(1, sequences.n_items + 1))
    assert torch.equal(drawn, torch.ones_like(drawn))


def test_a_loss_asking_for_an_unknown_input_is_refused_at_registration():
    class AsksForMore(LogQSoftmax):
        id = "asks_for_more"
        extra_inputs = ("candidate_ids", "user_ids")

    registry = registry_with(AsksForMore)
    [failure] = [f for f in registry.failures if f.plugin == "asks_for_more-loss"]
    assert "'extra_inputs' must be a tuple of 'candidate_ids', 'sampling_probabilities'" in (
        failure.reason
    )
    with pytest.raises(ConfigError, match="loss 'asks_for_more' was skipped with its plugin"):
        registry.get("loss", "asks_for_more")


def test_prediction_positions_are_the_mask_of_real_targets():
    from recbench.train.trainer import at_positions, prediction_positions

    lengths = np.array([5, 2, 7, 3])
    width = int(lengths.max())
    items = gather_windows(
        torch.arange(1, 30), torch.tensor([0, 6, 9, 20]), torch.as_tensor(lengths), width
    )
    targets = items[:, 1:]
    positions = torch.as_tensor(prediction_positions(lengths, width))
    torch.testing.assert_close(at_positions(targets, positions), targets[targets != 0])
    hidden = torch.randn(*targets.shape, 3)
    torch.testing.assert_close(at_positions(hidden, positions), hidden[targets != 0])


# -- encoding by length ---------------------------------------------------------------


class LSTMNetwork(LastItemNetwork):
    """An LSTM over item embeddings; records the shape of every ``encode`` call."""

    def __init__(self, n_items: int, dim: int = 8, group_rows: int | None = None):
        torch.manual_seed(0)
        super().__init__(n_items, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.length_group_rows = group_rows
        self.calls: list[tuple[int, int]] = []

    def encode(self, items):
        self.calls.append(tuple(items.shape))
        return self.lstm(self.inputs(items))[0]


def test_encoding_by_length_gives_the_outputs_and_gradients_of_one_call():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 37)
    items = torch.as_tensor(
        np.where(np.arange(29) < lengths[:, None], rng.integers(1, 20, (37, 29)), 0)
    )
    real = torch.as_tensor(np.arange(29) < lengths[:, None])
    results = []
    for group_rows in (None, 8):
        network = LSTMNetwork(20)
        if group_rows is None:
            hidden = network.encode(items)
        else:
            hidden = encode_by_length(network.encode, items, lengths, group_rows)
        hidden[real].square().sum().backward()
        results.append((hidden, network, [p.grad for p in network.lstm.parameters()]))
    (one, one_net, one_grads), (grouped, grouped_net, grouped_grads) = results
    torch.testing.assert_close(grouped[real], one[real], rtol=0, atol=1e-6)
    for a, b in zip(grouped_grads, one_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # round(37 / 8) = 5 groups of 7-8 rows, longest first, each cut to its longest row
    widths = sorted(lengths, reverse=True)
    assert grouped_net.calls == [
        (len(group), widths[group[0]]) for group in np.array_split(np.arange(37), 5)
    ]
    assert one_net.calls == [(37, 29)]


def test_the_trainer_encodes_by_length_only_networks_that_ask():
    sequences = random_sequences(n_users=40)
    options = TrainingOptions(epochs=2, batch_size=16, loss="bpr", sort_by_length=False)
    histories, calls = [], []
    for group_rows in (None, 4):
        network = LSTMNetwork(sequences.n_items, group_rows=group_rows)
        ctx = fit_context(sequences)
        histories.append(fit_network(Holder(network), network, sequences, ctx, options, name="t"))
        calls.append(network.calls)
    whole, grouped = calls
    windows = len(training_windows(sequences, options.max_length)[0])
    sizes = [min(16, windows - start) for start in range(0, windows, 16)]
    assert sorted(rows for rows, _ in whole) == sorted(sizes * 2)  # one call per batch
    assert len(grouped) == 2 * sum(max(1, round(size / 4)) for size in sizes)
    assert len({width for _, width in grouped}) > len({width for _, width in whole})
    for a, b in zip(histories[0].epochs, histories[1].epochs, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
