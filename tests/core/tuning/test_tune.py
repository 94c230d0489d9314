"""recbench tune: search spaces, bad input, validation users only, resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from recbench.cli import main
from recbench.config.search_space import Choice, FloatRange, IntRange, space_problem
from recbench.errors import PluginError
from recbench.registry import validate_class

DATA = "synthetic:tiny"


@dataclass(frozen=True)
class _Options:
    k: int = 10
    rate: float = 0.1
    kind: str = "a"


def _model(space: Any) -> type:
    class Spaced:
        id = "spaced"
        summary = "a model with a space"
        version = "1"
        Options = _Options
        search_space: ClassVar[Any] = space

        def fit(self, *args: Any) -> None: ...

        def score(self, *args: Any) -> None: ...

    return Spaced


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"nope": IntRange(1, 5)}, "'nope', which is not one of its options"),
        ({"k": IntRange(5, 5)}, "empty or inverted"),
        ({"k": IntRange(9, 2)}, "empty or inverted"),
        ({"rate": FloatRange(0.0, 1.0, log=True)}, "log range must be positive"),
        ({"k": FloatRange(0.5, 2.5)}, "not a value of the option's type"),
        ({"kind": Choice(())}, "the choice is empty"),
        ({"kind": Choice((1, 2))}, "not a value of the option's type"),
        ({"k": IntRange(1, 5, when={"kind": ("a",)})}, "not an earlier entry"),
    ],
)
def test_a_bad_space_is_refused_at_registration(space: Any, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        validate_class("model", _model(space))


def test_a_valid_space_with_a_condition_is_read_into_the_record() -> None:
    space = {"kind": Choice(("a", "b")), "k": IntRange(1, 50, log=True, when={"kind": ("b",)})}
    assert space_problem(space, _Options) is None
    assert validate_class("model", _model(space)).search_space == space


def test_every_builtin_ranking_model_declares_a_space() -> None:
    from recbench.api import load_registry
    from recbench.config.settings import Settings

    registry = load_registry(Settings.from_environ())
    missing = [
        i.id for i in registry.all("model") if i.task == "ranking" and i.search_space is None
    ]
    assert missing == []


def _tune(tmp_path: Path, *args: str) -> int:
    return main(["tune", "--dataset", DATA, "--out", str(tmp_path / "study"), "--quiet", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "pop", "--trials", "0"], "--trials must be at least 1"),
        (["--models", "pop", "--budget", "soon"], "cannot read the budget 'soon'"),
        (["--models", "pop", "--trials", "2", "--metric", "nope@10"], "unknown metric 'nope'"),
        (["--models", "pop", "--trials", "2", "--protocol", "nope"], "unknown protocol 'nope'"),
        (["--models", "nope", "--trials", "2"], "unknown model 'nope'"),
        (["--models", "pop", "-o", "pop.nope=1"], "unknown option 'nope'"),
        (
            ["--models", "mean", "--trials", "2", "--protocol", "rating"],
            "tuning serves the ranking",
        ),
    ],
)
def test_bad_tune_input_is_one_line_and_exit_2(tmp_path, capsys, args, message) -> None:
    assert _tune(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_model_without_a_space_is_refused_with_how_to_tune_it(tmp_path, capsys, monkeypatch):
    registry = _registry_without_space("markov")
    monkeypatch.setattr("recbench.api.load_registry", lambda settings: registry)
    assert _tune(tmp_path, "--models", "markov", "--trials", "1") == 2
    err = capsys.readouterr().err
    assert "declares no search space" in err and "--defaults-only markov" in err


def test_defaults_only_runs_a_model_with_a_space_once_with_its_defaults(tmp_path) -> None:
    args = ("--models", "markov,sr", "--defaults-only", "markov", "--trials", "3")
    assert _tune(tmp_path, *args) == 0
    report = (tmp_path / "study" / "report.md").read_text()
    assert "| markov | 1 |" in report and "| sr | 3 |" in report


def _registry_without_space(model: str):
    from dataclasses import replace

    from recbench.api import load_registry
    from recbench.config.settings import Settings

    registry = load_registry(Settings.from_environ())
    info = registry.plugins["model"][model]
    registry.plugins["model"][model] = replace(info, search_space=None)
    return registry


def test_a_tune_never_reads_test_users_and_writes_a_runnable_config(tmp_path, monkeypatch):
    """A spy on every sequence a model is trained on or scores: none is a test user's."""
    from recbench_baselines.markov import Markov

    from recbench.api import load_registry
    from recbench.config.settings import Settings
    from recbench.data.prepare import prepare_dataset
    from recbench.data.preprocess import PreprocessOptions
    from recbench.data.splits import SplitOptions, make_split
    from recbench.progress import Progress

    settings = Settings.from_environ()
    registry = load_registry(settings)
    data = prepare_dataset(DATA, {}, PreprocessOptions(), registry, settings, Progress.silent())
    test = make_split(data.sequences, SplitOptions(), 0).test
    test_rows = {tuple(test.sequence(r)) for r in range(len(test))}
    seen: list[tuple[int, ...]] = []
    fit, score = Markov.fit, Markov.score

    def spy_fit(self, train, valid, ctx):
        seen.extend(tuple(train.sequence(r)) for r in range(len(train)))
        seen.extend(tuple(valid.sequences.sequence(r)) for r in range(len(valid.sequences)))
        return fit(self, train, valid, ctx)

    def spy_score(self, batch):
        for row, length in zip(batch.items.tolist(), batch.lengths.tolist(), strict=True):
            seen.append(tuple(row[len(row) - length :]))
        return score(self, batch)

    monkeypatch.setattr(Markov, "fit", spy_fit)
    monkeypatch.setattr(Markov, "score", spy_score)
    out = tmp_path / "study"
    assert (
        main(
            [
                "tune",
                "--models",
                "pop,markov",
                "--dataset",
                DATA,
                "--trials",
                "3",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert seen
    for sequence in seen:
        assert sequence not in test_rows
        if len(sequence) >= 4:  # a query input: no prefix of a test user's sequence
            assert not any(row[: len(sequence)] == sequence for row in test_rows)
    tuned = (out / "tuned.toml").read_text()
    assert "[options.markov]" in tuned and "[tuning]" in tuned
    assert '[options.eval]\nvalidation_protocol = "iterative"' in tuned
    assert "[options.split]\nseed = 0" in tuned and "split_seed = 0" in tuned
    report = (out / "report.md").read_text()
    assert "## Budget sensitivity" in report and "| markov | 3 |" in report
    monkeypatch.setattr(Markov, "fit", fit)
    monkeypatch.setattr(Markov, "score", score)
    assert (
        main(
            [
                "run",
                "--config",
                str(out / "tuned.toml"),
                "--seeds",
                "0,1",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
                "--no-export",
            ]
        )
        == 0
    )
    run_report = (tmp_path / "run" / "report.md").read_text()
    assert "## Tuning" in run_report and "for the validation mrr@20" in run_report
    assert "no test user was a training or validation user of the tune" in run_report
    assert "every seed tests the users of the split of seed 0 and re-trains" in run_report
    assert "[../study/report.md](../study/report.md)" in run_report
    # Written elsewhere, the report links the study from there.
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "out" / "r.md")]) == 0
    assert "(../study/report.md)" in (tmp_path / "out" / "r.md").read_text()
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "r.md")]) == 0
    assert "(study/report.md)" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize(("prefixes", "one_pass"), [("history", True), ("window", False)])
def test_trials_validate_as_runs_do_in_one_pass(tmp_path, monkeypatch, prefixes, one_pass):
    """A model with score_prefixes is validated in one pass over the validation users'
    histories, as a run's evaluation does, unless eval.prefixes=window."""
    from recbench_rnn.base import RecurrentModel

    calls = {"score": 0, "score_prefixes": 0}
    score, score_prefixes = RecurrentModel.score, RecurrentModel.score_prefixes

    def count_score(self, batch):
        calls["score"] += 1
        return score(self, batch)

    def count_score_prefixes(self, *args, **kwargs):
        calls["score_prefixes"] += 1
        return score_prefixes(self, *args, **kwargs)

    monkeypatch.setattr(RecurrentModel, "score", count_score)
    monkeypatch.setattr(RecurrentModel, "score_prefixes", count_score_prefixes)
    fixed = ["-o", "lstm.epochs=1", "-o", f"eval.prefixes={prefixes}"]
    assert _tune(tmp_path, "--models", "lstm", "--trials", "1", *fixed) == 0
    assert (calls["score_prefixes"] > 0) == one_pass
    assert (calls["score"] > 0) == (not one_pass)


def test_a_study_of_another_seed_is_refused_and_a_locked_one_too(tmp_path, capsys) -> None:
    from recbench.tuning.study import lock

    assert _tune(tmp_path, "--models", "pop", "--trials", "1") == 0
    journal = (tmp_path / "study" / "studies.journal").read_bytes()
    assert _tune(tmp_path, "--models", "pop", "--trials", "1", "--seed", "1") == 2
    assert "belongs to another tune (different seed)" in capsys.readouterr().err
    assert (tmp_path / "study" / "studies.journal").read_bytes() == journal  # untouched
    handle = lock(tmp_path / "study")
    try:
        assert _tune(tmp_path, "--models", "pop", "--trials", "1") == 2
        assert "locked by another recbench tune" in capsys.readouterr().err
    finally:
        handle.close()


def test_options_trials_do_not_read_are_not_part_of_a_study(tmp_path, capsys) -> None:
    assert _tune(tmp_path, "--models", "markov", "--trials", "1") == 0
    sampled = ("-o", "eval.order_check_users=5", "-o", "eval.validation_protocol=half-split")
    assert _tune(tmp_path, "--models", "markov", "--trials", "2", *sampled) == 0
    assert _tune(tmp_path, "--models", "markov", "--trials", "3", "-o", "eval.ties=optimistic") == 2
    assert "belongs to another tune (different eval)" in capsys.readouterr().err


def test_a_study_is_continued_only_with_the_same_pruning(tmp_path, capsys) -> None:
    assert _tune(tmp_path, "--models", "markov", "--trials", "1", "--no-pruning") == 0
    assert "pruning: none" in (tmp_path / "study" / "report.md").read_text()
    assert _tune(tmp_path, "--models", "markov", "--trials", "2") == 2
    assert "belongs to another tune (different pruning)" in capsys.readouterr().err
    assert _tune(tmp_path, "--models", "markov", "--trials", "2", "--no-pruning") == 0


def test_a_corrupted_study_storage_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "studies.journal").write_text("{not json\n")
    assert _tune(tmp_path, "--models", "pop", "--trials", "1") == 2
    assert "damaged" in capsys.readouterr().err


def test_a_tune_killed_with_kill_9_continues_the_same_study(tmp_path, env) -> None:
    out = tmp_path / "study"
    command = _lstm_tune_command(out, "--trials", "4", "-o", "lstm.epochs=2")
    command += ["-o", "lstm.embedding_dim=16", "-o", "lstm.batch_size=64"]
    tune = subprocess.Popen(command)
    deadline = time.time() + 240
    # The study's wall time is recorded just after a trial is stored: wait for both, or a
    # kill between the two leaves a finished trial and no recorded time.
    while time.time() < deadline and not _a_trial_and_its_time_are_stored(out):
        time.sleep(0.3)
    os.kill(tune.pid, signal.SIGKILL)
    tune.wait()
    first = _trials(out)
    assert any(t.state.is_finished() for t in first)
    assert sum(t.state.is_finished() for t in first) < 4
    killed_wall = _study(out).user_attrs["wall_seconds"]  # kept up to its last trial
    assert killed_wall > 0
    subprocess.run(command, check=True, timeout=300)
    after = _trials(out)
    assert [t.number for t in after][: len(first)] == [t.number for t in first]
    finished = [t for t in after if not t.user_attrs.get("interrupted")]
    assert len([t for t in finished if t.state.is_finished()]) == 4
    assert (out / "tuned.toml").is_file()
    assert _study(out).user_attrs["wall_seconds"] > killed_wall


def test_a_tune_stopped_with_sigterm_writes_its_outputs(tmp_path, env) -> None:
    """``kill PID`` stops a tune as Ctrl-C does, also when SIGINT is ignored (a command
    started with ``&`` in a non-interactive shell)."""
    out = tmp_path / "study"
    command = _lstm_tune_command(out, "--trials", "40", "-o", "lstm.epochs=2")
    command += ["-o", "lstm.embedding_dim=16", "-o", "lstm.batch_size=64"]
    tune = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    deadline = time.time() + 240
    while time.time() < deadline and not any(t.state.is_finished() for t in _trials(out)):
        time.sleep(0.3)
    tune.send_signal(signal.SIGINT)  # ignored, as in a background job
    time.sleep(0.5)
    assert tune.poll() is None
    tune.send_signal(signal.SIGTERM)
    _, err = tune.communicate(timeout=120)
    assert tune.returncode == 130, err
    assert "interrupted; finished trials are kept" in err and "Traceback" not in err
    assert 1 <= sum(t.state.is_finished() for t in _trials(out)) < 40
    assert "**Unfinished studies: lstm" in (out / "report.md").read_text()
    assert (out / "tuned.toml").is_file()


def _a_trial_and_its_time_are_stored(out: Path) -> bool:
    trials = _trials(out)
    return any(t.state.is_finished() for t in trials) and "wall_seconds" in _study(out).user_attrs


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _lstm_tune_command(out: Path, *args: str) -> list[str]:
    """``recbench tune`` of lstm on the test data into ``out``, as a separate process."""
    return [
        sys.executable, "-m", "recbench.cli", "tune", "--models", "lstm", "--dataset", DATA,
        "--out", str(out), "--quiet", *args,
    ]  # fmt: skip


def _study(out: Path) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "studies.journal")))
    return optuna.load_study(study_name="lstm", storage=storage)


def _trials(out: Path) -> list[Any]:
    if not (out / "studies.journal").exists():
        return []
    try:
        return _study(out).trials
    except KeyError:
        return []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_parallel_tune_leaves_no_worker_running(tmp_path, env) -> None:
    out = tmp_path / "study"
    command = _lstm_tune_command(out, "--trials", "50", "--jobs", "2", "--no-pruning")
    command += ["-o", "lstm.epochs=50", "-o", "lstm.patience=50"]
    tune = subprocess.Popen(command)
    deadline = time.time() + 240
    while time.time() < deadline and not any(t.state.name == "RUNNING" for t in _trials(out)):
        time.sleep(0.3)
    workers = _children(tune.pid)
    assert workers, "the tune started no worker process"
    os.kill(tune.pid, signal.SIGKILL)
    tune.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _ratings_file(folder: Path) -> Path:
    """A small ratings file (user, item, rating, time) with a next-item pattern."""
    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, 121):
        item = int(rng.integers(1, 40))
        for step in range(12):
            lines.append(f"{user},{item},4,{1000 * user + step}")
            item = item % 40 + 1 if rng.random() < 0.8 else int(rng.integers(1, 41))
    folder.mkdir(parents=True)
    path = folder / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _file_tune(out: Path, trials: int) -> int:
    data = ["--dataset", "file:ratings.csv"]
    return main(["tune", *data, "--models", "markov", "--trials", str(trials), "--out", str(out)])


def _markov_study(out: Path) -> Any:
    import optuna

    from recbench.tuning.study import open_storage, storage_url

    return optuna.load_study(study_name="markov", storage=open_storage(storage_url(out, None)))


def test_a_study_continues_on_a_copy_of_its_data_elsewhere(
    tmp_path, env, monkeypatch, capsys
) -> None:
    """A study is keyed by the prepared content, not by where or when its files were
    read: a copy of the data on another machine (another folder, new times) continues it,
    and a study recorded with the files' key by an older recbench is upgraded."""
    from recbench.tuning import tuner

    out = tmp_path / "study"
    monkeypatch.setenv("RECBENCH_DATA", str(_ratings_file(tmp_path / "here").parent))
    by_content = tuner._setup

    def by_files(plan, info, prepared):  # type: ignore[no-untyped-def]
        return {**by_content(plan, info, prepared), "data_key": prepared.source_key}

    monkeypatch.setattr(tuner, "_setup", by_files)
    assert _file_tune(out, 1) == 0
    files_key = _markov_study(out).user_attrs["setup"]["data_key"]
    monkeypatch.setattr(tuner, "_setup", by_content)
    assert _file_tune(out, 2) == 0  # the older study, continued and upgraded
    content_key = _markov_study(out).user_attrs["setup"]["data_key"]
    assert content_key != files_key
    copy = _ratings_file(tmp_path / "there")
    monkeypatch.setenv("RECBENCH_DATA", str(copy.parent))
    assert _file_tune(out, 3) == 0  # the same events read elsewhere
    study = _markov_study(out)
    assert len(study.trials) == 3 and study.user_attrs["setup"]["data_key"] == content_key
    copy.write_text(copy.read_text().replace(",4,", ",5,", 1).replace("\n1,", "\n2,", 1))
    assert _file_tune(out, 4) == 2  # other events: another tune, refused
    assert "belongs to another tune (different data_key)" in capsys.readouterr().err


def test_a_stopped_tune_writes_what_it_finished_and_says_what_is_unfinished(
    tmp_path, monkeypatch, capsys
) -> None:
    """Ctrl-C in markov's second trial: tuned.toml and report.md are written with the
    finished trials and name the unfinished studies (the stopped trial does not count, sr
    was never started); the run's report does not claim an equal budget; the same
    command finishes the studies and the outputs no longer mention them."""
    import tomllib
    from recbench_baselines.markov import Markov

    fit, fits = Markov.fit, {"n": 0}

    def stopped_fit(self, train, valid, ctx):
        fits["n"] += 1
        if fits["n"] == 2:
            raise KeyboardInterrupt
        return fit(self, train, valid, ctx)

    monkeypatch.setattr(Markov, "fit", stopped_fit)
    args = ("--models", "pop,markov,sr", "--defaults-only", "pop", "--trials", "3")
    assert _tune(tmp_path, *args) == 130
    assert "interrupted; finished trials are kept and tuned.toml" in capsys.readouterr().err
    study = tmp_path / "study"
    tuned = tomllib.loads((study / "tuned.toml").read_text())
    assert tuned["tuning"]["unfinished"] == {"markov": "1 of 3 trials", "sr": "0 of 3 trials"}
    assert tuned["tuning"]["models"] == ["pop", "markov"] and "markov" in tuned["options"]
    report = (study / "report.md").read_text()
    assert "**Unfinished studies: markov (1 of 3 trials), sr (0 of 3 trials).**" in report
    run = ["run", "--config", str(study / "tuned.toml"), "--protocols", "last-item"]
    run += ["--no-export", "--order-check", "off", "--quiet"]
    assert main([*run, "--out", str(tmp_path / "run")]) == 0
    section = (tmp_path / "run" / "report.md").read_text().split("## Tuning")[1]
    assert "except for the unfinished studies of markov (1 of 3 trials)" in section
    # Another split seed than the tune's: its test users may have been tuned on.
    split = ["-o", "split.seed=3", "--seeds", "0,1"]
    assert main([*run, "--models", "pop", *split, "--out", str(tmp_path / "pop")]) == 0
    section = (tmp_path / "pop" / "report.md").read_text().split("## Tuning")[1]
    assert "The options of pop were tuned by `recbench tune` with the same budget each" in section
    assert "**This run splits the users with seed 3**, so some of its test users" in section
    assert _tune(tmp_path, *args) == 0
    assert _markov_study(study).user_attrs["budget"] == {"trials": 3, "seconds": None}
    assert len([t for t in _markov_study(study).trials if t.state.name == "COMPLETE"]) == 3
    assert "unfinished" not in (study / "tuned.toml").read_text()
    assert "Unfinished" not in (study / "report.md").read_text()
