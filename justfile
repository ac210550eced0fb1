# Orbit: every workflow. `just --list` shows them all.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what is missing and run the whole stack on loopback.
up:
    scripts/stack.sh up

# Stop exactly what `just up` started (and a test stack, if one runs).
down:
    scripts/stack.sh down
    ORBIT_ENV=test scripts/infra.sh down

# Say what runs.
status:
    scripts/stack.sh status

# Install what is missing and run every test against real services.
test *ARGS:
    scripts/test.sh {{ARGS}}

# A chaos soak on the test services: steady load, a random component killed every few seconds,
# then the ledger (accepted, recorded, lost and duplicated per store). `just chaos --minutes 10`.
chaos *ARGS:
    scripts/chaos.sh {{ARGS}}

# Regenerate compose.yaml, deploy/k8s/ and the other deployment files from stack.toml
# (scripts/deploy.py); `just test` fails while they are stale.
deploy-files:
    python3 scripts/deploy.py generate

# Format, lint, and look for repeated code.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks against the running stack (`just up` first): the short suite (under 3 minutes)
# by default, `just bench --long` for the long one, or named scenarios (see bench/README.md).
# Built with the running stack's profile; the published figures use `ORBIT_PROFILE=release just up`.
bench *ARGS:
    cargo run --profile "$(cat .orbit/${ORBIT_ENV:-dev}/run/profile 2>/dev/null || echo local)" --quiet -p orbit-bench --bin orbit-bench -- {{ARGS}}

# One end-to-end load run, e.g. `just load single --jobs 20000 --concurrency 64`.
load *ARGS:
    just bench {{ARGS}}

# The LSTM model's own speed on the CPU (lone-request latency, series/s by batch size).
bench-lstm *ARGS:
    scripts/install.sh
    source scripts/lib.sh && ORT_DYLIB_PATH="$(ort_lib)" cargo run --release --quiet -p onnx-host --bin lstm-bench -- {{ARGS}}

# Held-out forecast accuracy of the running stack's forecasters against statsforecast
# (`just up` first): `just eval-forecast 200` (points of context), bench/forecast/evaluate.py.
eval-forecast *ARGS:
    scripts/eval-forecast.sh {{ARGS}}

# The same on a GPU machine (installs the CUDA runtime wheels; see bench/gpu.sh).
bench-gpu:
    bench/gpu.sh

# Tail the logs of the running stack.
logs:
    tail -n 50 -F .orbit/dev/logs/*.log
