#!/usr/bin/env bash
# Issue 20's GPU rows, in one device call: unpack the carried wheels (ray 2.60 repacked slim and
# its dependencies, .whl/ as /work/shared/gpu/README.md describes), then the engine benchmark
# (benchmarks/engine_torch.py) with --device cuda: MLP and CNN, targets action and value,
# N = 64/256/1024, gradient, Integrated Gradients (16 steps) and SmoothGrad (16 samples).
# Results under $OUT: engine_torch_cuda_*.json and .md (written after every row, so a time limit
# keeps what was measured) and gpu_run.log (all tables at its end): 7 files. About 4 minutes on an H200.
# TensorFlow is not needed (nor imported: the rows are torch only).
#
# Local dry run on a CPU machine:  OUT=/tmp/out PYTHON=.venv/bin/python GPU_RUN_SKIP_UNPACK=1 \
#   GPU_RUN_FLAGS=--cpu-if-no-cuda GPU_RUN_QUICK=1 bash benchmarks/gpu_run.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
PYTHON=${PYTHON:-python3}
FLAGS=${GPU_RUN_FLAGS:-}
mkdir -p "$OUT"
LOG="$OUT/gpu_run.log"
exec > >(tee -a "$LOG") 2>&1
started=$(date +%s)
say() { echo "[gpu_run $(($(date +%s) - started)) s] $*"; }

if [ -z "${GPU_RUN_SKIP_UNPACK:-}" ]; then
    say "unpacking .whl into .site"
    "$PYTHON" .whl/unpack_wheels.py .whl .site | tail -1 || { say "unpacking failed"; exit 1; }
    export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PYTHON" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "(no GPU)")
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(f"GPU memory free {free / 2**30:.1f} of {total / 2**30:.1f} GiB")
import ray
print("ray", ray.__version__, ray.__file__)
PY
[ $? -eq 0 ] || { say "torch/ray import failed"; exit 1; }

if [ -n "${GPU_RUN_QUICK:-}" ]; then
    SIZES="64"
    QUICK="--quick"
else
    SIZES="64 256 1024"
    QUICK=""
fi
status=0
bench() {  # name, time limit (s), then engine_torch.py arguments
    local name=$1 limit=$2
    shift 2
    say "start $name (limit ${limit} s)"
    timeout "$limit" "$PYTHON" benchmarks/engine_torch.py --device cuda $FLAGS $QUICK --out "$OUT" \
        --name "engine_torch_cuda_$name" "$@"
    local rc=$?
    [ $rc -eq 0 ] || { say "$name stopped with exit status $rc (rows measured so far are kept)"; status=1; }
}
bench mlp 50 --model mlp --sizes $SIZES --row-seconds 1
bench cnn 90 --model cnn --sizes $SIZES --methods gradient integrated_gradients --row-seconds 1.5
bench cnn_smoothgrad 110 --model cnn --sizes $SIZES --methods smoothgrad --row-seconds 1

cat "$OUT"/engine_torch_cuda_*.md  # all tables, in the log too
say "done (status $status)"
exit $status
