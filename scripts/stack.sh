#!/usr/bin/env bash
# The whole Orbit stack on loopback: infrastructure plus every process of stack.toml (the
# sinks, the Kafka bridge, the functions and the model host, the gateway), built with the
# cargo profile ORBIT_PROFILE (default `local`: optimised, no LTO; `release` is what images
# and the published benchmark figures use). ORBIT_KAFKA_BRIDGE=0 leaves the bridge out;
# ORBIT_REPLICAS_<NAME>=n sets replicas.
#   scripts/stack.sh up | down | status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

load_env() {
  set -a; source "$ENV_FILE"; set +a
  export ORBIT_HTTP_ADDR="127.0.0.1:$HTTP_PORT" ORBIT_DASHBOARD_DIR="$ROOT/dashboard"
}

# ORBIT_AUTH=on: API keys, one per scope, generated on first start and kept (mode 600) in
# $SECRETS/api-keys.env as ORBIT_ADMIN_KEY=..., ORBIT_SUBMIT_KEY=..., ORBIT_READ_KEY=...; only
# the gateway is given them.
api_keys() {
  local file="$SECRETS/api-keys.env"
  if [[ ! -s "$file" ]]; then
    mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
    (umask 077; python3 - >"$file" <<'PY'
import base64, secrets
for scope in ("ADMIN", "SUBMIT", "READ"):
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    print(f"ORBIT_{scope}_KEY=orbit_{key}")
PY
    )
    say "generated API keys in $file" >&2
  fi
  cat "$file"
}

# supervise NAME COMMAND...: starts COMMAND under scripts/supervise.py, which starts it again
# (with back-off) whenever it dies unasked, like a deployment's restart policy. NAME.pid holds
# the process's own pid, NAME.supervisor.pid the supervisor's.
# A process that runs already is left alone, unless its binary was rebuilt since it started
# (a `git pull` and `just up` again): then it is restarted on the new one.
supervise() {
  local name="$1"; shift
  local program="${*: -1}"
  if pid_alive "$name.supervisor"; then
    if [[ "$program" -nt "$RUN/$name.supervisor.pid" ]]; then
      say "restarting $name: its binary was rebuilt"
      stop "$name"
    else
      say "$name already running (pid $(cat "$RUN/$name.pid" 2>/dev/null), supervised)"
      return 0
    fi
  fi
  mkdir -p "$RUN" "$LOGS"
  rm -f "$RUN/$name.pid"
  nohup python3 "$ROOT/scripts/supervise.py" "$RUN" "$name" -- "$@" >>"$LOGS/$name.log" 2>&1 &
  for _ in $(seq 1 50); do [[ -s "$RUN/$name.pid" ]] && break; sleep 0.1; done
  say "started $name (pid $(cat "$RUN/$name.pid" 2>/dev/null), supervised, log $LOGS/$name.log)"
}

# The processes of stack.toml, one line each (see scripts/manifest.py).
processes() { python3 "$ROOT/scripts/manifest.py" "$ROOT/stack.toml"; }

# The pid-file names of one manifest entry: <name>-<i> per replica of a function, else <name>.
instances() {
  local name="$1" kind="$2" replicas="$3" i
  if [[ "$kind" == function ]]; then
    for i in $(seq 1 "$replicas"); do echo "$name-$i"; done
  else
    echo "$name"
  fi
}

# build: the binaries stack.toml names, and nothing else, with profile $PROFILE.
build() {
  local bins=() binary
  for binary in $(processes | cut -f2 | sort -u); do bins+=(--bin "$binary"); done
  (cd "$ROOT" && cargo build --profile "$PROFILE" "${bins[@]}")
}

up() {
  # The build is the longest step: installs and the services start beside it, and the
  # build's own progress is in $LOGS/build.log.
  mkdir -p "$RUN" "$LOGS"
  say "building the stack's binaries (profile $PROFILE; progress: $LOGS/build.log)"
  local started=$SECONDS
  build >"$LOGS/build.log" 2>&1 &
  local builder=$!
  "$ROOT/scripts/infra.sh" up
  if ! wait "$builder"; then
    tail -n 40 "$LOGS/build.log" >&2
    die "the build failed; see $LOGS/build.log"
  fi
  say "binaries built ($((SECONDS - started)) s since the build began)"
  echo "$PROFILE" >"$RUN/profile"
  load_env
  cd "$ROOT"
  "$BIN/sink-postgres" migrate >>"$LOGS/migrate.log" 2>&1 || die "migrations failed; see $LOGS/migrate.log"
  say "migrations applied"
  # ORBIT_ONNX_DEVICE=cuda on a GPU machine: the CUDA build of ONNX Runtime and its libraries.
  if [[ "${ORBIT_ONNX_DEVICE:-cpu}" == cuda ]] && nvidia-smi >/dev/null 2>&1; then
    "$ROOT/scripts/install-gpu.sh"
    ORT_DYLIB_PATH="$(ort_gpu_lib)"
    export ORT_DYLIB_PATH LD_LIBRARY_PATH="$GPU_LIBS:${LD_LIBRARY_PATH:-}"
  fi
  mkdir -p "$RUN" "$LOGS"
  local name binary kind replicas metrics switch needs env instance index
  while IFS=$'\t' read -r name binary kind replicas metrics switch needs env; do
    if [[ "$switch" != - && "${!switch:-1}" == 0 ]]; then
      say "$name left out ($switch=0)"
      continue
    fi
    if [[ "$needs" != - && -z "${!needs:-}" ]]; then
      say "$name left out ($needs is not set)"
      continue
    fi
    if [[ "$kind" == gateway ]] && ! pid_alive "$name" && port_busy "$HTTP_PORT"; then
      die "port $HTTP_PORT is taken by another process; set ORBIT_HTTP_PORT"
    fi
    index=0
    for instance in $(instances "$name" "$kind" "$replicas"); do
      local extra=(ORBIT_WORKER_ID="$instance")
      [[ "$env" != - ]] && read -r -a more <<<"$env" && extra+=("${more[@]}")
      if [[ "$metrics" != - ]]; then
        local port=$((metrics + PORT_BASE + index))
        extra+=(ORBIT_METRICS_ADDR="127.0.0.1:$port")
        echo "$port" >"$RUN/$instance.metrics"
      elif [[ "$kind" == gateway ]]; then
        echo "$HTTP_PORT" >"$RUN/$instance.metrics"
        if [[ "${ORBIT_AUTH:-}" == on ]]; then
          mapfile -t keys < <(api_keys)
          extra+=(ORBIT_AUTH=on "${keys[@]}")
        fi
      elif [[ "$kind" == bridge ]]; then
        echo "$BRIDGE_PORT" >"$RUN/$instance.metrics"
      fi
      index=$((index + 1))
      # Its own NATS user, Postgres and Redis URLs (scripts/credentials.py); never the
      # operator's. A function not in nats/permissions.toml's list runs as `functions`.
      local own="$SECRETS/process/$name.env"
      [[ -f "$own" || "$kind" != function ]] || own="$SECRETS/process/functions.env"
      [[ -f "$own" ]] || die "no credentials for $name in $SECRETS/process; run scripts/infra.sh up"
      mapfile -t credentials <"$own"
      extra+=("${credentials[@]}")
      supervise "$instance" env -u ORBIT_NATS_ADMIN_PASSWORD "${extra[@]}" "$BIN/$binary"
    done
  done < <(processes)
  wait_port "$HTTP_PORT" 30 || die "gateway did not start; see $LOGS/gateway.log"
  prometheus_targets
  cat <<MSG

  Orbit is up.
    dashboard   http://127.0.0.1:$HTTP_PORT/
    API         http://127.0.0.1:$HTTP_PORT/api/v1/inference/submit   (README.md: five things to try)
    functions   http://127.0.0.1:$HTTP_PORT/api/v1/models
    KServe v2   http://127.0.0.1:$HTTP_PORT/v2/models/moving_average
    metrics     http://127.0.0.1:$HTTP_PORT/metrics   (every process's: just status; Prometheus: observability/)
    search      ${ORBIT_ELASTICSEARCH_URL:-(no Elasticsearch)}   (indices orbit-results, orbit-logs-*)
    NATS        nats://127.0.0.1:$NATS_PORT   (no credentials: a caller of functions; monitoring http://127.0.0.1:$NATS_MONITOR_PORT)
    Kafka       127.0.0.1:$KAFKA_PORT, topic inference_results (bridge health http://127.0.0.1:$BRIDGE_PORT/readyz)
    models      $ROOT/models/   (add a folder and it is served; docs/models.md)
    logs        $LOGS/
    API keys    $( [[ "${ORBIT_AUTH:-}" == on ]] && echo "$SECRETS/api-keys.env (Authorization: Bearer \$ORBIT_READ_KEY; the page: /?access_token=...)" || echo "off on loopback (ORBIT_AUTH=on just up: keys per scope)" )
  Stop with: just down

MSG
}

# The scrape targets of what runs, for observability/prometheus/prometheus.yml (file_sd):
# every process's /metrics with its process name as a label.
prometheus_targets() {
  mkdir -p "$DATA/prometheus"
  python3 - "$RUN" "$DATA/prometheus/targets.json" <<'PY'
import json, pathlib, sys
run, out = pathlib.Path(sys.argv[1]), sys.argv[2]
groups = []
for file in sorted(run.glob("*.metrics")):
    groups.append({"targets": [f"127.0.0.1:{file.read_text().strip()}"], "labels": {"process": file.stem}})
pathlib.Path(out).write_text(json.dumps(groups, indent=2) + "\n")
PY
}

down() {
  local name binary kind replicas metrics switch needs env instance file
  # The front door first, sinks last, so they drain what functions finish.
  while IFS=$'\t' read -r name binary kind replicas metrics switch needs env; do
    for instance in $(instances "$name" "$kind" "$replicas"); do stop "$instance"; rm -f "$RUN/$instance.metrics"; done
    # Replicas started with a larger ORBIT_REPLICAS_<NAME> earlier.
    for file in "$RUN/$name"-*.supervisor.pid "$RUN/$name"-*.pid; do
      [[ -e "$file" ]] && stop "$(basename "$(basename "$file" .pid)" .supervisor)"
    done
  done < <(processes | tac)
  "$ROOT/scripts/infra.sh" down
}

status() {
  echo "orbit ($ORBIT_ENV):"
  "$ROOT/scripts/infra.sh" status
  local name file
  for file in "$RUN"/*.pid; do
    [[ -e "$file" ]] || continue
    name="$(basename "$file" .pid)"
    [[ "$name" == *.supervisor ]] && continue
    [[ "$name" == nats || "$name" == redis || "$name" == kafka || "$name" == elasticsearch ]] && continue
    local metrics="" supervised=""
    [[ -f "$RUN/$name.metrics" ]] && metrics=", metrics http://127.0.0.1:$(cat "$RUN/$name.metrics")/metrics"
    if [[ -f "$RUN/$name.state" ]]; then
      supervised="$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(", supervised: %d restarts%s" % (s["restarts"], ", last exit " + s["last_exit"] if s["last_exit"] else ""))' "$RUN/$name.state" 2>/dev/null)"
    fi
    if pid_alive "$name"; then
      echo "  $name: running (pid $(cat "$file")$metrics$supervised)"
    elif pid_alive "$name.supervisor"; then
      echo "  $name: restarting$supervised"
    else
      echo "  $name: stopped (stale pid file)"
    fi
  done
  if port_busy "$HTTP_PORT"; then echo "  http: http://127.0.0.1:$HTTP_PORT/"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
