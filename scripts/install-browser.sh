#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, and nothing that is already there:
# Debian's chromium and chromium-driver (apt), and playwright-core from
# tests/browser/package-lock.json (npm ci), with Debian's Node.js and npm when there is no
# node at all. Safe to run any number of times.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[install-browser] %s\n' "$*" >&2; }

packages=()
[[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || packages+=(chromium chromium-driver)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if (( ${#packages[@]} == 0 )); then
  log "chromium, chromedriver, node and npm already installed"
else
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  log "installing ${packages[*]} with apt-get"
  if ! "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null; then
    log "apt-get install failed; running apt-get update and trying again"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
fi

TESTS="$ROOT/tests/browser"
if [[ -d "$TESTS/node_modules/playwright-core" ]]; then
  log "playwright-core already installed in tests/browser"
else
  log "installing playwright-core in tests/browser (npm ci)"
  (cd "$TESTS" && npm ci --no-audit --no-fund >&2)
fi
