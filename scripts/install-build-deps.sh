#!/usr/bin/env bash
# What the build itself links against, installed before any build starts (the other installs
# run beside the build): pkg-config and OpenSSL's headers, for the Kafka client's TLS and SASL
# (rdkafka's `ssl` feature, through openssl-sys). Does nothing when they are there.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
(( ${#missing[@]} )) || exit 0
say "installing ${missing[*]} (apt; the build links OpenSSL)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
