#!/usr/bin/env bash
# The LSTM benchmark on a GPU: installs ONNX Runtime's CUDA build and the NVIDIA CUDA 13 /
# cuDNN 9 libraries it needs from PyPI wheels (nothing system-wide), then runs `lstm-bench`
# with the CUDA provider at large batch sizes. Meant for a bare CUDA machine (driver present);
# finishes in a few minutes.
#
#   bench/gpu.sh                      # builds lstm-bench if cargo is there, else expects
#                                     # target/release/lstm-bench (carried from a CPU machine)
#   GPU_BATCHES=1,1024,65536 bench/gpu.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU="${ORBIT_GPU_DIR:-$ROOT/.orbit/tools/gpu}"
ORT_VERSION="1.31.1"
BATCHES="${GPU_BATCHES:-1,64,1024,8192,32768,131072}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 1; }

if [[ ! -f "$GPU/lib/libonnxruntime.so.$ORT_VERSION" ]]; then
  echo "installing onnxruntime-gpu $ORT_VERSION and the CUDA 13 / cuDNN 9 wheels into $GPU"
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$wheels" \
    "onnxruntime-gpu==$ORT_VERSION" "nvidia-cuda-runtime>=13,<14" "nvidia-cublas>=13,<14" \
    "nvidia-cufft>=12,<13" "nvidia-curand>=10,<11" "nvidia-cuda-nvrtc>=13,<14" \
    "nvidia-cudnn-cu13>=9,<10"
  mkdir -p "$GPU/lib"
  python3 - "$wheels" "$GPU/lib" <<'PY'
import pathlib, sys, zipfile
wheels, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            base = pathlib.Path(name).name
            if ".so" in base and (name.startswith("onnxruntime/capi/libonnxruntime") or name.startswith("nvidia/")):
                (target / base).write_bytes(archive.read(name))
PY
  rm -rf "$wheels"
fi
export LD_LIBRARY_PATH="$GPU/lib:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$GPU/lib/libonnxruntime.so.$ORT_VERSION"

BIN="$ROOT/target/release/lstm-bench"
if command -v cargo >/dev/null; then
  (cd "$ROOT" && cargo build --release --quiet -p lstm-timeseries --bin lstm-bench)
fi
[[ -x "$BIN" ]] || { echo "$BIN missing: build it (cargo) or carry it here" >&2; exit 1; }

echo "== CPU provider on this machine, for comparison"
ORT_DYLIB_PATH="$ORT_DYLIB_PATH" "$BIN" --device cpu --seconds 1 --batches 1,1024
echo "== CUDA provider"
"$BIN" --device cuda --seconds 2 --batches "$BATCHES"
