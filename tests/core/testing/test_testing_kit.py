"""The conformance kit (recbench.testing): its pytest plugin and fixtures, the example
third-party plugin, and deliberately broken plugins that it must reject with a message
saying what is wrong."""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import recbench.testing
from recbench import hookimpl
from recbench.data.interactions import Interactions
from recbench.registry import Registry, discover
from recbench.testing import ConformanceError, assert_conforms

EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "recbench-example-plugin"


# -- the pytest plugin and its fixtures ------------------------------------------------


def test_the_kit_is_a_pytest_plugin_through_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("recbench") is recbench.testing


def test_importing_the_kit_loads_neither_torch_nor_plugins():
    code = "import sys, recbench.testing; print(sorted({'torch', 'numpy', 'recbench_datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_data_fixture(recbench_tiny_data):
    data = recbench_tiny_data
    assert data is recbench.testing.tiny_data()  # cached
    assert data.n_items == 60 and len(data.train) > len(data.test) > len(data.valid) > 0
    assert data.item_counts.shape == (61,) and data.item_counts[0] == 0
    assert len(data.queries("last-item")) == len(data.test)
    context = data.fit_context()
    assert context.n_items == 60 and context.validate is not None


def test_registry_fixtures_are_fresh(recbench_registry, recbench_plugin_manager):
    assert isinstance(recbench_registry, Registry)
    assert recbench_plugin_manager is recbench_registry.manager
    assert recbench_plugin_manager.get_plugins() == set()
    assert recbench_registry.all("model") == []


def test_installed_registry_and_data_context_fixtures(
    recbench_installed_registry, recbench_data_context
):
    assert recbench_installed_registry.get("model", "pop").distribution == "recbench"
    assert recbench_data_context.offline
    assert not recbench_data_context.data_root.exists()


def test_a_fake_distribution_is_discovered_with_its_entry_points(recbench_fake_distribution):
    class Hooks:
        @staticmethod
        @hookimpl
        def register_losses(register):
            register(BPR)

    source = (
        "from recbench import hookimpl\n\n@hookimpl\ndef register_metrics(register):\n    pass\n"
    )
    dist = recbench_fake_distribution(
        "recbench-fake", "0.2", {"recbench_fake_hooks": Hooks, "recbench_fake_source": source}
    )
    assert (dist.name, dist.version) == ("recbench-fake", "0.2")
    registry = discover()
    loss = registry.get("loss", "test-bpr")
    assert (loss.plugin, loss.distribution, loss.distribution_version) == (
        "recbench_fake_hooks",
        "recbench-fake",
        "0.2",
    )
    assert registry.hooks_of("recbench_fake_source") == ("register_metrics",)
    assert registry.failures == []
    with pytest.raises(ValueError, match="'recbench_fake' is already installed"):
        recbench_fake_distribution("recbench_fake")


# -- the example third-party plugin, without installing it -----------------------------


@pytest.fixture
def example(recbench_fake_distribution, monkeypatch: pytest.MonkeyPatch):
    """The example plugin, installed as the distribution ``recbench-example-plugin``."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    module = importlib.import_module("recbench_example_plugin")
    recbench_fake_distribution("recbench-example-plugin", "0.1.0", {module.__name__: module})
    yield module
    for name in [n for n in sys.modules if n.partition(".")[0] == module.__name__]:
        del sys.modules[name]


def test_the_example_plugin_conforms(example):
    info = discover().get("model", "example")
    assert (info.distribution, info.distribution_version) == ("recbench-example-plugin", "0.1.0")
    assert_conforms(example)


# -- broken models ---------------------------------------------------------------------


def test_a_model_that_treats_padding_as_an_item_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class SumOfRows(MarkovChain):
        """Sums the rows of every input column, padding's included."""

        @property
        def max_length(self):
            return 5

        def score(self, batch):
            return self._table[batch.items].sum(dim=1)

    with pytest.raises(ConformanceError, match=r"padding changes the scores.*mask it"):
        assert_conforms(SumOfRows)


def test_a_model_with_the_wrong_score_shape_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class NoPaddingColumn(MarkovChain):
        def score(self, batch):
            return super().score(batch)[:, 1:]

    with pytest.raises(
        ConformanceError,
        match=r"model 'example' .* score\(\) returned shape \[16, 60\].*\[batch, n_items \+ 1\]",
    ):
        assert_conforms(NoPaddingColumn)


def test_a_model_with_integer_scores_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class Counts(MarkovChain):
        def score(self, batch):
            return (super().score(batch).clamp(min=0) * 100).long()

    with pytest.raises(ConformanceError, match=r"torch\.int64 scores: they must be floating-point"):
        assert_conforms(Counts)


def test_a_model_scoring_on_another_device_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class Elsewhere(MarkovChain):
        def score(self, batch):
            return torch.empty(batch.items.shape[0], self._table.shape[1], device="meta")

    with pytest.raises(
        ConformanceError, match="returned scores on meta, the model was trained on cpu"
    ):
        assert_conforms(Elsewhere)


def test_a_model_that_does_not_beat_popularity_is_rejected_unless_it_opts_out():
    class LeastPopular:
        id = "least-popular"
        summary = "The least popular items first"
        version = "1"
        max_length = 1

        @dataclass(frozen=True)
        class Options:
            pass

        def __init__(self, options=None):
            pass

        def fit(self, train, valid, ctx):
            self._scores = -torch.as_tensor(ctx.item_counts, dtype=torch.float32)

        def score(self, batch):
            return self._scores.expand(batch.items.shape[0], -1)

    with pytest.raises(ConformanceError, match=r"does not beat popularity.*mrr@10 0\.\d+ against"):
        assert_conforms(LeastPopular)
    assert_conforms(LeastPopular, learns=False)


def test_a_cell_that_does_not_match_the_model_is_rejected(example):
    from recbench_example_plugin.model import MarkovCell, MarkovChain

    class Shuffled(MarkovChain):
        def cell(self):
            return MarkovCell(self._table.roll(1, dims=1))

    with pytest.raises(ConformanceError, match=r"cell\(\) does not match score\(\)"):
        assert_conforms(Shuffled)


class CountingCell(torch.nn.Module):
    """Returns log-probability-like scores (a shift per row) and a step counter."""

    state_names = ("steps",)

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", table)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size),)

    def forward(self, item_ids, steps):
        return self.table[item_ids] - 3.0 * (steps + 1).unsqueeze(1), steps + 1


def test_a_cell_may_differ_by_a_constant_per_row_and_carry_state(example):
    from recbench_example_plugin.model import MarkovChain

    class Shifted(MarkovChain):
        def cell(self):
            return CountingCell(self._table)

    assert_conforms(Shifted)


class WithoutPaddingCell(CountingCell):
    """Scores without the padding column: the exported top-k graph would be off by one."""

    def forward(self, item_ids, steps):
        scores, steps = super().forward(item_ids, steps)
        return scores[:, 1:], steps


def test_a_cell_must_score_the_padding_column_too(example):
    from recbench_example_plugin.model import MarkovChain

    class Narrow(MarkovChain):
        def cell(self):
            return WithoutPaddingCell(self._table)

    with pytest.raises(ConformanceError, match=r"they must be \[batch, n_items \+ 1\]"):
        assert_conforms(Narrow)


# -- cells that match score() step by step, but that a run could not export ----------------


def test_a_cell_without_state_names_is_rejected_as_its_export_fails(example):
    from recbench_example_plugin.model import MarkovChain

    class Unnamed(CountingCell):
        state_names = ()

    class Shifted(MarkovChain):
        def cell(self):
            return Unnamed(self._table)

    with pytest.raises(
        ConformanceError,
        match=r"model 'example' .* its cell cannot be exported to ONNX as a run exports it "
        r"\(the cell has 1 state tensors but 0 state_names\): .*state_names naming each",
    ):
        assert_conforms(Shifted)


class DriftingCell(torch.nn.Module):
    """Adds the number of calls so far to every score: Python-side state that the exported
    graph freezes at its value when the cell was traced."""

    state_names = ()

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", table.clamp(min=0))  # finite: parity compares every score
        self.calls = 0

    def initial_state(self, batch_size):
        return ()

    def forward(self, item_ids):
        self.calls += 1
        return (self.table[item_ids] + self.calls,)


def test_a_cell_whose_graph_does_not_compute_what_torch_does_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class Drifting(MarkovChain):
        def cell(self):
            return DriftingCell(self._table)

    with pytest.raises(
        ConformanceError,
        match=r"its cell exports to ONNX, but ONNX Runtime does not compute what the torch "
        r"cell computes \(max abs difference .* exceeds .*\).*Python-side state",
    ):
        assert_conforms(Drifting)


def test_without_onnxruntime_the_export_is_skipped_with_a_warning(example, monkeypatch):
    from recbench_example_plugin.model import MarkovChain

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with pytest.warns(
        UserWarning,
        match=r"model 'example' .*: its cell was not exported to ONNX .*onnxruntime cannot be "
        r"imported",
    ):
        assert_conforms(MarkovChain, learns=False)


def test_an_option_the_command_line_cannot_set_is_rejected(example):
    from recbench_example_plugin.model import MarkovChain

    class Listy(MarkovChain):
        @dataclass(frozen=True)
        class Options:
            smoothing: float = 0.1
            weights: list[int] = field(default_factory=list)

    with pytest.raises(ConformanceError, match=r"option 'weights' has type list\[int\]"):
        assert_conforms(Listy)


def test_missing_metadata_is_rejected():
    class Anonymous:
        id = "anonymous"
        version = "1"

        @dataclass(frozen=True)
        class Options:
            pass

        def fit(self, train, valid, ctx): ...
        def score(self, batch): ...

    with pytest.raises(ConformanceError, match="'summary' must be a one-line string"):
        assert_conforms(Anonymous)


def test_an_unrecognisable_class_asks_for_its_kind():
    class Nothing:
        pass

    with pytest.raises(ConformanceError, match="cannot tell which kind of plugin"):
        assert_conforms(Nothing)


# -- losses ----------------------------------------------------------------------------


class BPR:
    """Bayesian personalised ranking, averaged over the unmasked positions."""

    id = "test-bpr"
    summary = "BPR for the kit's tests"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        self.options = options

    def __call__(self, positive, negative, mask=None):
        per_position = -F.logsigmoid(positive.unsqueeze(-1) - negative).mean(dim=-1)
        if mask is None:
            return per_position.mean()
        weights = mask.to(per_position.dtype)
        return (per_position * weights).sum() / weights.sum()


def test_a_good_loss_conforms():
    assert_conforms(BPR)


def test_a_loss_with_the_wrong_signature_is_rejected():
    class CrossEntropy(BPR):
        def __call__(self, scores, targets):
            return F.cross_entropy(scores, targets)

    with pytest.raises(
        ConformanceError,
        match=r"loss 'test-bpr' .* __call__\(scores, targets\) does not have the shared loss "
        r"signature \(positive, negative, mask=None\)",
    ):
        assert_conforms(CrossEntropy, kind="loss")


def test_a_loss_that_does_not_reduce_is_rejected():
    class PerPosition(BPR):
        def __call__(self, positive, negative, mask=None):
            return -F.logsigmoid(positive.unsqueeze(-1) - negative).mean(dim=-1)

    with pytest.raises(ConformanceError, match=r"returned shape \[32\].*reduce to a scalar"):
        assert_conforms(PerPosition)


def test_a_loss_that_ignores_the_mask_is_rejected():
    class Unmasked(BPR):
        def __call__(self, positive, negative, mask=None):
            return super().__call__(positive, negative, None)

    with pytest.raises(ConformanceError, match="masked-out positions get a gradient"):
        assert_conforms(Unmasked)


def test_a_loss_whose_gradient_points_the_wrong_way_is_rejected():
    class Backwards(BPR):
        def __call__(self, positive, negative, mask=None):
            return -super().__call__(positive, negative, mask)

    with pytest.raises(
        ConformanceError, match="raising the positive scores does not lower the loss"
    ):
        assert_conforms(Backwards)


def test_a_detached_loss_is_rejected():
    class Detached(BPR):
        def __call__(self, positive, negative, mask=None):
            return super().__call__(positive, negative, mask).detach()

    with pytest.raises(ConformanceError, match="does not require grad"):
        assert_conforms(Detached)


# -- metrics ---------------------------------------------------------------------------


class Hits:
    id = "test-hits"
    summary = "whether the next item is in the top k"
    version = "1"
    per_query = True
    higher_is_better = True
    bounds = (0.0, 1.0)

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        self.options = options

    def __call__(self, ranking, k, ctx):
        return ranking.is_next[:, :k].any(dim=1).to(torch.float64)


def test_a_good_metric_conforms():
    assert_conforms(Hits)


def test_a_metric_out_of_its_bounds_is_rejected():
    class Doubled(Hits):
        def __call__(self, ranking, k, ctx):
            return 2 * super().__call__(ranking, k, ctx)

    with pytest.raises(
        ConformanceError,
        match=r"metric 'test-hits' .* returned 2\.0 for query \d+ \(random ranking, half-split "
        r"protocol, k=1\), outside its documented bounds \[0\.0, 1\.0\]",
    ):
        assert_conforms(Doubled)


def test_a_metric_that_does_not_return_one_value_per_query_is_rejected():
    class Mean(Hits):
        def __call__(self, ranking, k, ctx):
            return super().__call__(ranking, k, ctx).mean()

    with pytest.raises(
        ConformanceError, match=r"returned shape \[\] for \d+ queries.*one value per query"
    ):
        assert_conforms(Mean)


def test_a_metric_with_bad_bounds_is_rejected():
    class Upside(Hits):
        bounds = (1.0, 0.0)

    with pytest.raises(ConformanceError, match="'bounds' must be"):
        assert_conforms(Upside)


# -- datasets --------------------------------------------------------------------------


class Events:
    id = "test-events"
    summary = "a few generated events"
    version = "1"
    argument_option = None

    @dataclass(frozen=True)
    class Options:
        n_users: int = 20

    def __init__(self, options):
        self.options = options

    def fingerprint(self, ctx):
        return f"generated:{self.options.n_users}"

    def load(self, ctx):
        users = np.repeat(np.arange(self.options.n_users), 5)
        items = (users * 3 + np.tile(np.arange(5), self.options.n_users)) % 17 + 1
        return Interactions(user=users, item=items, timestamp=np.arange(len(users)))


def test_a_good_dataset_conforms():
    assert_conforms(Events, options={"n_users": 10})


def test_a_dataset_with_non_integer_ids_is_rejected():
    class FloatItems(Events):
        def load(self, ctx):
            loaded = super().load(ctx)
            return Interactions(user=loaded.user, item=loaded.item.astype(float))

    with pytest.raises(
        ConformanceError, match="the 'item' ids must be integers or strings, got float64"
    ):
        assert_conforms(FloatItems)


def test_a_dataset_without_a_checksum_is_rejected():
    class NoFingerprint(Events):
        def fingerprint(self, ctx):
            return ""

    with pytest.raises(ConformanceError, match=r"fingerprint\(\) returned ''"):
        assert_conforms(NoFingerprint)


def test_a_dataset_whose_files_are_missing_offline_is_skipped():
    from recbench.errors import DataError

    class Remote(Events):
        def load(self, ctx):
            raise DataError("events.csv is not there and downloads are off")

    with pytest.raises(pytest.skip.Exception, match="downloads are off"):
        assert_conforms(Remote)
    with pytest.raises(ConformanceError, match="load\\(\\) raised DataError"):
        assert_conforms(Remote, skip_missing_data=False)


# -- plugin modules --------------------------------------------------------------------

MODULE = """
from dataclasses import dataclass
from recbench import hookimpl
{api}

class Copy:
    id = "{model_id}"
    summary = "A model from a third-party distribution"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        pass

    max_length = 1

    def fit(self, train, valid, ctx):
        pass

    def score(self, batch):
        raise NotImplementedError

@hookimpl
def register_models(register):
    register(Copy)
"""


def install_module(install, distribution: str, source: str, version: str = "1.0"):
    """Install ``source`` as the module of ``distribution`` (``recbench-x``: module
    ``recbench_x``) and import it."""
    module = distribution.replace("-", "_")
    install(distribution, version, {module: source})
    return importlib.import_module(module)


def test_a_plugin_with_a_duplicate_id_is_rejected_naming_both_owners(recbench_fake_distribution):
    module = install_module(
        recbench_fake_distribution, "recbench-copycat", MODULE.format(api="", model_id="pop")
    )
    with pytest.raises(
        ConformanceError,
        match=r"recbench_copycat does not load cleanly: .*duplicate model id 'pop': registered "
        r"by recbench and again by recbench-copycat",
    ):
        assert_conforms(module)


def test_a_plugin_for_another_plugin_api_is_rejected(recbench_fake_distribution):
    source = MODULE.format(api="RECBENCH_PLUGIN_API = 3", model_id="future")
    module = install_module(recbench_fake_distribution, "recbench-future", source, "3.0")
    with pytest.raises(
        ConformanceError,
        match=r"written for recbench plugin API 3, but this recbench .* provides plugin API 2",
    ):
        assert_conforms(module)


def test_a_module_without_hooks_is_rejected(recbench_fake_distribution):
    module = install_module(recbench_fake_distribution, "recbench-empty", "RECBENCH_PLUGIN_API = 2")
    with pytest.raises(ConformanceError, match="implements no recbench hook"):
        assert_conforms(module)
