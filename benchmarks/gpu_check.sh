#!/usr/bin/env bash
# Train lstm, gru4rec and mlstm on a CUDA machine and print the benchmark tables.
#
#   RECBENCH_DATA=/path/to/data benchmarks/gpu_check.sh [extra bench_rnn.py options]
#
# 1. the same table as the CPU benchmark (benchmarks/bench_rnn.py), on the GPU, for the
#    users-0001-2999 MovieLens 1M file (synthetic data of ML-1M size without RECBENCH_DATA);
# 2. the same with bfloat16 autocast, and the mLSTM loop under torch.compile;
# 3. an end-to-end run (train, validate, evaluate) of pop, lstm, gru4rec and mlstm with
#    bf16 on synthetic data, which exercises every CUDA code path of the trainer.
# A few minutes on one recent GPU. PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

"$PYTHON" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

MODELS=lstm,mlstm,mlstm-loop,gru4rec,gru4rec-default
"$PYTHON" benchmarks/bench_rnn.py --device cuda --threads 4 --rounds 3 --models "$MODELS" "$@"
"$PYTHON" benchmarks/bench_rnn.py --device cuda --threads 4 --rounds 2 --models "$MODELS" \
    --bf16 --no-memory "$@"
# torch.compile of the mLSTM loop (compile time is in the first, warm-up epoch)
"$PYTHON" benchmarks/bench_rnn.py --device cuda --threads 4 --rounds 2 --models lstm,mlstm \
    --compile --no-memory "$@" || echo "gpu_check: the torch.compile variant failed" >&2

OUT=$(mktemp -d)
CACHE=$(mktemp -d)
RECBENCH_CACHE="$CACHE" RECBENCH_OFFLINE=1 "$PYTHON" -m recbench.cli run \
    --models pop,lstm,gru4rec,mlstm --dataset synthetic:small --device cuda \
    --protocols half-split,iterative --out "$OUT/run" --quiet \
    -o lstm.epochs=3 -o gru4rec.epochs=3 -o mlstm.epochs=3 \
    -o lstm.bf16=true -o gru4rec.bf16=true -o mlstm.bf16=true -o export.enabled=false
"$PYTHON" -m recbench.cli report "$OUT/run" -o - | sed -n '/## Results: iterative/,/## Timing/p'
STATUS=0
"$PYTHON" - "$OUT/run" <<'PY' || STATUS=1
import json
import sys
from pathlib import Path

failed = [
    cell for cell in map(json.loads, map(Path.read_text, Path(sys.argv[1], "cells").glob("*.json")))
    if cell["status"] != "ok"
]
for cell in failed:
    print(f"gpu_check: {cell['model']} failed on the GPU: {cell['error']}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
rm -rf "$OUT" "$CACHE"
exit $STATUS
