"""The kit's checks of a ranking model: training, scores, padding, the one-step cell and
learning (beating popularity on the tiny data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recbench.testing.cell_export import check_cell_export
from recbench.testing.checker import (
    Checker,
    Settings,
    construct_with_epochs,
    score_difference,
    varied_lengths,
)
from recbench.testing.data import LEARNING_CUTOFF, LEARNING_METRIC, LEARNING_PROTOCOL, TinyData
from recbench.testing.prefixes import check_score_prefixes

if TYPE_CHECKING:
    import numpy as np
    import torch

    from recbench.data.batches import SequenceBatch


def check_model(checker: Checker, options: Mapping[str, Any], settings: Settings) -> None:
    """Train the model on the tiny data, then check its scores, padding, cell (and the
    cell's ONNX export, as a run exports it) and that it learns."""
    import torch

    from recbench.runner.seeding import seed_everything

    model, epoch_key, epochs = construct_with_epochs(checker, options, settings)
    max_length = checker.call("max_length", getattr, model, "max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise checker.fail(f"max_length must be None or a positive integer, got {max_length!r}")

    data = settings.tiny_data()
    device = torch.device(settings.device)
    seed_everything(0)
    checker.call(
        f"fit() on the tiny data ({len(data.train):,} users, {data.n_items} items)",
        model.fit,
        data.train,
        data.queries("last-item", "valid"),
        data.fit_context(device),
    )
    with torch.no_grad():
        _check_scores(checker, model, data, device)
        _check_padding(checker, model, data, device)
        if hasattr(model, "cell"):
            _check_cell(checker, model, data, device)
        if hasattr(model, "score_prefixes"):
            check_score_prefixes(checker, model, data, device)
    if settings.learns:
        _check_learns(checker, model, data, device, epoch_key, epochs)
    if hasattr(model, "cell"):
        check_cell_export(checker, model)


def _score(checker: Checker, model: Any, batch: SequenceBatch, what: str) -> torch.Tensor:
    return checker.call(f"score() on {what}", model.score, batch)


def _check_scores(checker: Checker, model: Any, data: TinyData, device: torch.device) -> None:
    import torch

    queries = data.queries("iterative")
    index = varied_lengths(queries.input_length, 16)
    expected = [len(index), data.n_items + 1]
    for rows in (index, index[:1]):
        batch = queries.model_inputs(rows, model.max_length, device)
        scores = _score(checker, model, batch, f"a batch of {len(rows)}")
        if not isinstance(scores, torch.Tensor):
            raise checker.fail(f"score() returned a {type(scores).__name__}, not a torch.Tensor")
        expected[0] = len(rows)
        if list(scores.shape) != expected:
            raise checker.fail(
                f"score() returned shape {list(scores.shape)} for {len(rows)} inputs over "
                f"{data.n_items} items: it must be [batch, n_items + 1] = {expected} "
                "(column 0 is padding)"
            )
        if not scores.is_floating_point():
            raise checker.fail(
                f"score() returned {scores.dtype} scores: they must be floating-point"
            )
        if scores.device != device:
            raise checker.fail(
                f"score() returned scores on {scores.device}, the model was trained on "
                f"{device}: return them on the model's device (ctx.device)"
            )
        if torch.isnan(scores[:, 1:]).any():
            raise checker.fail("score() returned NaN scores")


def _check_padding(checker: Checker, model: Any, data: TinyData, device: torch.device) -> None:
    """The scores of an input alone equal its scores left-padded among longer inputs."""
    queries = data.queries("iterative")
    index = varied_lengths(queries.input_length, 12)
    padded = queries.model_inputs(index, model.max_length, device)
    together = _score(checker, model, padded, "a padded batch")
    width = int(padded.items.shape[1])
    for row in range(len(index)):
        length = int(padded.lengths[row])
        if length == width:
            continue  # this row has no padding in the batch
        alone_batch = queries.model_inputs(index[row : row + 1], model.max_length, device)
        alone = _score(checker, model, alone_batch, "a single input")
        difference = score_difference(together[row : row + 1, 1:], alone[:, 1:], allow_shift=False)
        if difference is not None:
            raise checker.fail(
                f"padding changes the scores: an input of {length} items scored alone and "
                f"left-padded to {width} in a batch differ by up to {difference:.3g}; item 0 "
                "is padding, not an item: mask it (batch.lengths, or batch.items != 0)"
            )


def _check_cell(checker: Checker, model: Any, data: TinyData, device: torch.device) -> None:
    import numpy as np
    import torch

    cell = checker.call("cell()", model.cell)
    if not isinstance(cell, torch.nn.Module):
        raise checker.fail(f"cell() returned a {type(cell).__name__}, not a torch.nn.Module")
    cell.eval()
    queries = data.queries("iterative")
    steps = min(4, model.max_length or 4)
    candidates = [
        q for q in varied_lengths(queries.input_length, 64) if queries.input_length[q] >= steps
    ]
    rows = np.asarray(candidates[-8:], dtype=np.int64)
    batch = queries.model_inputs(rows, steps, device)
    full = _score(checker, model, batch, f"{len(rows)} inputs of {steps} items")
    initial = getattr(cell, "initial_state", None)
    state: tuple[Any, ...] = ()
    if initial is not None:
        state = tuple(checker.call("cell.initial_state(batch_size)", initial, len(rows)))
    scores: Any = None
    for step in range(steps):
        output = checker.call(f"the cell at step {step + 1}", cell, batch.items[:, step], *state)
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            scores, state = output[0], tuple(output[1:])
        else:
            raise checker.fail(
                f"the cell returned a {type(output).__name__}: it must return the tuple "
                "(scores, *new_state), (scores,) for a cell without state"
            )
    expected = [len(rows), data.n_items + 1]
    if list(scores.shape) != expected:
        raise checker.fail(
            f"the cell returned scores of shape {list(scores.shape)}: they must be [batch, "
            f"n_items + 1] = {expected}, column 0 the padding item (never recommended)"
        )
    difference = score_difference(scores[:, 1:], full[:, 1:], allow_shift=True)
    if difference is not None:
        raise checker.fail(
            f"cell() does not match score(): after feeding {steps} items one step at a time, "
            f"its scores differ from score() on the same inputs by up to {difference:.3g} "
            "(beyond a constant per row); the exported cell must compute what the model "
            "ranks with"
        )


def _check_learns(
    checker: Checker,
    model: Any,
    data: TinyData,
    device: torch.device,
    epoch_key: str | None,
    epochs: Any,
) -> None:
    value = checker.call("the evaluation", data.evaluate, model, device=device)
    baseline = data.evaluate(_Popularity(data.item_counts, device), device=device)
    if value > baseline:
        return
    trained = f"after {epochs} epoch(s)" if epoch_key is not None else "after fit()"
    name = f"{LEARNING_METRIC}@{LEARNING_CUTOFF}"
    raise checker.fail(
        f"it does not beat popularity on the tiny data {trained}: {name} {value:.4f} against "
        f"{baseline:.4f} for popularity ({LEARNING_PROTOCOL} protocol, "
        f"{len(data.queries(LEARNING_PROTOCOL)):,} test queries); check that it learns "
        "(or give it more epochs with assert_conforms(..., epochs=N)); pass learns=False "
        "only for a model that is not personalised by design"
    )


class _Popularity:
    """The popularity baseline the learning check compares against."""

    id = "popularity"
    max_length = 1

    def __init__(self, item_counts: np.ndarray, device: torch.device):
        import torch

        self._scores = torch.as_tensor(item_counts, dtype=torch.float32, device=device)

    def score(self, batch: SequenceBatch) -> torch.Tensor:
        return self._scores.unsqueeze(0).expand(batch.items.shape[0], -1)
