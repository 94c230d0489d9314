"""The kit's check of the optional one-pass method ``score_prefixes``: its scores after
every prefix equal stepping the model's cell over the whole history, and ``score()`` on
every prefix the model reads whole (at most ``max_length`` items)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recbench.testing.checker import Checker, score_difference, varied_lengths
from recbench.testing.data import TinyData

if TYPE_CHECKING:
    import torch

#: The chunk length the check asks for: short, so that the state is carried across
#: chunks several times on the tiny data's sequences.
CHECK_STEPS = 3


def check_score_prefixes(
    checker: Checker, model: Any, data: TinyData, device: torch.device
) -> None:
    """Compare ``score_prefixes`` on a batch of whole test sequences of varied lengths
    (right-padded, read in chunks of :data:`CHECK_STEPS`) with ``score`` on each prefix
    and, when the model has ``cell()``, with the cell stepped from ``initial_state``
    (up to a constant per row, as the cell check allows)."""
    import numpy as np
    import torch

    from recbench.data.batches import SequenceBatch
    from recbench.data.interactions import PADDING_ITEM

    test = data.test
    rows = varied_lengths(test.lengths, 6)
    lengths = test.lengths[rows].astype(np.int64)
    width = int(lengths.max())
    items = torch.full((len(rows), width), PADDING_ITEM, dtype=torch.int64)
    for b, row in enumerate(rows):
        sequence = test.items[test.offsets[row] : test.offsets[row + 1]]
        items[b, : len(sequence)] = torch.from_numpy(sequence.astype(np.int64))
    items, length_tensor = items.to(device), torch.from_numpy(lengths).to(device)
    what = f"score_prefixes() on {len(rows)} sequences of up to {width} items"
    chunks = checker.call(
        what, lambda: list(model.score_prefixes(items, length_tensor, CHECK_STEPS))
    )
    expected_chunks = -(-width // CHECK_STEPS)
    widths = [min(CHECK_STEPS, width - first) for first in range(0, width, CHECK_STEPS)]
    shapes = [list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__ for c in chunks]
    wanted = [[len(rows), w, data.n_items + 1] for w in widths]
    if len(chunks) != expected_chunks or shapes != wanted:
        raise checker.fail(
            f"{what} in steps of {CHECK_STEPS} yielded {shapes}: it must yield one float "
            f"tensor [batch, min(steps, T - t0), n_items + 1] per chunk, here {wanted}"
        )
    prefixes = torch.cat(chunks, dim=1)  # [B, T, n_items + 1]
    _check_marked_rows(checker, model, items, length_tensor, prefixes, what)

    max_length = model.max_length
    for b, length in enumerate(lengths.tolist()):
        readable = [t for t in range(length) if max_length is None or t + 1 <= max_length]
        if not readable:
            continue
        inputs = torch.zeros((len(readable), max(readable) + 1), dtype=torch.int64)
        for i, t in enumerate(readable):  # left-padded, as the evaluator builds inputs
            inputs[i, inputs.shape[1] - (t + 1) :] = items[b, : t + 1].cpu()
        batch = SequenceBatch(
            items=inputs.to(device),
            lengths=torch.tensor([t + 1 for t in readable], device=device),
        )
        scores = checker.call("score() on the same prefixes", model.score, batch)
        difference = score_difference(prefixes[b, readable, 1:], scores[:, 1:], allow_shift=False)
        if difference is not None:
            raise checker.fail(
                f"score_prefixes() does not match score(): the prefixes of a sequence of "
                f"{length} items differ by up to {difference:.3g}; the one-pass scores must "
                "be the scores the model ranks with"
            )

    if not hasattr(model, "cell"):
        return
    cell = checker.call("cell()", model.cell)
    cell.eval()
    state: tuple[Any, ...] = tuple(cell.initial_state(len(rows)))
    for t in range(width):
        stepped, *new_state = cell(items[:, t], *state)
        state = tuple(new_state)
        valid = torch.from_numpy(lengths > t).to(device)
        difference = score_difference(prefixes[valid, t, 1:], stepped[valid, 1:], allow_shift=True)
        if difference is not None:
            raise checker.fail(
                f"score_prefixes() does not match the cell: after {t + 1} items stepped one "
                f"at a time, the cell's scores differ by up to {difference:.3g} (beyond a "
                "constant per row); both must read the whole history from initial_state"
            )


def _check_marked_rows(
    checker: Checker,
    model: Any,
    items: torch.Tensor,
    lengths: torch.Tensor,
    prefixes: torch.Tensor,
    what: str,
) -> None:
    """With ``rows`` marking every third prefix and each sequence's last one, the marked
    rows must hold the same scores as when every row is scored."""
    import torch

    columns = torch.arange(items.shape[1], device=items.device)
    rows = (columns % 3 == 0).unsqueeze(0) & (columns.unsqueeze(0) < lengths.unsqueeze(1))
    rows[torch.arange(len(lengths), device=items.device), lengths - 1] = True
    chunks = checker.call(
        f"{what} with rows=", lambda: list(model.score_prefixes(items, lengths, CHECK_STEPS, rows))
    )
    marked = torch.cat(chunks, dim=1)[rows]
    difference = score_difference(marked[:, 1:], prefixes[rows][:, 1:], allow_shift=False)
    if difference is not None:
        raise checker.fail(
            f"score_prefixes(..., rows) does not match score_prefixes(...) on the rows it "
            f"marks: they differ by up to {difference:.3g}; score the marked rows as usual "
            "(recbench.plugin.scores_of_rows leaves only the other rows unscored)"
        )
