#!/usr/bin/env bash
# `just test`: every test against real NATS, Postgres, Redis and a Kafka-protocol broker (and
# ONNX Runtime, and headless Chromium for the dashboard), started on the test ports or reused
# if already up, never touching a dev stack.
export ORBIT_ENV=test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$ROOT"
"$ROOT/scripts/infra.sh" up
"$ROOT/scripts/install-browser.sh"
"$ROOT/scripts/install-tansu-storage.sh"
"$ROOT/scripts/install-deploy-tools.sh"
set -a; source "$ENV_FILE"; set +a

say "unit and component tests"
cargo test --workspace --exclude orbit-e2e --quiet

say "building binaries for the end-to-end suite"
cargo build --bins --quiet
say "end-to-end tests (real services; one at a time, each starts its own Orbit processes)"
# Each process's log (target/e2e-logs/<name>.log) is appended to across restarts within a run;
# a new run starts them afresh, so they hold this run and do not grow run after run.
rm -rf "$ROOT/target/e2e-logs"
ORBIT_TEST_ENV_FILE="$ENV_FILE" cargo test -p orbit-e2e --quiet -- --test-threads=1 "$@"
