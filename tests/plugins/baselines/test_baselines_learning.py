"""The neighbourhood and rule baselines learn: on synthetic sequences with item-to-item
successors and sticky topics each predicts the next item far better than popularity.

Next-item measures only: sps@10 and mrr@10 under the iterative protocol, sps@10 (the
next item) under half-split. Half-split's mrr@10 rewards any of the many later items,
where the rule models, which score only the successors of the last item, need not beat
popularity."""

from __future__ import annotations

import pytest

import recbench

MODELS = ["itemknn", "sknn", "vsknn", "sr", "markov"]


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    from recbench.config.settings import Settings

    root = tmp_path_factory.mktemp("learning")
    settings = Settings(data_root=root / "data", cache_root=root / "cache", offline=True)
    result = recbench.run(
        models=[*MODELS, "pop"],
        dataset="synthetic:small",
        protocols=["half-split", "iterative"],
        metrics=["sps", "mrr"],
        cutoffs=[10],
        out=root / "run",
        settings=settings,
    )
    frame = result.to_dataframe()
    assert (frame["status"] == "ok").all()
    return frame


def value(frame, model: str, protocol: str, metric: str, k: int) -> float:
    rows = frame[
        (frame["model"] == model)
        & (frame["protocol"] == protocol)
        & (frame["metric"] == metric)
        & (frame["cutoff"] == k)
    ]
    assert len(rows) == 1
    return float(rows["mean"].iloc[0])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("protocol", "metric"),
    [("iterative", "sps@10"), ("iterative", "mrr@10"), ("half-split", "sps@10")],
)
def test_model_beats_popularity(frame, model, protocol, metric):
    name, _, k = metric.partition("@")
    popularity = value(frame, "pop", protocol, name, int(k))
    learned = value(frame, model, protocol, name, int(k))
    assert learned > 1.5 * popularity, f"{model} {metric} {learned:.4f} vs pop {popularity:.4f}"
