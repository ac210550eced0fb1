# Orbit: every workflow. `just --list` shows them all. Most call the `orbit` command
# (crates/stack), built first with the stack's cargo profile (ORBIT_PROFILE, default local).
set shell := ["bash", "-euo", "pipefail", "-c"]

profile := env_var_or_default("ORBIT_PROFILE", "local")
orbit := "cargo build --profile " + profile + " --bin orbit && ${CARGO_TARGET_DIR:-target}/" + profile + "/orbit"

# List the recipes.
default:
    @just --list

# Install what is missing and run the whole stack on loopback.
up:
    {{orbit}} up

# Stop exactly what `just up` started (and a test stack, if one runs).
down:
    {{orbit}} down
    {{orbit}} --env test services down

# Say what runs.
status:
    {{orbit}} status

# Install what is missing and run every test against real services.
test *ARGS:
    scripts/test.sh {{ARGS}}

# A chaos soak on the test services: steady load, a random component killed every few seconds,
# then the ledger (accepted, recorded, lost and duplicated per store). `just chaos --minutes 10`.
chaos *ARGS:
    scripts/chaos.sh {{ARGS}}

# Regenerate compose.yaml, deploy/k8s/ and the other deployment files from stack.toml
# (`orbit deploy generate`); `just test` fails while they are stale.
deploy-files:
    {{orbit}} deploy generate

# Format, lint, and look for unused dependencies (cargo-machete, installed under .orbit/tools
# on first use).
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    [[ -x .orbit/tools/cargo/bin/cargo-machete ]] || cargo install --quiet --locked cargo-machete@0.9.2 --root .orbit/tools/cargo
    .orbit/tools/cargo/bin/cargo-machete

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
# (`just up` first): `just eval-forecast [64,120,200] [--collection first]`, bench/forecast/evaluate.py.
eval-forecast *ARGS:
    scripts/eval-forecast.sh {{ARGS}}

# The same on a GPU machine (installs the CUDA runtime wheels; see bench/gpu.sh).
bench-gpu:
    bench/gpu.sh

# Follow the logs of the running stack, or of one process: `just logs moving_average`.
logs *ARGS:
    {{orbit}} logs {{ARGS}}
