#!/usr/bin/env bash
# The GPU check: the mission command at ML-20M size, the CUDA tests, bf16 against float32,
# and the torch.compile stage, each under its own time limit so that the whole script
# fits 9 minutes on one H100.
#
#   benchmarks/gpu_check.sh                     # one CUDA GPU, synthetic:ml-20m
#   GPU_CHECK_SIZE=tiny benchmarks/gpu_check.sh # the same stages on synthetic:small, on
#                                               # the CPU, CUDA-only stages skipped (minutes)
#
# Stages (seconds allowed, default size):
#   1. the device and versions                                          (-)
#   2. the tests that need CUDA (every test that skips without it)      (90)
#   3. recbench run --models lstm,mlstm,moc --dataset synthetic:ml-20m,
#      1 seed, every protocol, float32                                  (200)
#   4. the same with bf16=true                                          (200)
#   5. bf16 against float32: every metric of every (model, protocol); a relative
#      difference above BF16_TOLERANCE (default 0.10) fails the script  (-)
#   6. bench_rnn.py --compile (the mLSTM loop under torch.compile)      (60)
# EPOCHS (default 2) bounds the training of each model so that both runs fit; the time
# of each stage is printed. PYTHON picks the interpreter (default: python). Exit status:
# 0 when every stage passed, 1 otherwise (a stage over its limit counts as failed).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SIZE=${GPU_CHECK_SIZE:-ml-20m}
EPOCHS=${EPOCHS:-2}
BF16_TOLERANCE=${BF16_TOLERANCE:-0.10}
if [ "$SIZE" = tiny ]; then
    DATASET=synthetic:small DEVICE=cpu LIMIT_TESTS=120 LIMIT_RUN=900 LIMIT_COMPILE=0
else
    DATASET=synthetic:ml-20m DEVICE=cuda LIMIT_TESTS=90 LIMIT_RUN=200 LIMIT_COMPILE=60
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export RECBENCH_CACHE="$WORK/cache" RECBENCH_OFFLINE=1
FAILED=()

stage() { # stage NAME LIMIT COMMAND...: run COMMAND under LIMIT seconds, print its time
    local name=$1 limit=$2 started status
    shift 2
    started=$(date +%s)
    timeout --signal=INT --kill-after=15 "$limit" "$@"
    status=$?
    echo "gpu_check: stage '$name' took $(($(date +%s) - started)) s (limit $limit s), exit $status"
    [ $status -eq 0 ] || FAILED+=("$name")
}

echo "gpu_check: size $SIZE, dataset $DATASET, device $DEVICE, $EPOCHS epochs per model"
"$PYTHON" - "$DEVICE" <<'PY' || exit 1
import sys

import torch

if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (GPU_CHECK_SIZE=tiny runs on the CPU)")
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

# 2. the tests that need CUDA: on a CPU machine they skip, here they must pass
CUDA_TESTS=$(grep -rlE "cuda.is_available|needs a CUDA" tests --include='test_*.py' | sort)
if [ "$DEVICE" = cuda ]; then
    # shellcheck disable=SC2086
    stage "CUDA tests" "$LIMIT_TESTS" "$PYTHON" -m pytest -q -x -p no:cacheprovider $CUDA_TESTS
else
    echo "gpu_check: CUDA tests skipped on the CPU: $(echo $CUDA_TESTS | wc -w) files"
fi

# 3-4. the mission command, float32 then bf16
run() { # run NAME [-o OPTION...]
    local name=$1
    shift
    stage "run $name" "$LIMIT_RUN" "$PYTHON" -m recbench.cli run \
        --models lstm,mlstm,moc --dataset "$DATASET" --device "$DEVICE" --seeds 0 \
        --protocols half-split,iterative,last-item --out "$WORK/$name" --quiet \
        -o lstm.epochs="$EPOCHS" -o mlstm.epochs="$EPOCHS" -o moc.epochs="$EPOCHS" \
        -o export.enabled=false "$@"
}
run float32
run bf16 -o lstm.bf16=true -o mlstm.bf16=true -o moc.bf16=true

# 5. bf16 against float32, metric by metric
"$PYTHON" - "$WORK/float32" "$WORK/bf16" "$BF16_TOLERANCE" <<'PY' || FAILED+=("bf16 vs float32")
import json
import sys
from pathlib import Path


def cells(run: str) -> dict[tuple[str, str, str], dict]:
    out = {}
    for path in sorted(Path(run, "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        out[cell["model_label"], cell["protocol"], str(cell["seed"])] = cell
    return out


fp32, bf16, tolerance = cells(sys.argv[1]), cells(sys.argv[2]), float(sys.argv[3])
if not fp32 or not bf16:
    sys.exit("gpu_check: a run wrote no cells; nothing to compare")
bad, compared = [], 0
print("| model | protocol | seed | metric | float32 | bf16 | relative difference |")
print("|---|---|---|---|---:|---:|---:|")
for key in sorted(fp32.keys() | bf16.keys()):
    a, b = fp32.get(key, {}), bf16.get(key, {})
    if a.get("status") != "ok" or b.get("status") != "ok":
        bad.append(f"{key}: status {a.get('status')} / {b.get('status')}")
        continue
    for metric, x in sorted(a["metrics"].items()):
        y = b["metrics"].get(metric)
        x, y = (v.get("mean") if isinstance(v, dict) else v for v in (x, y))
        if not isinstance(x, int | float) or not isinstance(y, int | float):
            continue
        compared += 1
        relative = abs(x - y) / max(abs(x), 1e-12)
        print(f"| {' | '.join(key)} | {metric} | {x:.4f} | {y:.4f} | {relative:.3f} |")
        if relative > tolerance:
            bad.append(f"{key} {metric}: {x:.4f} vs {y:.4f}")
if compared == 0:
    bad.append("no metric values found in the cells")
for line in bad:
    print(f"gpu_check: bf16 differs from float32: {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# 6. torch.compile, bounded: a cold compile can take minutes
if [ "$LIMIT_COMPILE" -gt 0 ]; then
    stage "torch.compile" "$LIMIT_COMPILE" "$PYTHON" benchmarks/bench_rnn.py --device cuda \
        --threads 4 --rounds 1 --models lstm,mlstm --compile --no-memory
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${FAILED[*]}" >&2
    exit 1
fi
echo "gpu_check: every stage passed"
