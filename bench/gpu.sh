#!/usr/bin/env bash
# The LSTM benchmark on a GPU: installs ONNX Runtime's CUDA build and the CUDA 13 / cuDNN 9
# libraries from PyPI wheels (scripts/install-gpu.sh), then runs `lstm-bench` with the CUDA
# provider at large batch sizes, after a short CPU run on the same machine for comparison.
# For a bare CUDA machine (driver present); a few minutes.
#
#   bench/gpu.sh                        # builds lstm-bench when cargo is there, else expects
#                                       # target/release/lstm-bench (carried from a CPU machine)
#   GPU_BATCHES=1,1024,65536 bench/gpu.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/lib.sh"
BATCHES="${GPU_BATCHES:-1,64,1024,8192,32768,131072}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$ROOT/scripts/install-gpu.sh"
export LD_LIBRARY_PATH="$GPU_LIBS:${LD_LIBRARY_PATH:-}"
ORT_DYLIB_PATH="$(ort_gpu_lib)"
export ORT_DYLIB_PATH

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lstm-bench"
if command -v cargo >/dev/null; then
  (cd "$ROOT" && cargo build --release --quiet -p onnx-host --bin lstm-bench)
fi
[[ -x "$BIN" ]] || die "$BIN missing: build it with cargo, or carry it here"
cd "$ROOT"  # the model repository (models/) is read from here

say "CPU provider on this machine, for comparison"
"$BIN" --device cpu --seconds 1 --batches 1,1024
say "CUDA provider"
"$BIN" --device cuda --seconds 2 --batches "$BATCHES"
