"""Plugin discovery through real entry points of fake installed distributions."""

from __future__ import annotations

import pytest

from recbench.errors import ConfigError, PluginError
from recbench.registry import Registry, discover

MODEL_SOURCE = """
from dataclasses import dataclass
from recbench import hookimpl

class {cls}:
    id = "{model_id}"
    summary = "A model from a third-party distribution"
    version = "7"

    @dataclass(frozen=True)
    class Options:
        width: int = 3

    def __init__(self, options=None):
        self.options = options

    max_length = None

    def fit(self, train, valid, ctx):
        pass

    def score(self, batch):
        raise NotImplementedError

@hookimpl
def register_models(register):
    register({cls})
"""


def test_builtins_are_discovered_through_entry_points():
    registry = discover()
    pop = registry.get("model", "pop")
    assert pop.distribution == "recbench"
    assert pop.plugin == "recbench_baselines"
    assert {"ml-100k", "file", "synthetic"} <= {d.id for d in registry.all("dataset")}
    assert {"sps", "recall", "mrr", "ndcg"} <= {m.id for m in registry.all("metric")}
    assert registry.failures == []


def test_third_party_model_is_found_with_its_distribution(recbench_fake_distribution):
    recbench_fake_distribution(
        "recbench-thirdparty",
        "2.5",
        {"recbench_thirdparty": MODEL_SOURCE.format(cls="Widget", model_id="widget")},
    )
    registry = discover()
    info = registry.get("model", "widget")
    assert (info.distribution, info.distribution_version, info.version) == (
        "recbench-thirdparty",
        "2.5",
        "7",
    )
    assert registry.get("model", "pop").distribution == "recbench"


def test_broken_plugin_is_reported_and_the_rest_still_work(recbench_fake_distribution):
    recbench_fake_distribution(
        "recbench-broken", "1.0", {"recbench_broken": "raise ImportError('needs libfoo')"}
    )
    recbench_fake_distribution(
        "recbench-good", "1.0", {"recbench_good": MODEL_SOURCE.format(cls="Good", model_id="good")}
    )
    registry = discover()
    assert registry.get("model", "good").distribution == "recbench-good"
    assert registry.get("model", "pop")
    [failure] = registry.failures
    assert failure.distribution == "recbench-broken"
    assert "needs libfoo" in failure.one_line() and "recbench-broken" in failure.one_line()


def test_duplicate_id_is_rejected_naming_both_owners(recbench_fake_distribution):
    recbench_fake_distribution(
        "recbench-copycat",
        "1.0",
        {"recbench_copycat": MODEL_SOURCE.format(cls="Pop", model_id="pop")},
    )
    registry = discover()
    assert registry.get("model", "pop").distribution == "recbench"
    [failure] = registry.failures
    assert "recbench" in failure.reason and "recbench-copycat" in failure.reason
    assert "duplicate model id 'pop'" in failure.reason


def test_misspelled_hook_is_an_error(recbench_fake_distribution):
    source = MODEL_SOURCE.format(cls="Typo", model_id="typo").replace(
        "def register_models", "def register_modles"
    )
    recbench_fake_distribution("recbench-typo", "1.0", {"recbench_typo": source})
    registry = discover()
    with pytest.raises(ConfigError):
        registry.get("model", "typo")
    [failure] = registry.failures
    assert failure.distribution == "recbench-typo" and "register_modles" in failure.reason


def test_invalid_plugin_object_is_refused_with_the_reason(recbench_fake_distribution):
    source = MODEL_SOURCE.format(cls="NoOptions", model_id="no-options").replace(
        "    @dataclass(frozen=True)\n    class Options:\n        width: int = 3\n", ""
    )
    recbench_fake_distribution("recbench-nooptions", "1.0", {"recbench_nooptions": source})
    registry = discover()
    [failure] = registry.failures
    assert "'Options' must be a dataclass" in failure.reason


def test_deny_and_allow_lists_by_distribution(recbench_fake_distribution):
    recbench_fake_distribution(
        "recbench-extra",
        "1.0",
        {"recbench_extra": MODEL_SOURCE.format(cls="Extra", model_id="extra")},
    )
    assert "extra" in {m.id for m in discover().all("model")}
    assert "extra" not in {m.id for m in discover(deny=["recbench_extra"]).all("model")}
    only_other = discover(allow=["recbench-other"])
    assert "extra" not in {m.id for m in only_other.all("model")}
    assert only_other.get("model", "pop")  # recbench's own plugins always load


def test_unknown_id_lists_close_matches():
    registry = discover()
    with pytest.raises(ConfigError, match="did you mean 'pop'"):
        registry.get("model", "popp")
    with pytest.raises(ConfigError, match="unknown dataset 'ml-100'"):
        registry.get("dataset", "ml-100")


def test_aliases_resolve_to_the_same_dataset():
    registry = discover()
    assert registry.get("dataset", "ml100k").id == "ml-100k"
    assert registry.get("dataset", "ml20m").id == "ml-20m"


def test_hook_that_raises_midway_rolls_back_its_registrations():
    class Ok:
        id = "ok"
        summary = "fine"
        version = "1"

        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Options:
            pass

        def fit(self, train, valid, ctx): ...
        def score(self, batch): ...

    class Plugin:
        from recbench import hookimpl

        @staticmethod
        @hookimpl
        def register_models(register):
            register(Ok)
            raise RuntimeError("half-way")

    registry = Registry()
    assert registry.add_plugin("half", Plugin, "recbench-half", "0.1")
    assert registry.all("model") == []
    assert "half-way" in registry.failures[0].reason


def test_missing_builtins_fail_fast(monkeypatch: pytest.MonkeyPatch):
    import recbench.registry as registry_module

    monkeypatch.setattr(registry_module, "_entry_point_sources", lambda: [])
    with pytest.raises(PluginError, match="built-in plugins were not found"):
        discover()


# -- plugin API versions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared", ["", "RECBENCH_PLUGIN_API = 1", "RECBENCH_PLUGIN_API = (1, 2)"]
)
def test_a_plugin_for_this_api_or_declaring_none_is_loaded(recbench_fake_distribution, declared):
    source = declared + "\n" + MODEL_SOURCE.format(cls="Fits", model_id="fits")
    recbench_fake_distribution("recbench-fits", "1.0", {"recbench_fits": source})
    registry = discover()
    assert registry.get("model", "fits").distribution == "recbench-fits"
    assert registry.failures == []


def test_a_plugin_for_another_api_is_refused_before_its_hooks_run(recbench_fake_distribution):
    source = "RECBENCH_PLUGIN_API = 2\n" + MODEL_SOURCE.format(cls="Future", model_id="future")
    source = source.replace("register(Future)", "raise AssertionError('hook called')")
    recbench_fake_distribution("recbench-future", "3.0", {"recbench_future": source})
    registry = discover()
    with pytest.raises(ConfigError):
        registry.get("model", "future")
    [failure] = registry.failures
    assert failure.one_line() == (
        "plugin 'recbench_future' from recbench-future was skipped: it is written for recbench "
        "plugin API 2, but this recbench (0.1.0) provides plugin API 1: install a release of "
        "the plugin written for API 1, or a recbench that provides API 2"
    )
    assert not registry.manager.has_plugin("recbench_future")


def test_a_malformed_api_declaration_is_refused(recbench_fake_distribution):
    source = "RECBENCH_PLUGIN_API = '1'\n" + MODEL_SOURCE.format(cls="Odd", model_id="odd")
    recbench_fake_distribution("recbench-odd", "1.0", {"recbench_odd": source})
    [failure] = discover().failures
    assert "RECBENCH_PLUGIN_API must be an integer (or a tuple of integers), got '1'" in (
        failure.reason
    )


# -- what each plugin did ------------------------------------------------------------------


def test_records_say_which_hooks_each_plugin_implements_and_what_it_registered(
    recbench_fake_distribution,
):
    recbench_fake_distribution(
        "recbench-extra", "4.2", {"recbench_extra": MODEL_SOURCE.format(cls="E", model_id="extra")}
    )
    recbench_fake_distribution(
        "recbench-broken", "0.9", {"recbench_broken": "raise ImportError('needs libfoo')"}
    )
    registry = discover()
    records = {r.name: r for r in registry.records()}
    assert registry.records()[0].distribution == "recbench"  # recbench's own first
    extra = records["recbench_extra"]
    assert (extra.distribution, extra.distribution_version) == ("recbench-extra", "4.2")
    assert extra.hooks == ("register_models",)
    assert extra.registered == {"model": ("extra",)}
    assert extra.loaded and extra.errors == ()
    broken = records["recbench_broken"]
    assert (broken.distribution_version, broken.hooks, broken.loaded) == ("0.9", (), False)
    assert "needs libfoo" in broken.errors[0]
    assert records["recbench_datasets"].registered["dataset"][0] == "ml-100k"
