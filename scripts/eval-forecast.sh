#!/usr/bin/env bash
# Held-out forecast accuracy of the running stack's forecasters against statsforecast's
# AutoETS, AutoTheta, AutoARIMA, their combination, SeasonalNaive and Naive
# (bench/forecast/evaluate.py). Installs the evaluation's pinned Python packages into
# .orbit/tools/forecast-eval on first use.
# Usage: scripts/eval-forecast.sh [context points, comma-separated, default 64,120,200] [more
# evaluate.py flags, e.g. --collection second]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

venv="$TOOLS/forecast-eval"
requirements="$ROOT/bench/forecast/requirements.txt"
stamp="$venv/.requirements.sha256"
SKTIME_VERSION="1.2.0"
wanted="$( (cat "$requirements"; echo "sktime==$SKTIME_VERSION") | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  say "installing the forecast evaluation's Python packages (bench/forecast/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  # Only its bundled data files are read (the second collection), so none of its dependencies.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "sktime==$SKTIME_VERSION"
  echo "$wanted" >"$stamp"
fi

context="64,120,200"
if [[ "${1:-}" =~ ^[0-9,]+$ ]]; then
  context="$1"
  shift
fi
url="http://127.0.0.1:$HTTP_PORT"
exec "$venv/bin/python" "$ROOT/bench/forecast/evaluate.py" --url "$url" --context "$context" "$@"
