"""End-to-end runs through the Python API and the command line."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import recbench
from recbench import cli, hookimpl
from recbench.api import load_registry
from recbench.contracts import FitContext
from recbench.data.interactions import Sequences
from recbench.errors import ConfigError
from recbench.registry import discover
from recbench.results import SCHEMA_VERSION, RunDirectory

TINY = "synthetic:tiny"


def run_tiny(settings, out: Path, **kwargs):
    kwargs.setdefault("models", ["pop"])
    return recbench.run(dataset=TINY, out=out, settings=settings, **kwargs)


def test_pop_run_writes_cells_arrays_and_a_report(settings, tmp_path):
    result = run_tiny(
        settings, tmp_path / "run", protocols=["half-split", "iterative", "last-item"]
    )
    frame = result.to_dataframe()
    assert set(frame["protocol"]) == {"half-split", "iterative", "last-item"}
    assert (frame["status"] == "ok").all()
    assert {"sps", "recall", "precision", "hit", "mrr", "ndcg"} <= set(frame["metric"])
    run_dir = RunDirectory.open(result.path)
    cells = list(run_dir.cells())
    assert len(cells) == 3
    for cell in cells:
        assert cell["schema_version"] == SCHEMA_VERSION
        assert (
            cell["policies"] == {"exclude_seen": False, "ties": "pessimistic"}
            or cell["policies"]["ties"] == "pessimistic"
        )
        arrays = run_dir.per_query(cell)
        assert arrays["sps@10"].shape == (cell["n_queries"],)
        assert arrays["sps@10"].mean() == pytest.approx(cell["metrics"]["sps@10"]["mean"])
    config = json.loads((result.path / "config.json").read_text())
    assert config["config"]["models"]["pop"]["id"] == "pop"
    assert config["config"]["task"] == "ranking"
    assert config["config"]["model_defaults"] == {"pop": {}}  # what the report compares with
    report = (result.path / "report.md").read_text()
    for heading in (
        "## Environment",
        "## Dataset",
        "## Protocol",
        "## Results: half-split",
        "## Results: iterative",
        "## Timing",
    ):
        assert heading in report
    assert "Ties: pessimistic" in report


def test_report_is_reproducible_from_results_alone(settings, tmp_path):
    result = run_tiny(settings, tmp_path / "run")
    first = (result.path / "report.md").read_text()
    (result.path / "report.md").unlink()
    assert cli.main(["report", str(result.path)]) == 0
    assert (result.path / "report.md").read_text() == first


def test_resume_skips_finished_cells_and_refuses_without_flag(settings, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_tiny(settings, out)
    with pytest.raises(ConfigError, match="already exists"):
        run_tiny(settings, out)
    from recbench_baselines.popularity import Popularity

    def exploding_fit(self, train, valid, ctx):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(Popularity, "fit", exploding_fit)
    result = run_tiny(settings, out, resume=True)
    assert (result.to_dataframe()["status"] == "ok").all()


class Exploding:
    id = "exploding"
    summary = "Raises during training"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options=None):
        pass

    max_length = None

    def fit(self, train: Sequences, valid, ctx: FitContext) -> None:
        raise FloatingPointError("loss became NaN at epoch 3")

    def score(self, batch):
        raise NotImplementedError


def test_a_failing_model_is_marked_and_the_run_goes_on(settings, tmp_path):
    registry = discover()

    @hookimpl
    def register_models(register):
        register(Exploding)

    registry.add_plugin(
        "exploding", types.SimpleNamespace(register_models=register_models), "recbench-tests", "0"
    )
    result = run_tiny(settings, tmp_path / "run", models=["exploding", "pop"], registry=registry)
    frame = result.to_dataframe()
    assert set(frame[frame["status"] == "failed"]["model"]) == {"exploding"}
    assert (frame[frame["model"] == "pop"]["status"] == "ok").all()
    report = (result.path / "report.md").read_text()
    assert "## Failures" in report and "loss became NaN at epoch 3" in report


def test_pop_ranks_by_training_popularity():
    from recbench_baselines.popularity import Popularity

    from recbench.data.batches import SequenceBatch

    train = Sequences(
        offsets=np.array([0, 3, 5, 6]),
        items=np.array([1, 2, 3, 2, 3, 3]),
        users=np.arange(3),
        n_items=4,
    )
    model = Popularity()
    ctx = FitContext(n_items=4, device=torch.device("cpu"), seed=0, item_counts=train.item_counts())
    model.fit(train, None, ctx)
    scores = model.score(
        SequenceBatch(items=torch.tensor([[1], [4]]), lengths=torch.tensor([1, 1]))
    )
    assert scores.shape == (2, 5)
    assert scores[0, 1:].argsort(descending=True).tolist() == [2, 1, 0, 3]  # items 3, 2, 1, 4


# -- the command line --------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_run_then_report(env, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys, "run", "--models", "pop", "--dataset", TINY, "--out", str(out), "--quiet"
    )
    assert code == 0
    assert "Report:" in stdout and (out / "report.md").is_file()
    code, stdout, _ = run_cli(capsys, "report", str(out), "-o", "-")
    assert code == 0 and stdout.startswith("# recbench report: synthetic:tiny")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "popp"], "unknown model 'popp': did you mean 'pop'?"),
        (
            ["--models", "pop", "--metrics", "recal"],
            "unknown metric 'recal': did you mean 'recall'?",
        ),
        (["--models", "pop", "--cutoffs", "0"], "cutoffs must be positive integers"),
        (
            ["--models", "pop", "-o", "eval.ties=random"],
            "option 'ties' of section 'eval' must be one of",
        ),
        (
            ["--models", "pop", "-o", "eval.order_check_users=-1"],
            "order_check_users must not be negative",
        ),
        (["--models", "pop", "-o", "eval.batch_size=-8"], "batch_size must not be negative"),
        (["--models", "pop", "--protocols", "half"], "unknown protocol 'half'"),
        (["--models", "pop", "-o", "pop.depth=3"], "unknown option 'depth' for model 'pop'"),
        (["--models", "pop", "-o", "lstm.depth=3"], "options given for 'lstm'"),
        (["--models", "pop", "-o", "split.test=9999"], "test"),
        (
            ["--models", "pop", "-o", "rating.test=0.3"],
            "options of section 'rating' do not apply to the ranking protocols half-split, "
            "iterative (in -o rating.*)",
        ),
        (["--models", "pop", "--seeds", "a,b"], "--seeds takes comma-separated integers"),
        (
            ["--models", "pop", "--device", "cuda:0"]
            if not torch.cuda.is_available()
            else ["--models", "pop", "--device", "tpu"],
            "device",
        ),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_code_2(env, tmp_path, capsys, args, message):
    code, _, stderr = run_cli(
        capsys, "run", "--dataset", TINY, "--out", str(tmp_path / "run"), "--quiet", *args
    )
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recbench: error: ")
    assert message in lines[0]
    assert "Traceback" not in stderr


def test_cli_refuses_existing_run_dir_and_unwritable_out(env, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(capsys, "run", "--models", "pop", "--dataset", TINY, "--out", str(out), "--quiet")[
            0
        ]
        == 0
    )
    code, _, stderr = run_cli(
        capsys, "run", "--models", "pop", "--dataset", TINY, "--out", str(out), "--quiet"
    )
    assert code == 2 and "already exists" in stderr and "--resume" in stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = run_cli(
        capsys,
        "run",
        "--models",
        "pop",
        "--dataset",
        TINY,
        "--out",
        str(blocker / "run"),
        "--quiet",
    )
    assert code == 2 and "cannot write the run directory" in stderr


def test_cli_list_shows_owner_and_version(env, capsys):
    code, stdout, _ = run_cli(capsys, "list", "models")
    assert code == 0
    assert "pop" in stdout and f"recbench {recbench.__version__}" in stdout


def test_disable_and_load_plugins_from_the_environment(env, monkeypatch):
    from recbench.config.settings import Settings

    monkeypatch.setenv("RECBENCH_DISABLE_PLUGINS", "someone-else, recbench")
    assert load_registry(Settings.from_environ()).all("model") == []
    monkeypatch.delenv("RECBENCH_DISABLE_PLUGINS")
    monkeypatch.setenv("RECBENCH_LOAD_PLUGINS", "someone-else")
    settings = Settings.from_environ()
    assert settings.loaded_plugins == ("someone-else",)
    assert load_registry(settings).get("model", "pop")  # recbench's own always load


@pytest.mark.parametrize(
    ("dataset", "content", "message"),
    [
        ("ml-99k", None, "unknown dataset 'ml-99k'"),
        ("file:{path}", "1,10,5,100\n2;11;4;101\n", "line 2"),
        ("file:{path}", "", "empty"),
        ("file:{path}", "a,10,5,100\nb,11,4,101\n", "line"),
    ],
)
def test_cli_bad_datasets_are_one_line_errors(env, tmp_path, capsys, dataset, content, message):
    path = tmp_path / "ratings.csv"
    if content is not None:
        path.write_text(content)
    code, _, stderr = run_cli(
        capsys,
        "run",
        "--models",
        "pop",
        "--dataset",
        dataset.format(path=path),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    )
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recbench: error: ")
    assert message in lines[0]
    assert not (tmp_path / "run").exists()  # after fixing the data, no --resume is needed


def test_a_resumed_run_keeps_the_earlier_commands_and_revisions(settings, tmp_path):

    first = run_tiny(settings, tmp_path / "run", command=["recbench", "run", "first"])
    environment = json.loads((first.path / "environment.json").read_text())
    environment["git"] = "0123abc"  # as if the first invocation ran at another revision
    (first.path / "environment.json").write_text(json.dumps(environment))
    run_tiny(settings, tmp_path / "run", resume=True, command=["recbench", "run", "second"])
    config = json.loads((first.path / "config.json").read_text())
    assert config["command"] == "recbench run second"
    assert config["earlier_commands"] == ["recbench run first"]
    environment = json.loads((first.path / "environment.json").read_text())
    assert environment["earlier_git"] == ["0123abc"]
    report = (first.path / "report.md").read_text()
    assert "Earlier invocation of this run directory: `recbench run first`" in report
    assert "earlier invocations of this run directory: git 0123abc" in report


def test_the_report_shows_the_options_a_run_changed(settings, tmp_path):
    result = run_tiny(
        settings,
        tmp_path / "run",
        models=["pop", "itemknn"],
        protocols=["last-item"],
        overrides=["itemknn.neighbors=7", "export.enabled=false"],
    )
    report = (result.path / "report.md").read_text()
    models = report.split("## Models")[1].split("\n## ")[0]
    assert "| itemknn | –      | neighbors=7" in models
    assert "| pop     | –      | defaults" in models
    unchanged = run_tiny(settings, tmp_path / "plain", protocols=["last-item"])
    assert "## Models" not in (unchanged.path / "report.md").read_text()


def test_the_report_shows_the_loss_of_a_model_with_default_options(settings, tmp_path):
    result = run_tiny(
        settings,
        tmp_path / "run",
        models=["pop", "lstm"],
        protocols=["last-item"],
        order_check="off",
        overrides=["export.enabled=false", "lstm.epochs=1"],
    )
    section = (result.path / "report.md").read_text().split("## Models")[1].split("\n## ")[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    assert ["lstm", "adaptive_hinge", "epochs=1"] in rows
    assert ["pop", "–", "defaults"] in rows


@pytest.mark.parametrize("protocol", ["last-item", "iterative"])
def test_the_validation_users_are_queried_under_the_validation_protocol(
    settings, tmp_path, monkeypatch, protocol
):
    from recbench_baselines.markov import Markov

    given = []
    fit = Markov.fit

    def spy_fit(self, train, valid, ctx):
        given.append(valid)
        return fit(self, train, valid, ctx)

    monkeypatch.setattr(Markov, "fit", spy_fit)
    recbench.run(
        models=["markov"],
        dataset="synthetic:tiny",
        protocols=["half-split"],
        overrides=["export.enabled=false", f"eval.validation_protocol={protocol}"],
        out=tmp_path / "run",
        settings=settings,
        quiet=True,
    )
    (valid,) = given
    assert valid.protocol == protocol
    assert f"on validation users ({protocol})" in (tmp_path / "run" / "report.md").read_text()
    lengths = valid.sequences.lengths
    assert len(valid) == (len(lengths) if protocol == "last-item" else int((lengths - 1).sum()))
