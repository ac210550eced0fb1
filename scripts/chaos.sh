#!/usr/bin/env bash
# `just chaos`: the soak of tests/src/bin/orbit-chaos.rs on the test services (started, or
# reused if already up; never a dev stack): steady load, a random component killed every few
# seconds, then the ledger. Arguments go to orbit-chaos (--minutes, --rate, --every, --seed).
export ORBIT_ENV=test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$ROOT"
say "building the binaries the soak starts"
cargo build --bins --quiet
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/orbit" --env test services up
set -a; source "$ENV_FILE"; set +a
ORBIT_TEST_ENV_FILE="$ENV_FILE" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/orbit-chaos" "$@"
