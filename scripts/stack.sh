#!/usr/bin/env bash
# The whole Orbit stack on loopback: infrastructure plus the gateway, two moving_average
# replicas, one lstm_timeseries replica, both sinks and the Kafka bridge, built in release
# mode. ORBIT_KAFKA_BRIDGE=0 leaves the bridge out.
#   scripts/stack.sh up | down | status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"
REPLICAS="${ORBIT_MA_REPLICAS:-2}"
# Stopped in this order: the front door first, sinks last so they drain what functions finish.
PROCESSES=(gateway)
for i in $(seq 1 "$REPLICAS"); do PROCESSES+=("moving_average-$i"); done
PROCESSES+=(lstm_timeseries-1 bridge-kafka sink-redis sink-postgres)

load_env() {
  set -a; source "$ENV_FILE"; set +a
  export ORBIT_HTTP_ADDR="127.0.0.1:$HTTP_PORT" ORBIT_DASHBOARD_DIR="$ROOT/dashboard"
}

up() {
  "$ROOT/scripts/infra.sh" up
  say "building release binaries"
  (cd "$ROOT" && cargo build --release --quiet --bins)
  load_env
  "$BIN/sink-postgres" migrate >>"$LOGS/migrate.log" 2>&1 || die "migrations failed; see $LOGS/migrate.log"
  say "migrations applied"
  ORBIT_METRICS_ADDR="127.0.0.1:$METRICS_PORT_BASE" spawn sink-postgres "$BIN/sink-postgres"
  ORBIT_METRICS_ADDR="127.0.0.1:$((METRICS_PORT_BASE + 1))" spawn sink-redis "$BIN/sink-redis"
  if [[ "${ORBIT_KAFKA_BRIDGE:-1}" != 0 ]]; then
    spawn bridge-kafka "$BIN/bridge-kafka"
  fi
  for i in $(seq 1 "$REPLICAS"); do
    ORBIT_WORKER_ID="moving_average-$i" ORBIT_METRICS_ADDR="127.0.0.1:$((METRICS_PORT_BASE + 1 + i))" \
      spawn "moving_average-$i" "$BIN/moving-average"
  done
  # ORBIT_LSTM_DEVICE=cuda on a GPU machine: the CUDA build of ONNX Runtime and its libraries.
  if [[ "${ORBIT_LSTM_DEVICE:-cpu}" == cuda ]] && nvidia-smi >/dev/null 2>&1; then
    "$ROOT/scripts/install-gpu.sh"
    ORT_DYLIB_PATH="$(ort_gpu_lib)"
    export ORT_DYLIB_PATH LD_LIBRARY_PATH="$GPU_LIBS:${LD_LIBRARY_PATH:-}"
  fi
  ORBIT_WORKER_ID="lstm_timeseries-1" ORBIT_METRICS_ADDR="127.0.0.1:$((METRICS_PORT_BASE + 2 + REPLICAS))" \
    spawn lstm_timeseries-1 "$BIN/lstm-timeseries"
  if ! pid_alive gateway && port_busy "$HTTP_PORT"; then
    die "port $HTTP_PORT is taken by another process; set ORBIT_HTTP_PORT"
  fi
  spawn gateway "$BIN/orbit-gateway"
  wait_port "$HTTP_PORT" 30 || die "gateway did not start; see $LOGS/gateway.log"
  cat <<MSG

  Orbit is up.
    dashboard   http://127.0.0.1:$HTTP_PORT/
    API         http://127.0.0.1:$HTTP_PORT/api/v1/inference/submit   (README.md has curl examples)
    KServe v2   http://127.0.0.1:$HTTP_PORT/v2/models/moving_average
    metrics     http://127.0.0.1:$HTTP_PORT/metrics
    NATS        nats://127.0.0.1:$NATS_PORT   (monitoring http://127.0.0.1:$NATS_MONITOR_PORT)
    Kafka       127.0.0.1:$KAFKA_PORT, topic inference_results (bridge health http://127.0.0.1:$BRIDGE_PORT/readyz)
    logs        $LOGS/
  Stop with: just down

MSG
}

down() {
  local name
  for name in "${PROCESSES[@]}"; do stop "$name"; done
  # Replicas started with a larger ORBIT_MA_REPLICAS earlier.
  for file in "$RUN"/moving_average-*.pid; do [[ -e "$file" ]] && stop "$(basename "$file" .pid)"; done
  "$ROOT/scripts/infra.sh" down
}

status() {
  echo "orbit ($ORBIT_ENV):"
  "$ROOT/scripts/infra.sh" status
  local name file
  for file in "$RUN"/*.pid; do
    [[ -e "$file" ]] || continue
    name="$(basename "$file" .pid)"
    [[ "$name" == nats || "$name" == redis || "$name" == kafka ]] && continue
    if pid_alive "$name"; then echo "  $name: running (pid $(cat "$file"))"; else echo "  $name: stopped (stale pid file)"; fi
  done
  if port_busy "$HTTP_PORT"; then echo "  http: http://127.0.0.1:$HTTP_PORT/"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
