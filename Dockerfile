# syntax=docker/dockerfile:1.7
# Orbit's images: one build of the workspace, then one small runtime image per process of
# stack.toml. compose.yaml (generated from stack.toml by `orbit deploy generate`) builds them:
#
#   target   build argument        image holds
#   process  BIN=<cargo binary>    the binary and orbit-probe, on Debian 12 slim, as uid 65532
#   gateway  BIN=gateway           the same plus the dashboard
#   models   BIN=onnx-host|forecast  the same plus ONNX Runtime and the model repository
#                                  (ONNX_DEVICE=cuda: the CUDA build and the NVIDIA libraries)
#   python   SOURCE=functions/<f>  a Python function: Python, the SDK of sdk/python, the
#                                  function's folder and its requirements.txt, and orbit-probe
#
#   docker build --target process --build-arg BIN=moving_average -t orbit/moving_average .
#   docker build --target python --build-arg SOURCE=functions/anomaly -t orbit/anomaly .
#
# Every image runs `orbit-process`, a link to its binary, so `docker run orbit/<name>` starts
# it and `docker compose exec gateway gateway keys list` reaches the real name. The base
# images are pinned by version tag and can be swapped with RUST_IMAGE / RUNTIME_IMAGE /
# PYTHON_IMAGE (a mirror, a digest). BINARIES names an image that already holds /out (the
# layout of the `build` stage below) and ORT_STAGE one that holds /ort (ONNX Runtime's
# libraries), to package what was built elsewhere: that is how the test suite builds these
# images on a machine that reaches no image registry (docs/deploy.md).

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-20251229-slim
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG BINARIES=build
ARG ONNX_DEVICE=cpu
# The same ONNX Runtime as scripts/lib.sh's ORT_VERSION (`orbit deploy check` holds them equal).
ARG ORT_VERSION=1.31.1
ARG ORT_STAGE=ort-${ONNX_DEVICE}

# ---- the workspace, built once for every image -------------------------------------------
FROM ${RUST_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# librdkafka (the Kafka bridge) is compiled from source: make, a C/C++ compiler, zlib, and
# OpenSSL for its TLS and SASL logins.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ zlib1g-dev pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Stripped of debug information but not of symbols: small images whose panics still name
# their functions. Each binary lands in /out/<name>/ beside an `orbit-process` link to it.
# OpenSSL is linked statically into the bridge (named by its folders: through pkg-config a
# library under /usr is always linked dynamically), so the runtime images need no libssl3.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    OPENSSL_STATIC=1 \
    OPENSSL_INCLUDE_DIR=/usr/include
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    OPENSSL_LIB_DIR="/usr/lib/$(gcc -print-multiarch)" \
    cargo build --release --locked --workspace --exclude orbit-e2e --exclude orbit-bench --bins \
    && mkdir -p /out \
    && find target/release -maxdepth 1 -type f -executable -printf '%f\n' | while read -r bin; do \
         mkdir -p "/out/$bin" && cp "target/release/$bin" "/out/$bin/" \
         && ln -s "$bin" "/out/$bin/orbit-process" \
         && cp target/release/orbit-probe "/out/$bin/"; \
       done

FROM ${BINARIES} AS binaries

# ---- ONNX Runtime's shared library, from the same PyPI wheels as scripts/install*.sh ------
FROM ${PYTHON_IMAGE} AS ort-cpu
ARG ORT_VERSION
WORKDIR /wheels
RUN pip download --no-cache-dir --no-deps --only-binary=:all: "onnxruntime==${ORT_VERSION}" \
    && mkdir -p /ort \
    && python3 -c "import glob, zipfile; z = zipfile.ZipFile(glob.glob('onnxruntime-*.whl')[0]); [open('/ort/' + n.rsplit('/', 1)[1], 'wb').write(z.read(n)) for n in z.namelist() if n.startswith('onnxruntime/capi/libonnxruntime')]" \
    && ln -s "libonnxruntime.so.${ORT_VERSION}" /ort/libonnxruntime.so

FROM ${PYTHON_IMAGE} AS ort-cuda
ARG ORT_VERSION
WORKDIR /wheels
# cuBLAS is not among onnxruntime-gpu's extras but its CUDA provider needs it.
RUN pip download --no-cache-dir --no-deps --only-binary=:all: "onnxruntime-gpu==${ORT_VERSION}" \
      "nvidia-cuda-runtime>=13,<14" "nvidia-cublas>=13,<14" "nvidia-cufft>=12,<13" \
      "nvidia-curand>=10,<11" "nvidia-cuda-nvrtc>=13,<14" "nvidia-cudnn-cu13>=9,<10" \
    && mkdir -p /ort \
    && python3 -c "import glob, zipfile; [open('/ort/' + n.rsplit('/', 1)[1], 'wb').write(zipfile.ZipFile(w).read(n)) for w in glob.glob('*.whl') for n in zipfile.ZipFile(w).namelist() if '.so' in n.rsplit('/', 1)[1] and (n.startswith('onnxruntime/capi/libonnxruntime') or n.startswith('nvidia/'))]" \
    && ln -s "libonnxruntime.so.${ORT_VERSION}" /ort/libonnxruntime.so

FROM ${ORT_STAGE} AS ort

# ---- runtime images ----------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS process
ARG BIN
COPY --from=binaries /out/${BIN}/ /usr/local/bin/
# 65532: an unprivileged uid with no entry and no home; nothing in the image is writable by it,
# and the processes write nothing but standard error (compose runs them read-only).
USER 65532:65532
WORKDIR /srv/orbit
ENV RUST_LOG=info \
    ORBIT_LOG_FORMAT=json
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/orbit-process"]

FROM process AS gateway
COPY dashboard/ /srv/orbit/dashboard/
ENV ORBIT_DASHBOARD_DIR=/srv/orbit/dashboard \
    ORBIT_HTTP_ADDR=0.0.0.0:8000
EXPOSE 8000

FROM process AS models
COPY --from=ort /ort/ /usr/local/lib/orbit/
COPY models/ /srv/orbit/models/
ENV ORT_DYLIB_PATH=/usr/local/lib/orbit/libonnxruntime.so \
    LD_LIBRARY_PATH=/usr/local/lib/orbit \
    ORBIT_MODEL_REPOSITORY=/srv/orbit/models

# ---- a function in Python: its command line comes from stack.toml (compose `command`) -------
FROM ${PYTHON_IMAGE} AS python
ARG SOURCE
COPY --from=binaries /out/orbit-probe/orbit-probe /usr/local/bin/orbit-probe
COPY sdk/python/ /tmp/sdk/
COPY ${SOURCE}/ /srv/orbit/${SOURCE}/
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/sdk \
      -r "/srv/orbit/${SOURCE}/requirements.txt" \
    && rm -rf /tmp/sdk
USER 65532:65532
WORKDIR /srv/orbit
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
CMD ["python", "--version"]
