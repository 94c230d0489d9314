"""Nothing lost: damaged cells, a full disk, a resume with another configuration, and the
run directory of a run that failed before it trained anything."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest

import recbench
from recbench import cli
from recbench.config.settings import Settings
from recbench.data.files import atomic_write
from recbench.errors import ConfigError, DataError
from recbench.results import RunDirectory

TINY = "synthetic:tiny"
CELL = "synthetic-tiny__pop__last-item__seed0"
RUN = ["run", "--models", "pop", "--dataset", TINY, "--protocols", "last-item", "--no-export"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def means(out: Path) -> dict[str, dict[str, float]]:
    return {
        f"{c['model_label']}/{c['protocol']}/{c['seed']}": {
            name: entry["mean"] for name, entry in c["metrics"].items()
        }
        for c in RunDirectory.open(out).cells()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of pop (one cell), made through the command line."""
    root = tmp_path_factory.mktemp("finished")
    settings = {"RECBENCH_DATA": root / "data", "RECBENCH_CACHE": root / "cache"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, str(value))
        patch.setenv("RECBENCH_OFFLINE", "1")
        assert cli.main([*RUN, "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def _truncated_arrays(cells: Path) -> None:
    path = cells / f"{CELL}.npz"
    path.write_bytes(path.read_bytes()[:40])


def _truncated_json(cells: Path) -> None:
    path = cells / f"{CELL}.json"
    path.write_text(path.read_text()[:100])


def _empty_record(cells: Path) -> None:
    (cells / f"{CELL}.json").write_text("{}")


def _no_metrics(cells: Path) -> None:
    path = cells / f"{CELL}.json"
    record = json.loads(path.read_text())
    del record["metrics"], record["record_sha256"]
    path.write_text(json.dumps(record))


def _deleted_arrays(cells: Path) -> None:
    (cells / f"{CELL}.npz").unlink()


def _edited_metric(cells: Path) -> None:
    path = cells / f"{CELL}.json"
    record = json.loads(path.read_text())
    record["metrics"]["sps@10"]["mean"] = 0.99
    path.write_text(json.dumps(record))


def _old_cell_with_truncated_arrays(cells: Path) -> None:
    path = cells / f"{CELL}.json"
    record = json.loads(path.read_text())
    for field in ("record_sha256", "per_query_bytes", "per_query_sha256"):
        del record[field]
    path.write_text(json.dumps(record))
    _truncated_arrays(cells)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated_arrays, f"{CELL}.npz has 40 bytes"),
        (_truncated_json, "truncated or not valid JSON"),
        (_empty_record, "not a cell record"),
        (_no_metrics, "no metrics"),
        (_deleted_arrays, f"its per-query file {CELL}.npz is missing"),
        (_edited_metric, "its contents do not match the recorded hash"),
        (_old_cell_with_truncated_arrays, "is unreadable: BadZipFile"),
    ],
)
def test_a_damaged_cell_is_named_by_the_report_and_recomputed_by_resume(
    env, finished_run, tmp_path, capsys, monkeypatch, damage, reason
):
    monkeypatch.setenv("COLUMNS", "400")
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = means(out)
    damage(out / "cells")

    code, _, stderr = run_cli(capsys, "report", str(out))
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith(f"recbench: error: cell {CELL} is damaged (")
    assert reason in lines[0]
    assert lines[0].endswith(f"{' '.join(RUN)} --out {finished_run} --quiet --resume`")

    code, _, stderr = run_cli(capsys, *RUN, "--out", str(out), "--resume")
    assert code == 0
    [line] = [line for line in stderr.splitlines() if "was damaged" in line]
    assert line.startswith(f"cell {CELL} was damaged (") and line.endswith("): recomputed")
    assert reason in line
    assert means(out) == before
    assert run_cli(capsys, "report", str(out))[0] == 0


def test_a_cell_written_before_hashes_were_recorded_is_read_as_before(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    path = out / "cells" / f"{CELL}.json"
    record = json.loads(path.read_text())
    for field in ("record_sha256", "per_query_bytes", "per_query_sha256"):
        del record[field]
    path.write_text(json.dumps(record))
    [cell] = RunDirectory.open(out).cells()
    assert cell["metrics"] == record["metrics"]
    assert len(RunDirectory.open(out).per_query(cell)["sps@10"]) == cell["n_queries"]


def test_a_full_disk_stops_the_run_in_one_line_and_marks_no_model_failed(
    env, tmp_path, capsys, monkeypatch
):
    import recbench.results

    out = tmp_path / "run"
    args = [*RUN[:2], "pop,itemknn", *RUN[3:], "--out", str(out), "--quiet"]
    writer = recbench.results.write_bytes_atomic

    def full_for_itemknn(path: Path, data: bytes) -> None:
        if "itemknn" not in path.name:
            return writer(path, data)

        def disk_full(sink):
            sink.write(data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        atomic_write(path, disk_full, size=len(data))

    monkeypatch.setattr(recbench.results, "write_bytes_atomic", full_for_itemknn)
    code, _, stderr = run_cli(capsys, *args)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith("recbench: error: no space left to write synthetic-tiny__itemknn")
    assert f"(in {out / 'cells'}): free at least " in lines[0]
    assert lines[0].endswith("free now), then rerun with --resume")
    assert [p.name for p in sorted((out / "cells").iterdir())] == [f"{CELL}.json", f"{CELL}.npz"]
    pop_cell = (out / "cells" / f"{CELL}.json").read_bytes()

    monkeypatch.setattr(recbench.results, "write_bytes_atomic", writer)
    assert run_cli(capsys, *args, "--resume")[0] == 0
    assert (out / "cells" / f"{CELL}.json").read_bytes() == pop_cell  # not touched
    assert {c["model_label"]: c["status"] for c in RunDirectory.open(out).cells()} == {
        "pop": "ok",
        "itemknn": "ok",
    }


def run_tiny(settings, out: Path, **kwargs):
    kwargs.setdefault("models", ["pop"])
    kwargs.setdefault("protocols", ["last-item"])
    return recbench.run(dataset=TINY, out=out, settings=settings, **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"overrides": ["split.test=0.3"]}, "(split.test: 0.1 -> 0.3)"),
        ({"seeds": [1]}, "(seed 0 removed)"),
        ({"overrides": ["itemknn.neighbors=7"]}, "(itemknn.options.neighbors: 100 -> 7)"),
        ({"protocols": ["half-split"]}, "(protocols: last-item -> half-split)"),
    ],
)
def test_a_resume_with_another_configuration_is_refused(settings, tmp_path, change, message):
    out = tmp_path / "run"
    run_tiny(settings, out, models=["itemknn"], seeds=[0])
    stored = (out / "config.json").read_bytes(), means(out)
    with pytest.raises(ConfigError) as caught:
        run_tiny(settings, out, resume=True, **{"models": ["itemknn"], "seeds": [0], **change})
    assert caught.value.one_line().startswith(f"--resume with another configuration {message}")
    assert "choose another --out" in caught.value.one_line()
    assert ((out / "config.json").read_bytes(), means(out)) == stored


def test_a_resume_may_add_models_and_seeds_and_the_report_shows_them_all(settings, tmp_path):
    out = tmp_path / "run"
    run_tiny(settings, out, seeds=[0])
    result = run_tiny(settings, out, resume=True, models=["itemknn"], seeds=[0, 1])
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model_order"] == ["pop", "itemknn"] and config["seeds"] == [0, 1]
    assert set(config["models"]) == {"pop", "itemknn"}
    assert set(means(out)) == {"pop/last-item/0", "itemknn/last-item/0", "itemknn/last-item/1"}
    results = (out / "report.md").read_text().split("## Results")[1].split("\n## ")[0]
    assert "| pop " in results and "| itemknn " in results
    assert result.model_labels() == ["pop", "itemknn"]


def test_a_run_that_fails_in_the_split_leaves_no_run_directory(settings, tmp_path, monkeypatch):
    from recbench.tasks.ranking.task import RankingTask

    def no_split(self, run, seed, fold=None):
        raise DataError("too few users to split")

    monkeypatch.setattr(RankingTask, "split", no_split)
    out = tmp_path / "run"
    with pytest.raises(DataError, match="too few users"):
        run_tiny(settings, out)
    assert not out.exists()
    out.mkdir()  # a folder the run did not create is left where it was
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="too few users"):
        run_tiny(settings, out, resume=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_opening_a_run_for_writing_removes_stale_temporary_files(settings, tmp_path):
    out = tmp_path / "run"
    run_tiny(settings, out)
    stale = out / "cells" / f".{CELL}.json.x1y2z3.tmp"
    stale.write_text('{"half": ')
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    run_tiny(settings, out, resume=True)
    assert not stale.exists()


def _ratings(folder: Path, users: int = 60) -> Path:
    folder.mkdir(parents=True)
    path = folder / "ratings.csv"
    rows = (
        f"{u},{(u * 7 + s) % 25 + 1},4,{100 * u + s}" for u in range(1, users + 1) for s in range(6)
    )
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_run_resumes_on_a_copy_of_its_data_elsewhere_and_refuses_other_data(settings, tmp_path):
    """Cells are keyed by the prepared content: the same file in another folder (another
    machine) resumes without recomputing a cell; a file with other events is refused."""
    out = tmp_path / "run"

    def run_file(folder: Path) -> None:
        here = Settings(data_root=folder, cache_root=settings.cache_root, offline=True)
        recbench.run(
            dataset="file:ratings.csv",
            models=["pop"],
            protocols=["last-item"],
            seeds=[0],
            out=out,
            settings=here,
            resume=out.exists(),
        )

    run_file(_ratings(tmp_path / "here").parent)
    cell = next((out / "cells").glob("*.json"))
    before = cell.read_bytes()
    cell_time = cell.stat().st_mtime_ns
    run_file(_ratings(tmp_path / "there").parent)
    assert cell.read_bytes() == before and cell.stat().st_mtime_ns == cell_time
    other = _ratings(tmp_path / "other", users=61).parent
    with pytest.raises(ConfigError, match="--resume on other data"):
        run_file(other)
    assert cell.read_bytes() == before
