#!/usr/bin/env bash
# ONNX Runtime's CUDA build and the NVIDIA libraries it loads (CUDA 13 runtime, cuBLAS, cuFFT,
# cuRAND, NVRTC, cuDNN 9), unpacked from their PyPI wheels into .orbit/tools/gpu/lib; nothing
# system-wide. Only for a machine with an NVIDIA GPU and driver. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nvidia-smi >/dev/null 2>&1 || die "no NVIDIA GPU visible (nvidia-smi failed); the CPU build of ONNX Runtime is used instead"
if [[ ! -f "$(ort_gpu_lib)" ]]; then
  say "installing onnxruntime-gpu $ORT_VERSION and the CUDA 13 / cuDNN 9 wheels into $GPU_LIBS"
  wheels="$(mktemp -d)"
  # cuBLAS is not among onnxruntime-gpu's extras but its CUDA provider needs it.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$wheels" \
    "onnxruntime-gpu==$ORT_VERSION" "nvidia-cuda-runtime>=13,<14" "nvidia-cublas>=13,<14" \
    "nvidia-cufft>=12,<13" "nvidia-curand>=10,<11" "nvidia-cuda-nvrtc>=13,<14" \
    "nvidia-cudnn-cu13>=9,<10"
  mkdir -p "$GPU_LIBS"
  python3 - "$wheels" "$GPU_LIBS" <<'PY'
import pathlib, sys, zipfile
wheels, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            base = pathlib.Path(name).name
            wanted = name.startswith("onnxruntime/capi/libonnxruntime") or name.startswith("nvidia/")
            if wanted and ".so" in base:
                (target / base).write_bytes(archive.read(name))
PY
  rm -rf "$wheels"
  [[ -f "$(ort_gpu_lib)" ]] || die "libonnxruntime.so not found in the onnxruntime-gpu wheel"
fi
