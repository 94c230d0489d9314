"""Latency: the timing harness, the ONNX Runtime providers, the records a run writes,
the ``recbench export`` command, ``--no-export`` and the report's latency section."""

from __future__ import annotations

import json
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import recbench
from recbench import cli, hookimpl
from recbench.data.batches import SequenceBatch
from recbench.registry import discover
from recbench.results import write_json
from recbench.serve import export, latency
from recbench.serve.export import ExportOptions, RuntimeUnavailable, onnxruntime_session

TINY = "synthetic:tiny"
#: Cheap training and timing for tiny models.
TINY_LSTM = ["lstm.epochs=1", "lstm.embedding_dim=8", "lstm.batch_size=32"]
QUICK = [
    "export.repeats=60",
    "export.batch_repeats=5",
    "export.batch_size=16",
    "export.warmup=2",
    "export.max_seconds=0.1",
]
TIMING_FIELDS = {"repeats", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}
MEASUREMENT_FIELDS = {
    "runtime",
    "unit",
    "device",
    "provider",
    "threads",
    "parity",
    "batch1",
    "batch",
    "queries_per_second",
    "load_average",
    "other_cpu_share",
}
RECORD_FIELDS = {
    "schema_version",
    "model",
    "model_label",
    "dataset",
    "seed",
    "n_items",
    "kind",
    "status",
    "error",
    "export",
    "measurements",
    "skipped",
    "settings",
    "environment",
    "created",
}


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the harness -------------------------------------------------------------------------


def test_time_calls_gives_percentiles_of_single_calls():
    calls = []

    def call():
        calls.append(1)
        time.sleep(0.001 if len(calls) % 10 else 0.004)  # every 10th call is slow

    timing = latency.time_calls(call, warmup=3, repeats=40, min_repeats=5, max_seconds=10)
    assert len(calls) == 43 and timing.repeats == 40
    assert 1.0 <= timing.p50_ms < 3.0 <= timing.p99_ms
    assert timing.min_ms <= timing.p50_ms <= timing.p95_ms <= timing.p99_ms <= timing.max_ms
    assert set(timing.as_dict()) == TIMING_FIELDS


def test_time_calls_stops_at_its_time_budget_after_the_minimum():
    timing = latency.time_calls(
        lambda: time.sleep(0.002), warmup=0, repeats=10_000, min_repeats=7, max_seconds=0.001
    )
    assert timing.repeats == 7


def test_torch_threads_are_set_and_restored():
    before = torch.get_num_threads()
    with latency.torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


# -- ONNX Runtime providers --------------------------------------------------------------


class FakeSession:
    """An InferenceSession that always falls back to the CPU, as onnxruntime-gpu does
    where CUDA cannot load."""

    created: ClassVar[list[list[str]]] = []

    def __init__(self, path, sess_options=None, providers=()):
        FakeSession.created.append(list(providers))

    def get_providers(self):
        return ["CPUExecutionProvider"]


@pytest.fixture
def fake_ort(monkeypatch):
    import onnxruntime

    FakeSession.created = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda *a, **k: None, raising=False)
    return FakeSession


def test_cuda_is_never_asked_for_without_a_gpu(fake_ort, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeUnavailable, match="no CUDA device"):
        onnxruntime_session(tmp_path / "m.onnx", device="cuda", threads=1)
    assert fake_ort.created == []  # listed as available, but never requested
    _, providers = onnxruntime_session(tmp_path / "m.onnx", device="cpu", threads=1)
    assert providers == ["CPUExecutionProvider"]
    assert fake_ort.created == [["CPUExecutionProvider"]]


def test_providers_come_from_the_session_not_from_the_available_list(
    fake_ort, monkeypatch, tmp_path
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeUnavailable, match="could not use CUDAExecutionProvider"):
        onnxruntime_session(tmp_path / "m.onnx", device="cuda", threads=1)
    assert fake_ort.created == [["CUDAExecutionProvider", "CPUExecutionProvider"]]


def test_two_onnxruntime_builds_installed_together_are_reported(monkeypatch):
    versions = {
        "onnxruntime": "1.32.0",
        "onnxruntime-gpu": "1.31.1",
        "onnx": "1",
        "onnxscript": "1",
    }

    def version(name):
        if name not in versions:
            raise export.importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(export.importlib.metadata, "version", version)
    found = export.onnx_versions()
    assert found["onnxruntime_distributions"] == {
        "onnxruntime": "1.32.0",
        "onnxruntime-gpu": "1.31.1",
    }
    assert "overwrite each other" in found["warning"]


# -- step measurements -------------------------------------------------------------------


class ToyCell(nn.Module):
    """A GRU cell scoring 30 items."""

    state_names = ("h",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.items = nn.Embedding(31, 6)
        self.gru = nn.GRUCell(6, 6)
        self.out = nn.Linear(6, 31)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, 6),)

    def forward(self, item_ids, h):
        h = self.gru(self.items(item_ids), h)
        return self.out(h), h


def test_step_measurements_have_the_documented_fields(tmp_path):
    cell = ToyCell()
    options = ExportOptions(
        runtimes=("torch", "onnxruntime", "torchscript"),
        threads=(1,),
        warmup=1,
        repeats=60,
        batch_repeats=5,
        batch_size=8,
        max_seconds=0.05,
    )
    result = export.export_and_check(cell, tmp_path / "toy", top_k=4, options=options)
    skipped = []
    measurements = latency.measure_step(
        cell, result.exported, options, onnx_parity=result.parity, skipped=skipped
    )
    # on a CUDA machine measure_step adds CUDA targets (threads None); they are checked
    # for their fields here and the CPU ones for everything
    on_cpu = [m for m in measurements if m["device"] == "cpu"]
    on_cuda = [m for m in measurements if m["device"] == "cuda"]
    assert len(on_cpu) + len(on_cuda) == len(measurements)
    if not torch.cuda.is_available():
        assert on_cuda == []
    for m in on_cuda:
        assert set(m) == MEASUREMENT_FIELDS and m["unit"] == "step" and m["threads"] is None
    by_runtime = {m["runtime"]: m for m in on_cpu}
    assert set(by_runtime) == {"torch", "onnxruntime", "torchscript"}
    assert len(on_cpu) == 3
    for m in on_cpu:
        assert set(m) == MEASUREMENT_FIELDS
        assert m["unit"] == "step" and m["threads"] == 1
        assert set(m["batch1"]) == TIMING_FIELDS and m["batch1"]["repeats"] >= 50
        assert m["batch"]["batch_size"] == 8 and m["batch"]["repeats"] >= 5
        assert m["queries_per_second"] == pytest.approx(8 / (m["batch"]["p50_ms"] / 1e3))
        assert set(m["load_average"]) == {"before", "after"}
        assert m["other_cpu_share"] is None or 0.0 <= m["other_cpu_share"] <= 1.0
    assert by_runtime["torch"]["parity"] == "reference"
    assert by_runtime["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert by_runtime["onnxruntime"]["parity"]["passed"]
    assert by_runtime["torchscript"]["parity"]["max_abs_diff"] < 1e-5
    if not torch.cuda.is_available():
        assert skipped == []  # no CUDA: nothing is attempted on it


def test_bound_onnxruntime_calls_give_the_outputs_of_plain_calls(tmp_path):
    exported = export.export_cell(ToyCell(), tmp_path / "toy", top_k=3)
    session, _ = onnxruntime_session(exported.graphs["cell"], device="cpu", threads=1)
    feeds = {"item_ids": np.array([3, 4], dtype=np.int64), "h": np.ones((2, 6), np.float32)}
    call, binding = latency.ort_bound_call(session, feeds, exported.output_names, "cpu")
    call()
    bound = binding.copy_outputs_to_cpu()
    for got, want in zip(bound, session.run(None, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


# -- runs --------------------------------------------------------------------------------


def run_tiny(settings, out: Path, models=("pop", "lstm"), overrides=(), **kwargs):
    return recbench.run(
        models=list(models),
        dataset=TINY,
        protocols=["last-item"],
        out=out,
        settings=settings,
        overrides=[*QUICK, *(TINY_LSTM if "lstm" in models else []), *overrides],
        **kwargs,
    )


def test_a_run_exports_and_times_every_model_and_reports_it(settings, tmp_path):
    result = run_tiny(settings, tmp_path / "run")
    records = {r["model_label"]: r for r in latency.read_records(result.path)}
    assert set(records) == {"pop", "lstm"}
    for record in records.values():
        assert set(RECORD_FIELDS) <= set(record)
        assert record["schema_version"] == latency.SCHEMA_VERSION and record["status"] == "ok"
        assert record["dataset"] == TINY and record["seed"] == 0
        env = record["environment"]
        for key in ("torch", "onnxruntime", "torch_threads", "load_average", "cpu"):
            assert key in env
        assert record["settings"]["batch_size"] == 16
    pop, lstm = records["pop"], records["lstm"]
    assert pop["kind"] == "baseline" and pop["export"] is None
    assert [m["runtime"] for m in pop["measurements"]] == ["score"]
    assert lstm["kind"] == "neural" and lstm["export"]["status"] == "ok"
    assert lstm["export"]["parity"]["passed"]
    assert lstm["export"]["top_k"] == 20  # the largest cutoff
    for name in ("cell", "cell_data", "topk", "topk_data"):
        assert (result.path / lstm["export"]["files"][name]).is_file()
    assert lstm["export"]["files"]["cell"] == "export/lstm__seed0/cell.onnx"
    assert {(m["runtime"], m["unit"]) for m in lstm["measurements"]} == {
        ("torch", "step"),
        ("onnxruntime", "step"),
        ("score", "score"),
    }
    report = (result.path / "report.md").read_text()
    assert "## Latency" in report and "### Accuracy vs latency" in report
    assert "| lstm    | step   | ONNX Runtime" in report
    assert "| pop     | score  | score() + top-k" in report
    assert pop["measurements"][0]["top_k"] == 20  # the ranking evaluation does
    try:
        import matplotlib  # noqa: F401

        assert (result.path / "figures" / "accuracy-latency.png").is_file()
        assert "![mrr@20 against latency](figures/accuracy-latency.png)" in report
    except ImportError:
        pass
    # nothing already recorded is redone on resume
    before = (result.path / "latency" / "lstm__seed0.json").read_text()
    run_tiny(settings, tmp_path / "run", resume=True)
    assert (result.path / "latency" / "lstm__seed0.json").read_text() == before


@dataclass(frozen=True)
class _NoOptions:
    pass


class Drifting:
    """A neural model whose cell computes something else while it is being exported:
    its ONNX graph cannot match it."""

    id = "drifting"
    summary = "A cell that disagrees with its ONNX graph"
    version = "1"
    Options = _NoOptions
    max_length = 5

    def __init__(self, options=None):
        self.cell_module = ExportTimeShift()

    def fit(self, train, valid, ctx):
        self.n_items = train.n_items

    def score(self, batch):
        return torch.zeros(batch.items.shape[0], self.n_items + 1)

    def cell(self):
        return self.cell_module


class ExportTimeShift(ToyCell):
    def forward(self, item_ids, h):
        scores, h = super().forward(item_ids, h)
        if torch.compiler.is_exporting():
            scores = scores + 1.0
        return scores, h


def test_a_cells_serving_note_reaches_its_record_and_the_report(settings, tmp_path, monkeypatch):
    from recbench_rnn.lstm import LSTMCell

    monkeypatch.setattr(LSTMCell, "serving_note", "reads one item per step", raising=False)
    result = run_tiny(settings, tmp_path / "run")
    records = {r["model_label"]: r for r in latency.read_records(result.path)}
    assert records["lstm"]["serving_note"] == "reads one item per step"
    assert "serving_note" not in records["pop"]
    assert "- `lstm` step: reads one item per step" in (result.path / "report.md").read_text()


def test_a_cell_that_fails_parity_is_marked_and_not_timed(settings, tmp_path):
    registry = discover()

    @hookimpl
    def register_models(register):
        register(Drifting)

    registry.add_plugin(
        "drifting", types.SimpleNamespace(register_models=register_models), "recbench-tests", "0"
    )
    result = run_tiny(settings, tmp_path / "run", models=("drifting",), registry=registry)
    (record,) = latency.read_records(result.path)
    assert record["status"] == "failed" and "parity-failed" in record["error"]
    assert record["export"]["status"] == "parity-failed"
    assert not record["export"]["parity"]["passed"]
    assert record["export"]["parity"]["max_abs_diff_scores"] == pytest.approx(1.0, rel=1e-3)
    assert [m["unit"] for m in record["measurements"]] == ["score"]  # no step latency
    report = (result.path / "report.md").read_text()
    assert "| drifting | step   | ONNX export" in report and "FAILED: parity-failed" in report
    assert (result.to_dataframe()["status"] == "ok").all()  # the accuracy cells are kept


def test_cli_no_export_then_export(settings, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RECBENCH_DATA", str(settings.data_root))
    monkeypatch.setenv("RECBENCH_CACHE", str(settings.cache_root))
    monkeypatch.setenv("RECBENCH_OFFLINE", "1")
    out = tmp_path / "run"
    options = [arg for o in (*QUICK, *TINY_LSTM) for arg in ("-o", o)]
    args = ["run", "--models", "pop,lstm", "--dataset", TINY, "--protocols", "last-item"]
    assert cli.main([*args, "--out", str(out), "--quiet", "--no-export", *options]) == 0
    assert not (out / "latency").exists() and not (out / "export").exists()
    assert "## Latency" not in (out / "report.md").read_text()
    config = (out / "config.json").read_text()
    assert json.loads(config)["config"]["export"]["enabled"] is False
    cells = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}

    assert cli.main(["export", str(out), "--models", "lstm", "--quiet"]) == 0
    assert [r["model_label"] for r in latency.read_records(out)] == ["lstm"]
    assert (out / "export" / "lstm__seed0" / "cell.onnx").is_file()
    assert (out / "config.json").read_text() == config  # the run's record is kept
    assert {p.name: p.read_text() for p in (out / "cells").glob("*.json")} == cells
    assert "## Latency" in (out / "report.md").read_text()

    # without --models: only the models without a record
    assert cli.main(["export", str(out), "--quiet", "-o", "export.runtimes=score"]) == 0
    records = {r["model_label"]: r for r in latency.read_records(out)}
    assert set(records) == {"pop", "lstm"}
    assert records["lstm"]["settings"]["runtimes"] == ["torch", "onnxruntime", "score"]
    capsys.readouterr()
    assert cli.main(["export", str(out), "--models", "lsmt"]) == 2
    assert "model 'lsmt' is not part of this run (in --models): did you mean 'lstm'?" in (
        capsys.readouterr().err
    )
    assert cli.main(["export", str(out), "-o", "lstm.epochs=3"]) == 2
    assert "not an export option" in capsys.readouterr().err


# -- the report section ------------------------------------------------------------------


def measurement(runtime, unit, p50, parity, threads=1, top_k=20):
    timing = {k: p50 for k in TIMING_FIELDS} | {"repeats": 100, "p99_ms": p50 * 1.5}
    return ({"top_k": top_k} if unit == "score" and top_k else {}) | {
        "runtime": runtime,
        "unit": unit,
        "device": "cpu",
        "provider": None,
        "threads": threads,
        "parity": parity,
        "batch1": timing,
        "batch": {**timing, "batch_size": 256},
        "queries_per_second": 256 / (p50 * 4e-3),
        "load_average": {"before": [0.5, 0.5, 0.5], "after": [0.75, 0.5, 0.5]},
        "other_cpu_share": 0.3 if runtime == "torch" else 0.01,
    }


class _Queries:
    """Ten test queries of three items each (what ``measure_score`` reads)."""

    def __len__(self):
        return 10

    def model_inputs(self, index, max_length, device):
        return SequenceBatch(
            torch.ones((len(index), 3), dtype=torch.long), torch.full((len(index),), 3)
        )


class _ViewScores:
    """Scores that cost nothing until read: one row expanded to the batch (as pop's)."""

    max_length = None

    def score(self, batch):
        return torch.arange(1000, dtype=torch.float32)[None, :].expand(len(batch.lengths), -1)


def test_score_latency_times_the_ranking_so_a_lazy_view_is_measured(monkeypatch):
    ranked = []
    topk = torch.topk

    def spy(scores, k, dim):
        ranked.append((tuple(scores.shape), k))
        return topk(scores, k, dim=dim)

    monkeypatch.setattr(torch, "topk", spy)
    options = ExportOptions(repeats=3, batch_repeats=2, batch_size=8, warmup=1, threads=(1,))
    (m,) = latency.measure_score(_ViewScores(), _Queries(), options, torch.device("cpu"), 20)
    assert m["unit"] == "score" and m["top_k"] == 20
    # every timed call ranked (read) the whole [batch, n_items] score matrix
    assert {shape for shape, _ in ranked} == {(1, 1000), (8, 1000)}
    assert {k for _, k in ranked} == {20}
    assert m["batch1"]["repeats"] + m["batch"]["repeats"] <= len(ranked)


def test_a_score_timed_without_ranking_stays_out_of_the_comparison(settings, tmp_path):
    result = run_tiny(
        settings, tmp_path / "run", models=("pop",), overrides=["export.enabled=false"]
    )
    write_json(
        latency.record_path(result.path, "pop", 0),
        {
            "schema_version": latency.SCHEMA_VERSION,
            "model": "pop",
            "model_label": "pop",
            "seed": 0,
            "kind": "baseline",
            "status": "ok",
            "export": None,
            "skipped": [],
            "environment": {},
            "measurements": [measurement("score", "score", 0.02, None, top_k=None)],
        },
    )
    section = result.report()[result.report().index("## Latency") :]
    assert "| pop     | score  | score() alone |" in section
    assert "was not measured" in section
    assert "### Accuracy vs latency" not in section  # pop's only timing is not a measurement


def test_the_report_renders_latency_from_the_records_alone(settings, tmp_path):
    result = run_tiny(
        settings, tmp_path / "run", models=("pop",), overrides=["export.enabled=false"]
    )
    base = {
        "schema_version": latency.SCHEMA_VERSION,
        "dataset": TINY,
        "seed": 0,
        "n_items": 100,
        "error": None,
        "settings": {},
        "environment": {
            "cpu": "Test CPU",
            "cpu_count": 2,
            "load_average": [0.5, 0.4, 0.3],
            "torch": "2.x",
            "onnxruntime": "1.x",
            "onnx": "1.y",
            "onnxruntime_distributions": {"onnxruntime": "1.x"},
        },
        "created": "2026-01-01T00:00:00+00:00",
    }
    write_json(
        latency.record_path(result.path, "pop", 0),
        base
        | {
            "model": "pop",
            "model_label": "pop",
            "kind": "baseline",
            "status": "ok",
            "export": None,
            "skipped": [],
            "measurements": [measurement("score", "score", 0.02, None)],
        },
    )
    write_json(
        latency.record_path(result.path, "lstm", 0),
        base
        | {
            "model": "lstm",
            "model_label": "lstm",
            "kind": "neural",
            "status": "ok",
            "export": {"status": "ok", "error": None},
            "skipped": [{"runtime": "onnxruntime", "device": "cuda", "reason": "no GPU here"}],
            "measurements": [
                measurement("torch", "step", 0.5, "reference"),
                measurement(
                    "onnxruntime",
                    "step",
                    0.25,
                    {"passed": True, "max_abs_diff": 3e-7, "reason": None},
                ),
            ],
        },
    )
    write_json(
        latency.record_path(result.path, "mlstm", 0),
        base
        | {
            "model": "mlstm",
            "model_label": "mlstm",
            "kind": "neural",
            "status": "failed",
            "export": {"status": "failed", "error": "torch.onnx.export failed: boom"},
            "skipped": [],
            "measurements": [],
        },
    )
    write_json(result.path / "latency" / "old.json", {"schema_version": 0})  # ignored
    text = result.report()
    section = text[text.index("## Latency") :]
    assert (
        "Test CPU, 2 logical CPUs; threads timed: 1; 1-minute load average 0.50–0.75; "
        "other processes used up to 30% of the CPU time." in section
    )
    assert "**Busy machine**" in section
    assert (
        "| pop     | score  | score() + top-k | cpu      | 1         | 0.020    | 0.020    | 0.030"
        in section
    )
    assert (
        "| lstm    | step   | ONNX Runtime    | cpu      | 1         | 0.250    | 0.250    | 0.375"
        in section
    )
    assert "ok (3.0e-07)" in section and "reference" in section
    assert "| mlstm   | step   | ONNX export" in section
    assert "FAILED: failed: torch.onnx.export failed: boom" in section
    assert "ONNX Runtime on cuda not timed: no GPU here" in section
    accuracy = section[section.index("### Accuracy vs latency") :]
    assert "| pop     |" in accuracy  # lstm and mlstm have no accuracy cells in this run
    assert "lstm" not in accuracy.split("\n\n")[1]
