#!/usr/bin/env bash
# `just test`: unit tests, then the end-to-end suite against real NATS, Postgres and Redis
# started on the test ports (or reused if already up), never touching a dev stack.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export ORBIT_ENV=test

cd "$ROOT"
say "unit tests"
cargo test --workspace --exclude orbit-e2e --quiet

"$ROOT/scripts/infra.sh" up
say "building binaries for the end-to-end suite"
cargo build --bins --quiet
say "end-to-end tests (real services; one at a time, each starts its own Orbit processes)"
ORBIT_TEST_ENV_FILE="$ENV_FILE" cargo test -p orbit-e2e --quiet -- --test-threads=1 "$@"
