"""The environment records: a run's environment.json and each latency record describe the
process with the same fields, each adding its own."""

from __future__ import annotations

import torch

from recbench.environment import describe_environment, process_environment
from recbench.registry import discover
from recbench.serve import latency

PROCESS_FIELDS = {
    "python",
    "platform",
    "processor",
    "cpu",
    "cpu_count",
    "torch",
    "numpy",
    "torch_threads",
    "torch_interop_threads",
    "thread_variables",
}


def test_both_records_describe_the_process_alike(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    process = process_environment()
    assert set(process) == PROCESS_FIELDS
    assert (
        process["torch"] == torch.__version__
        and process["thread_variables"]["OMP_NUM_THREADS"] == "3"
    )
    run = describe_environment(discover(), torch.device("cpu"))
    timing = latency.environment()
    for record in (run, timing):
        assert {key: record[key] for key in PROCESS_FIELDS} == process
    # what each adds: the run's versions, device and plugins; the timing's runtimes and load
    assert {"recbench", "plugin_api", "device", "git", "plugins", "plugin_failures"} <= set(run)
    assert run["device"] == "cpu" and any(dist == "recbench" for dist, _ in run["plugins"])
    assert {"cuda", "load_average", "onnx", "onnxruntime"} <= set(timing)
    assert isinstance(timing["cuda"], bool)


def test_a_cuda_device_turns_tf32_on_and_the_environment_records_it(monkeypatch):
    from recbench import environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Test GPU")
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("highest")
        assert environment.resolve_device("cpu").type == "cpu"
        assert torch.get_float32_matmul_precision() == "highest"  # the CPU is left alone
        device = environment.resolve_device("auto")
        assert device.type == "cuda"
        info = describe_environment(discover(), device)
        assert info["float32_matmul_precision"] == "high" and info["cudnn_allow_tf32"] is True
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]
