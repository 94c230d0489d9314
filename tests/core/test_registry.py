"""Plugin discovery through real entry points of fake installed distributions."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from recbench.errors import ConfigError, PluginError
from recbench.hookspecs import PLUGIN_API_VERSION
from recbench.registry import Registry, discover, validate_class
from recbench.version import __version__

MODEL_SOURCE = """
from dataclasses import dataclass
from recbench.plugin import hookimpl

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
        from recbench.plugin import hookimpl

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
    "declared",
    [
        "",
        f"RECBENCH_PLUGIN_API = {PLUGIN_API_VERSION}",
        f"RECBENCH_PLUGIN_API = ({PLUGIN_API_VERSION}, {PLUGIN_API_VERSION + 1})",
    ],
)
def test_a_plugin_for_this_api_or_declaring_none_is_loaded(recbench_fake_distribution, declared):
    source = declared + "\n" + MODEL_SOURCE.format(cls="Fits", model_id="fits")
    recbench_fake_distribution("recbench-fits", "1.0", {"recbench_fits": source})
    registry = discover()
    assert registry.get("model", "fits").distribution == "recbench-fits"
    assert registry.failures == []


def test_a_plugin_for_the_old_api_is_refused_before_its_hooks_run(recbench_fake_distribution):
    source = "RECBENCH_PLUGIN_API = 1\n" + MODEL_SOURCE.format(cls="Old", model_id="old")
    source = source.replace("register(Old)", "raise AssertionError('hook called')")
    recbench_fake_distribution("recbench-old", "0.3", {"recbench_old": source})
    registry = discover()
    with pytest.raises(ConfigError):
        registry.get("model", "old")
    [failure] = registry.failures
    assert failure.one_line() == (
        "plugin 'recbench_old' from recbench-old was skipped: it is written for recbench "
        "plugin API 1, but this recbench (0.1.0) provides plugin API 2: install a release of "
        "the plugin written for API 2, or a recbench that provides API 1"
    )
    assert not registry.manager.has_plugin("recbench_old")


def test_a_malformed_api_declaration_is_refused(recbench_fake_distribution):
    source = "RECBENCH_PLUGIN_API = '1'\n" + MODEL_SOURCE.format(cls="Odd", model_id="odd")
    recbench_fake_distribution("recbench-odd", "1.0", {"recbench_odd": source})
    [failure] = discover().failures
    assert "RECBENCH_PLUGIN_API must be an integer (or a tuple of integers), got '1'" in (
        failure.reason
    )


# -- plugins written against an older plugin API ------------------------------------------


def older_api_line(distribution: str, module: str, missing: str) -> str:
    return (
        f"plugin '{module}' from {distribution} was skipped: it targets an older recbench "
        f"plugin API: it imports {missing}, which this recbench ({__version__}, plugin API "
        f"{PLUGIN_API_VERSION}) does not have; install a release of {distribution} written for "
        f"plugin API {PLUGIN_API_VERSION} (plugins import only recbench.plugin), or disable it "
        f"with RECBENCH_DISABLE_PLUGINS={distribution}"
    )


@pytest.mark.parametrize(
    ("statement", "missing"),
    [
        ("from recbench.interactions import Sequences", "recbench.interactions"),
        ("import recbench.training", "recbench.training"),
        ("from recbench.contracts import Queries", "'Queries' from recbench.contracts"),
        ("from recbench import Sequences", "'Sequences' from recbench"),
    ],
)
def test_a_plugin_importing_a_moved_internal_is_skipped_in_one_line(
    recbench_fake_distribution, statement, missing
):
    source = statement + "\n" + MODEL_SOURCE.format(cls="Legacy", model_id="legacy")
    recbench_fake_distribution("recbench-legacy", "0.1", {"recbench_legacy": source})
    registry = discover()
    [failure] = registry.failures
    assert failure.one_line() == older_api_line("recbench-legacy", "recbench_legacy", missing)
    assert registry.get("model", "pop")  # the others keep working


def test_a_moved_internal_imported_inside_a_hook_is_reported_the_same_way(
    recbench_fake_distribution,
):
    source = MODEL_SOURCE.format(cls="Lazy", model_id="lazy").replace(
        "    register(Lazy)", "    register(Lazy)\n    from recbench.protocols import Queries"
    )
    recbench_fake_distribution("recbench-lazy", "1.0", {"recbench_lazy": source})
    registry = discover()
    [failure] = registry.failures
    assert failure.one_line() == older_api_line(
        "recbench-lazy", "recbench_lazy", "recbench.protocols"
    )
    assert (failure.kind, failure.ids) == ("model", ("lazy",))
    assert registry.all("model") == discover(deny=["recbench-lazy"]).all("model")  # rolled back


def test_a_plugin_needing_a_newer_plugin_api_says_so(recbench_fake_distribution):
    source = "from recbench.plugin import TimeMachine\n" + MODEL_SOURCE.format(
        cls="Future", model_id="future"
    )
    recbench_fake_distribution("recbench-future", "3.0", {"recbench_future": source})
    [failure] = discover().failures
    assert failure.reason == (
        "it targets a newer recbench plugin API: it imports 'TimeMachine' from "
        f"recbench.plugin, which this recbench ({__version__}, plugin API {PLUGIN_API_VERSION}) "
        "does not provide; upgrade recbench, or install a release of recbench-future written "
        f"for plugin API {PLUGIN_API_VERSION}"
    )


def test_a_missing_dependency_that_is_not_recbench_keeps_its_own_message(
    recbench_fake_distribution,
):
    recbench_fake_distribution(
        "recbench-needy", "1.0", {"recbench_needy": "import recbench_helpers_not_installed\n"}
    )
    [failure] = discover().failures
    assert failure.reason == (
        "ModuleNotFoundError: No module named 'recbench_helpers_not_installed'"
    )


# -- option declarations are checked at registration ---------------------------------------

BAD_OPTIONS = MODEL_SOURCE.replace(
    "from dataclasses import dataclass\n", "from dataclasses import dataclass, field\n"
).replace("        width: int = 3\n", "        weights: dict = field(default_factory=dict)\n")


def test_a_plugin_declaring_an_unsupported_option_type_is_skipped_in_one_line(
    recbench_fake_distribution,
):
    recbench_fake_distribution(
        "recbench-badopt",
        "1.0",
        {"recbench_badopt": BAD_OPTIONS.format(cls="Bad", model_id="badopt")},
    )
    registry = discover()
    [failure] = registry.failures
    assert failure.one_line() == (
        "plugin 'recbench_badopt' from recbench-badopt was skipped: model 'badopt' from "
        "recbench-badopt: option 'weights' has type dict, which cannot be set from the "
        "command line: use int, float, bool, str, a Literal of such values, a tuple[X, ...] "
        "of these, or an optional (X | None) of these"
    )
    assert (failure.kind, failure.ids) == ("model", ("badopt",))


def test_a_default_of_another_type_than_declared_is_refused():
    class Model:
        id = "typed"
        summary = "a model whose default does not match its type"
        version = "1"

        @dataclass(frozen=True)
        class Options:
            layers: int = "two"  # type: ignore[assignment]

        def fit(self, train, valid, ctx): ...
        def score(self, batch): ...

    with pytest.raises(PluginError, match="option 'layers' has type int but its default 'two'"):
        validate_class("model", Model)


# -- an unknown id says which plugins were skipped ------------------------------------------


def test_an_id_of_a_class_that_was_skipped_says_so_and_why(recbench_fake_distribution):
    recbench_fake_distribution(
        "recbench-badopt",
        "1.0",
        {"recbench_badopt": BAD_OPTIONS.format(cls="Bad", model_id="badopt")},
    )
    with pytest.raises(ConfigError) as caught:
        discover().get("model", "badopt")
    assert caught.value.one_line().startswith(
        "model 'badopt' was skipped with its plugin 'recbench_badopt' from recbench-badopt: "
        "model 'badopt' from recbench-badopt: option 'weights' has type dict"
    )


def test_an_unknown_id_names_the_skipped_plugins_that_may_have_provided_it(
    recbench_fake_distribution,
):
    legacy = "from recbench.interactions import Sequences\n" + MODEL_SOURCE
    recbench_fake_distribution(
        "recbench-legacy", "1.0", {"recbench_legacy": legacy.format(cls="L", model_id="legacy")}
    )
    broken_metrics = MODEL_SOURCE + (
        "\n@hookimpl\ndef register_metrics(register):\n    raise RuntimeError('no metrics')\n"
    )
    recbench_fake_distribution(
        "recbench-half", "1.0", {"recbench_half": broken_metrics.format(cls="H", model_id="half")}
    )
    registry = discover()
    with pytest.raises(ConfigError) as caught:
        registry.get("model", "legacy")
    line = caught.value.one_line()
    assert line.startswith("unknown model 'legacy': choose from ")
    assert line.endswith(
        "; note: " + older_api_line("recbench-legacy", "recbench_legacy", "recbench.interactions")
    )
    # recbench-half registered its model: it is no suspect for an unknown model, but is
    # one for an unknown metric
    assert "recbench-half" not in line
    with pytest.raises(ConfigError) as caught:
        registry.get("metric", "map")
    line = caught.value.one_line()
    assert "; note: plugin 'recbench_half' from recbench-half was skipped: RuntimeError" in line
    assert "; plugin 'recbench_legacy' from recbench-legacy was skipped" in line


def test_an_unknown_id_has_no_note_when_nothing_was_skipped():
    with pytest.raises(ConfigError) as caught:
        discover().get("model", "nothing-like-it")
    assert "note:" not in caught.value.one_line()


# -- optional metadata is read once, at registration ----------------------------------------


def test_optional_attributes_are_filled_with_their_defaults_at_registration():
    registry = discover()
    pop, lstm = registry.get("model", "pop"), registry.get("model", "lstm")
    assert (pop.baseline, pop.has_cell, pop.task, pop.aliases) == (True, False, "ranking", ())
    assert (lstm.baseline, lstm.has_cell) == (False, True)
    assert registry.get("dataset", "ml-100k").aliases == ("ml100k",)
    assert registry.get("dataset", "file").argument_option == "path"
    assert registry.get("dataset", "ml-100k").argument_option is None
    assert registry.get("loss", "cce").candidates == "all"
    assert registry.get("loss", "bpr").candidates == "sampled"
    assert registry.get("metric", "rmse").aggregation == "root_mean"
    assert registry.get("metric", "mae").aggregation == "mean"
    assert registry.get("metric", "mae").rating_units is True
    assert registry.get("metric", "sps").headline == 0
    assert registry.get("metric", "precision").headline is None
    assert registry.get("metric", "item_coverage").count is True


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("aliases = 'other'", "'aliases' must be a tuple of lower-case ids, got 'other'"),
        ("baseline = 'yes'", "'baseline' must be True or False, got 'yes'"),
    ],
)
def test_malformed_optional_attributes_are_refused(attribute, message):
    namespace: dict = {}
    exec(
        "from dataclasses import dataclass\n"
        "class Model:\n"
        "    id = 'odd'\n    summary = 'odd'\n    version = '1'\n"
        f"    {attribute}\n"
        "    @dataclass(frozen=True)\n    class Options:\n        pass\n"
        "    def fit(self, train, valid, ctx): ...\n"
        "    def score(self, batch): ...\n",
        namespace,
    )
    with pytest.raises(PluginError, match=re.escape(message)):
        validate_class("model", namespace["Model"])


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("headline = -1", "'headline' must be None or an integer >= 0, got -1"),
        ("headline = True", "'headline' must be None or an integer >= 0, got True"),
        ("count = 1", "'count' must be True or False, got 1"),
    ],
)
def test_malformed_metric_display_attributes_are_refused(attribute, message):
    namespace: dict = {}
    exec(
        "from dataclasses import dataclass\n"
        "class Metric:\n"
        "    id = 'odd'\n    summary = 'odd'\n    version = '1'\n"
        "    per_query = True\n    higher_is_better = True\n    bounds = (0.0, 1.0)\n"
        f"    {attribute}\n"
        "    @dataclass(frozen=True)\n    class Options:\n        pass\n"
        "    def __call__(self, ranking, k, ctx): ...\n",
        namespace,
    )
    with pytest.raises(PluginError, match=re.escape(message)):
        validate_class("metric", namespace["Metric"])


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
