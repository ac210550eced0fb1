#!/usr/bin/env bash
# The Celery peer: the design Orbit replaces (FastAPI + Celery with a Redis broker, results in
# Postgres and the Redis cache), run beside Orbit for `just bench peers`.
#   bench/peers/celery/peer.sh up      install what is missing, start it, wait until it answers
#   bench/peers/celery/peer.sh down    stop what `up` started
# It runs its own Postgres and Redis servers (the binaries the stack uses, the stack's
# Postgres settings) on its own ports, so each side's CPU is counted apart. Its pid files, logs
# and data are under .orbit/<env>/peers/celery/, outside the stack's run/ folder.
# Ports: PEER_HTTP_PORT (8100), PEER_PG_PORT (5433), PEER_REDIS_PORT (6380).
# Tuning: PEER_API_WORKERS (uvicorn processes, 2), PEER_CELERY_CONCURRENCY (prefork children, 2).
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/lib.sh"

PEER="$DATA/peers/celery"
RUN="$PEER/run"
LOGS="$PEER/logs"
HERE="$ROOT/bench/peers/celery"
VENV="$TOOLS/peers/celery"
HTTP_PORT="${PEER_HTTP_PORT:-8100}"
PEER_PG_PORT="${PEER_PG_PORT:-5433}"
PEER_REDIS_PORT="${PEER_REDIS_PORT:-6380}"
API_WORKERS="${PEER_API_WORKERS:-2}"
CELERY_CONCURRENCY="${PEER_CELERY_CONCURRENCY:-2}"

install() {
  local stamp; stamp="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
  if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]]; then
    say "installing the Celery peer's pinned dependencies (bench/peers/celery/requirements.txt)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$stamp" >"$VENV/.stamp"
  fi
}

pg_dir() {
  local dir="$PEER/postgres"
  mkdir -p "$dir"; chown postgres:postgres "$dir"
  if ! runuser -u postgres -- test -w "$dir" 2>/dev/null; then
    dir="/var/lib/postgresql/orbit-peer-celery-$ORBIT_ENV-$(echo "$ROOT" | cksum | cut -d' ' -f1)"
    mkdir -p "$dir"; chown postgres:postgres "$dir"
  fi
  echo "$dir"
}

postgres_up() {
  local bin dir password
  bin="$(pg_bin)" || die "PostgreSQL binaries not found (just up installs them)"
  dir="$(pg_dir)"
  echo "$dir" >"$RUN/postgres.dir"
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    runuser -u postgres -- "$bin/initdb" -D "$dir" --username=postgres --encoding=UTF8 \
      --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  fi
  if ! runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    port_busy "$PEER_PG_PORT" && die "port $PEER_PG_PORT is taken; set PEER_PG_PORT"
    # The stack's Postgres settings (scripts/infra.sh): the same server, tuned the same way.
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $PEER_PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB -c wal_buffers=16MB -c max_wal_size=4GB -c checkpoint_timeout=15min -c wal_init_zero=off" start >/dev/null \
      || die "the peer's postgres did not start; see $dir/server.log"
  fi
  password="$(secret peer-celery-postgres)"
  local psql=(runuser -u postgres -- "$bin/psql" -h "$dir" -p "$PEER_PG_PORT" -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'celery'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE ROLE celery LOGIN" >/dev/null
  fi
  "${psql[@]}" -c "ALTER ROLE celery PASSWORD '$password'" >/dev/null
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'orders_db'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE orders_db OWNER celery" >/dev/null
  fi
  PGPASSWORD="$password" PGOPTIONS="-c client_min_messages=warning" "$bin/psql" -h 127.0.0.1 -p "$PEER_PG_PORT" -U celery -d orders_db \
    -v ON_ERROR_STOP=1 -q -f "$HERE/schema.sql" >/dev/null \
    || die "the peer's schema did not apply (bench/peers/celery/schema.sql)"
}

redis_up() {
  pid_alive redis && return
  port_busy "$PEER_REDIS_PORT" && die "port $PEER_REDIS_PORT is taken; set PEER_REDIS_PORT"
  mkdir -p "$PEER/redis"
  local conf="$PEER/redis.conf"
  # The stack's Redis settings: no snapshots, no append-only file.
  (umask 077; cat >"$conf" <<CONF
bind 127.0.0.1
port $PEER_REDIS_PORT
daemonize yes
pidfile $RUN/redis.pid
logfile $LOGS/redis.log
dir $PEER/redis
save ""
appendonly no
requirepass $(secret peer-celery-redis)
CONF
  )
  redis-server "$conf"
  wait_port "$PEER_REDIS_PORT" 30 || die "the peer's redis did not start; see $LOGS/redis.log"
}

write_env() {
  local redis_password pg_password
  redis_password="$(secret peer-celery-redis)"; pg_password="$(secret peer-celery-postgres)"
  (umask 077; cat >"$PEER/env" <<ENV
PEER_BROKER_URL=redis://:$redis_password@127.0.0.1:$PEER_REDIS_PORT/1
PEER_CACHE_URL=redis://:$redis_password@127.0.0.1:$PEER_REDIS_PORT/0
PEER_DATABASE_URL=postgresql://celery:$pg_password@127.0.0.1:$PEER_PG_PORT/orders_db
PEER_HTTP=http://127.0.0.1:$HTTP_PORT
ENV
  )
}

up() {
  mkdir -p "$RUN" "$LOGS"
  install
  postgres_up
  redis_up
  write_env
  set -a; source "$PEER/env"; set +a
  cd "$HERE"
  # The worker without gossip, mingle and heartbeats: one worker needs none of them, and
  # each wakes every process up every few seconds.
  spawn celery "$VENV/bin/celery" -A tasks worker --queues inference --pool prefork \
    --concurrency "$CELERY_CONCURRENCY" --without-gossip --without-mingle --without-heartbeat \
    --loglevel WARNING
  spawn api "$VENV/bin/uvicorn" app:app --host 127.0.0.1 --port "$HTTP_PORT" \
    --workers "$API_WORKERS" --loop uvloop --http httptools --no-access-log --log-level warning
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "the peer's API did not answer; see $LOGS/api.log"
    pid_alive api || die "the peer's API exited; see $LOGS/api.log"
    sleep 0.2
  done
  pid_alive celery || die "the Celery worker exited; see $LOGS/celery.log"
  say "the Celery peer answers on http://127.0.0.1:$HTTP_PORT"
}

down() {
  stop api
  stop celery
  local redis; redis="$(cat "$RUN/redis.pid" 2>/dev/null)"
  if [[ -n "$redis" ]] && kill -TERM "$redis" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$redis" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RUN/redis.pid"
  if [[ -f "$RUN/postgres.dir" ]]; then
    local bin dir; bin="$(pg_bin)"; dir="$(cat "$RUN/postgres.dir")"
    if runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    fi
  fi
  say "the Celery peer is stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
