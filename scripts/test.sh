#!/usr/bin/env bash
# `just test`: every test against real NATS, Postgres, Redis and a Kafka-protocol broker (and
# ONNX Runtime, and headless Chromium for the dashboard), started on the test ports or reused
# if already up, never touching a dev stack.
export ORBIT_ENV=test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$ROOT"
mkdir -p "$LOGS"
# The services and tools install and start while the tests build: apt and pip wait on the
# network, the build on the CPU.
# `orbit` writes the credentials from stack.toml and starts the services: built first.
"$ROOT/scripts/install-build-deps.sh"
say "building the orbit command"
cargo build --quiet --bin orbit
ORBIT="${CARGO_TARGET_DIR:-$ROOT/target}/debug/orbit"
say "installing and starting the test services and tools beside the build (log: $LOGS/setup.log)"
(
  "$ORBIT" --env test services up
  "$ROOT/scripts/install-browser.sh"
  "$ROOT/scripts/install-deploy-tools.sh"
  "$ROOT/scripts/install-tansu-storage.sh"
) >"$LOGS/setup.log" 2>&1 &
setup=$!

say "building the tests, and the binaries the end-to-end tests start"
cargo test --workspace --exclude orbit-e2e --no-run --quiet
cargo build --workspace --exclude orbit-bench --bins --quiet
cargo test -p orbit-e2e --no-run --quiet
if ! wait "$setup"; then
  tail -n 40 "$LOGS/setup.log" >&2
  die "installing or starting the test services failed; see $LOGS/setup.log"
fi
say "test services up and tools installed"
set -a; source "$ENV_FILE"; set +a

say "unit and component tests"
cargo test --workspace --exclude orbit-e2e --quiet

say "the Python SDK's tests (sdk/python/tests, against the test NATS)"
ORBIT_SDK_REQUIRE_NATS=1 "$TOOLS/python/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/sdk/python/tests"

say "end-to-end tests (real services; one at a time, each starts its own Orbit processes)"
# Each process's log (target/e2e-logs/<name>.log) is appended to across restarts within a run;
# a new run starts them afresh, so they hold this run and do not grow run after run.
rm -rf "$ROOT/target/e2e-logs"
ORBIT_TEST_ENV_FILE="$ENV_FILE" cargo test -p orbit-e2e --quiet -- --test-threads=1 "$@"
