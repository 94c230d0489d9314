"""``recbench plugins``: installed distributions, their hooks and what they registered."""

from __future__ import annotations

import json

import pytest

from recbench import cli
from recbench.hookspecs import PLUGIN_API_VERSION

THIRD_PARTY = """
from dataclasses import dataclass
from recbench.plugin import hookimpl

RECBENCH_PLUGIN_API = {api}

class Widget:
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
    register(Widget)

@hookimpl
def register_commands(cli):
    command = cli.add_parser("{model_id}-info", help="about the widget")
    command.set_defaults(handler=lambda args: print("a widget") or 0)
"""


def third_party(api: int = PLUGIN_API_VERSION, model_id: str = "widget") -> str:
    """The source of a third-party plugin module written for plugin API ``api``."""
    return THIRD_PARTY.format(api=api, model_id=model_id)


def plugins(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["plugins", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_builtins_are_hidden_unless_all(capsys):
    code, out, _ = plugins(capsys)
    assert code == 0
    assert "No third-party plugins are installed" in out
    code, out, _ = plugins(capsys, "--all")
    assert code == 0
    assert "recbench 0.1.0" in out
    assert "  recbench_baselines" in out and "    model: pop" in out
    assert "hooks: register_datasets" in out and "synthetic" in out


def test_a_third_party_distribution_with_its_hooks_and_registrations(
    recbench_fake_distribution, capsys
):
    recbench_fake_distribution("recbench-widgets", "2.5", {"recbench_widgets": third_party()})
    code, out, _ = plugins(capsys)
    assert code == 0
    assert out.splitlines() == [
        "recbench-widgets 2.5",
        f"  recbench_widgets (plugin API {PLUGIN_API_VERSION})",
        "    hooks: register_commands, register_models",
        "    model: widget",
        "    command: widget-info",
    ]
    # The command it added works.
    assert cli.main(["widget-info"]) == 0
    assert "a widget" in capsys.readouterr().out


def test_json_lists_every_plugin(recbench_fake_distribution, capsys):
    recbench_fake_distribution("recbench-widgets", "2.5", {"recbench_widgets": third_party()})
    code, out, _ = plugins(capsys, "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "name": "recbench_widgets",
            "distribution": "recbench-widgets",
            "version": "2.5",
            "loaded": True,
            "plugin_api": PLUGIN_API_VERSION,
            "hooks": ["register_commands", "register_models"],
            "registered": {"model": ["widget"]},
            "commands": ["widget-info"],
            "errors": [],
        }
    ]
    _, out, _ = plugins(capsys, "--json", "--all")
    by_name = {entry["name"]: entry for entry in json.loads(out)}
    assert by_name["recbench_baselines"]["distribution"] == "recbench"
    assert "pop" in by_name["recbench_baselines"]["registered"]["model"]
    assert "ml-100k" in by_name["recbench_datasets"]["registered"]["dataset"]


def test_hook_filter(recbench_fake_distribution, capsys):
    recbench_fake_distribution("recbench-widgets", "2.5", {"recbench_widgets": third_party()})
    _, out, _ = plugins(capsys, "--all", "--json", "--hook", "register_metrics")
    assert [entry["name"] for entry in json.loads(out)] == ["recbench_metrics"]
    _, out, _ = plugins(capsys, "--json", "--hook", "register_commands")
    assert [entry["name"] for entry in json.loads(out)] == ["recbench_widgets"]
    code, out, _ = plugins(capsys, "--hook", "register_datasets")
    assert code == 0 and "No installed plugin implements register_datasets" in out


def test_unknown_hook_is_a_one_line_error(capsys):
    code, _, err = plugins(capsys, "--hook", "register_model")
    assert code == 2
    assert err.strip().startswith("recbench: error: unknown hook 'register_model'")
    assert "did you mean 'register_models'" in err


def test_a_refused_plugin_is_shown_with_the_reason(recbench_fake_distribution, capsys):
    recbench_fake_distribution(
        "recbench-old", "0.3", {"recbench_old": third_party(api=0, model_id="old")}
    )
    code, out, err = plugins(capsys, "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert (entry["distribution"], entry["version"], entry["loaded"]) == (
        "recbench-old",
        "0.3",
        False,
    )
    assert "written for recbench plugin API 0" in entry["errors"][0]
    assert "plugin 'recbench_old' from recbench-old was skipped" in err


# -- plugins that are skipped: one line each, never a traceback ------------------------------

LEGACY = "from recbench.interactions import Sequences\n" + THIRD_PARTY.format(
    api=1, model_id="legacy"
).replace("RECBENCH_PLUGIN_API = 1\n", "")
BAD_OPTIONS = (
    THIRD_PARTY.format(api=PLUGIN_API_VERSION, model_id="badopt")
    .replace(
        "    class Options:\n        pass\n",
        "    class Options:\n        weights: dict = field(default_factory=dict)\n",
    )
    .replace("from dataclasses import dataclass\n", "from dataclasses import dataclass, field\n")
)


def test_a_plugin_for_the_older_api_breaks_neither_list_nor_plugins(
    recbench_fake_distribution, capsys
):
    recbench_fake_distribution("recbench-legacy", "0.1", {"recbench_legacy": LEGACY})
    code = cli.main(["list", "models"])
    captured = capsys.readouterr()
    assert code == 0 and "pop" in captured.out
    [warning] = captured.err.splitlines()
    assert warning.startswith(
        "recbench: warning: plugin 'recbench_legacy' from recbench-legacy was skipped: it "
        "targets an older recbench plugin API: it imports recbench.interactions"
    )
    code, out, err = plugins(capsys)
    assert code == 0 and err.splitlines() == [warning]
    assert "    skipped: it targets an older recbench plugin API" in out


@pytest.mark.parametrize(
    ("distribution", "source", "extra", "error"),
    [
        (
            "recbench-legacy",
            LEGACY,
            [],
            "recbench: error: unknown model 'legacy': choose from ",
        ),
        (
            "recbench-badopt",
            BAD_OPTIONS,
            ["-o", "badopt.weights=a:1"],
            "recbench: error: model 'badopt' was skipped with its plugin 'recbench_badopt' from "
            "recbench-badopt: model 'badopt' from recbench-badopt: option 'weights' has type "
            "dict, which cannot be set from the command line",
        ),
    ],
)
def test_running_a_model_of_a_skipped_plugin_says_it_was_skipped_and_why(
    recbench_fake_distribution, capsys, env, tmp_path, distribution, source, extra, error
):
    module = distribution.replace("-", "_")
    recbench_fake_distribution(distribution, "2.5", {module: source})
    model = distribution.removeprefix("recbench-")
    argv = ["run", "--models", model, "--dataset", "synthetic:tiny", "--out", str(tmp_path / "r")]
    code = cli.main([*argv, *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    [warning, line] = err.splitlines()
    assert warning.startswith(f"recbench: warning: plugin '{module}' from {distribution} was ")
    assert line.startswith(error)
    assert line.endswith(warning.split(" was skipped: ", 1)[1])  # why it was skipped
