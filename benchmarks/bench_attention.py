"""Serving cost of one step of ``sasrec`` (with and without its key/value cache) and
``bert4rec`` against ``lstm``.

Run on purpose (it is not part of the test suite)::

    python benchmarks/bench_attention.py
    python benchmarks/bench_attention.py --items 1682,26744 --rounds 3 --json attention.json

For each catalogue size (default: the 1,682 items of MovieLens 100K and a 26,744-item
catalogue, the size of MovieLens 20M) and each model at its default sizes (``lstm``
``d = 120``; ``sasrec`` and ``bert4rec`` ``d = 64``, 2 layers, window 200), with random
weights (latency does not depend on training) and a history of 300 items already read
(so the attention windows are full), torch eager on one thread times one step:

* **lstm**: its cell (``nn.LSTMCell`` and the scores);
* **sasrec, cached**: its cell, attending to the cached keys and values of the last
  199 items (``O(L·d)`` per layer);
* **sasrec, re-encoded**: ``score()`` over the last 200 items, what a cell without a cache
  computes every step (``O(L²·d)`` per layer);
* **bert4rec**: its cell, which re-encodes its window with the mask token appended.

Batch 1: p50 and p99 of single calls (ms); batch 256: queries per second at the median
call. Runs are interleaved round by round; numbers are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from recbench_attention.bert4rec import BERT4RecModel
from recbench_attention.sasrec import SASRecModel
from recbench_rnn.lstm import LSTMModel

from recbench.data.batches import SequenceBatch

HISTORY = 300


def built(model_cls: Any, n_items: int) -> Any:
    model = model_cls(model_cls.Options())
    torch.manual_seed(0)
    model.network = model.build_network(n_items).eval()
    return model


def stepper(cell: Any, batch: int, n_items: int, history: int = HISTORY) -> Callable[[], Any]:
    """One step of ``cell`` for ``batch`` queries after ``history`` items (a cell whose
    state is its window of item ids gets a full random window instead)."""
    generator = torch.Generator().manual_seed(1)
    state = cell.initial_state(batch)
    if cell.state_names == ("window",):
        state = (torch.randint(1, n_items + 1, state[0].shape, generator=generator),)
        history = 0
    with torch.no_grad():
        for _ in range(history):
            items = torch.randint(1, n_items + 1, (batch,), generator=generator)
            _, *state = cell(items, *state)
    item = torch.randint(1, n_items + 1, (batch,), generator=generator)
    return lambda: cell(item, *state)


def re_encoder(model: Any, batch: int, n_items: int) -> Callable[[], Any]:
    """``score()`` over a full window: a step of a cell without a cache."""
    length = model.max_length
    items = torch.randint(
        1, n_items + 1, (batch, length), generator=torch.Generator().manual_seed(1)
    )
    query = SequenceBatch(items=items, lengths=torch.full((batch,), length))
    return lambda: model.score(query)


def timings(step: Callable[[], Any], calls: int) -> list[float]:
    with torch.no_grad():
        for _ in range(3):
            step()
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1682,26744")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n_items in (int(n) for n in args.items.split(",")):
        models = {
            "lstm": built(LSTMModel, n_items),
            "sasrec": built(SASRecModel, n_items),
            "bert4rec": built(BERT4RecModel, n_items),
        }
        runs: dict[str, dict[int, Callable[[], Any]]] = {}
        for batch in (1, 256):
            runs.setdefault("lstm", {})[batch] = stepper(models["lstm"].cell(), batch, n_items)
            runs.setdefault("sasrec, cached", {})[batch] = stepper(
                models["sasrec"].cell(), batch, n_items
            )
            runs.setdefault("sasrec, re-encoded", {})[batch] = re_encoder(
                models["sasrec"], batch, n_items
            )
            runs.setdefault("bert4rec", {})[batch] = stepper(
                models["bert4rec"].cell(), batch, n_items
            )
        results: dict[str, dict[str, list[float]]] = {name: {} for name in runs}
        for _ in range(args.rounds):
            for name, steps in runs.items():
                single = timings(steps[1], args.calls)
                large = timings(steps[256], max(5, args.calls // 20))
                results[name].setdefault("p50", []).append(1e3 * percentile(single, 0.5))
                results[name].setdefault("p99", []).append(1e3 * percentile(single, 0.99))
                results[name].setdefault("qps", []).append(256 / percentile(large, 0.5))
        for name, values in results.items():
            row = {"items": n_items, "model": name}
            row.update({key: statistics.median(v) for key, v in values.items()})
            rows.append(row)
    print("| items | step | p50 ms (batch 1) | p99 ms (batch 1) | queries/s (batch 256) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['items']:,} | {row['model']} | {row['p50']:.3f} | {row['p99']:.3f} "
            f"| {row['qps']:,.0f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": 1, "history": HISTORY, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
