#!/usr/bin/env bash
# The backing services on loopback: NATS (JetStream), PostgreSQL, Redis, a Kafka-protocol
# broker and an Elasticsearch-API server (ORBIT_ELASTICSEARCH=0 leaves the last one out).
#   scripts/infra.sh up      install what is missing, start what is not running, wait for it
#   scripts/infra.sh down    stop exactly what `up` started (by pid)
#   scripts/infra.sh status  what runs
#   scripts/infra.sh stop SERVICE   stop one (nats, postgres, redis, kafka, elasticsearch), as an
#                            outage would; `up` brings it back (the reliability tests do this)
# Writes $DATA/env with the connection URLs (secrets included; the file is outside git).
#
# `orbit up` and `orbit services up` run this after writing the credentials (the NATS server's
# users, each process's passwords: crates/stack/src/credentials.rs) and pass what the manifest
# says about Postgres: ORBIT_PG_ROLES (the processes' own roles), ORBIT_PG_WRITER_ROLES and
# ORBIT_PG_READER_ROLES (what the migrations grant them).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nats_up() {
  local conf="$DATA/nats/nats-server.conf"
  [[ -s "$conf" ]] || die "no $conf: start the services through orbit (orbit up, or orbit services up)"
  if pid_alive nats; then
    if tr '\0' ' ' <"/proc/$(cat "$RUN/nats.pid")/cmdline" | grep -q -- "$conf"; then
      # Users added to stack.toml since it started: a reload applies them, no restart. A
      # change the server cannot reload (the anonymous user, say) needs a restart.
      local log="$LOGS/nats.log" seen
      seen="$(stat -c %s "$log" 2>/dev/null || echo 0)"
      kill -HUP "$(cat "$RUN/nats.pid")"
      sleep 0.3
      if ! tail -c "+$((seen + 1))" "$log" 2>/dev/null | grep -q "Failed to reload"; then
        say "nats already running (users reloaded)"
        return
      fi
      say "restarting nats: its new configuration cannot be reloaded (its JetStream store is kept)"
    else
      say "restarting nats with per-component users (its JetStream store is kept)"
    fi
    stop nats
  fi
  port_busy "$NATS_PORT" && die "port $NATS_PORT is taken by another process; set ORBIT_NATS_PORT"
  mkdir -p "$DATA/nats"
  spawn nats "$(nats_bin)" -c "$conf" -p "$NATS_PORT" \
    -m "$NATS_MONITOR_PORT" -sd "$DATA/nats"
  wait_port "$NATS_PORT" 30 || die "nats did not start; see $LOGS/nats.log"
}

postgres_up() {
  local bin dir password
  bin="$(pg_bin)" || die "PostgreSQL binaries not found"
  dir="$(pg_data_dir)"
  echo "$dir" >"$RUN/postgres.dir"
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    say "initialising PostgreSQL in $dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir" --username=postgres --encoding=UTF8 \
      --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  fi
  if runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    say "postgres already running"
  else
    port_busy "$PG_PORT" && die "port $PG_PORT is taken by another process; set ORBIT_PG_PORT"
    # Bigger buffers and rarer checkpoints: fewer full-page images in the WAL under a steady
    # stream of multi-row inserts. Durability settings (fsync, synchronous_commit) stay default.
    # wal_init_zero=off: until checkpoints start recycling WAL segments (up to max_wal_size of
    # WAL), each new 16 MB segment was first filled with zeros, doubling the WAL writes of a
    # young database (perf: a fifth of the box's CPU in XLogFileInit during `just bench batch`).
    # The WAL itself is written and flushed exactly as before.
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB -c wal_buffers=16MB -c max_wal_size=4GB -c checkpoint_timeout=15min -c wal_init_zero=off" start >/dev/null \
      || die "postgres did not start; see $dir/server.log"
    say "started postgres (port $PG_PORT, data $dir)"
  fi
  password="$(secret postgres)"
  local psql=(runuser -u postgres -- "$bin/psql" -h "$dir" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'orbit'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE ROLE orbit LOGIN" >/dev/null
  fi
  "${psql[@]}" -c "ALTER ROLE orbit PASSWORD '$password'" >/dev/null
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'orbit'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE orbit OWNER orbit" >/dev/null
  fi
  # The processes' own roles (stack.toml's `postgres`): orbit (above) owns the tables and runs
  # the migrations; a writer may only insert results, a reader only read them (the migrations
  # grant them that on the tables, from ORBIT_PG_WRITER_ROLES / ORBIT_PG_READER_ROLES).
  local role
  for role in ${ORBIT_PG_ROLES:?set by orbit from stack.toml: run orbit services up}; do
    if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]]; then
      "${psql[@]}" -c "CREATE ROLE $role LOGIN" >/dev/null
    fi
    "${psql[@]}" -c "ALTER ROLE $role PASSWORD '$(secret "postgres-$role")'" >/dev/null
    "${psql[@]}" -c "GRANT CONNECT ON DATABASE orbit TO $role" >/dev/null
  done
}

redis_up() {
  if pid_alive redis; then say "redis already running"; return; fi
  port_busy "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set ORBIT_REDIS_PORT"
  mkdir -p "$DATA/redis" "$RUN" "$LOGS"
  local conf="$DATA/redis.conf"
  umask 077
  cat >"$conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
daemonize yes
pidfile $RUN/redis.pid
logfile $LOGS/redis.log
dir $DATA/redis
save ""
appendonly no
# The job cache is a cache: job keys expire (ORBIT_JOB_TTL_SECS) and, past maxmemory, the
# least recently used of them go first (Postgres still has every job). orbit:stats has no TTL,
# so volatile-lru never evicts the counters.
maxmemory ${ORBIT_REDIS_MAXMEMORY:-1gb}
maxmemory-policy volatile-lru
requirepass $(secret redis)
# The components' users exist from the first connection Redis accepts: a client that came
# back before they were made would fail to authenticate and, with redis-rs's connection
# manager, stay failed. redis_users below brings a running server's users up to date.
$(acl_users_conf)
CONF
  redis-server "$conf"
  wait_port "$REDIS_PORT" 30 || die "redis did not start; see $LOGS/redis.log"
  say "started redis (port $REDIS_PORT)"
}

# The `user` lines of redis.conf for deploy/redis/users.acl's users, with their passwords.
acl_users_conf() {
  local name rest
  while read -r name rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    echo "user $name reset on >$(secret "redis-$name") $rest"
  done <"$ROOT/deploy/redis/users.acl"
}

# ACL users per component, from deploy/redis/users.acl (compose.yaml's Redis reads the same
# file): the default user, with the requirepass password, is the operators' and the tests'.
redis_users() {
  local cli=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT") name rest rules
  while read -r name rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    read -r -a rules <<<"$rest"
    REDISCLI_AUTH="$(secret redis)" "${cli[@]}" ACL SETUSER "$name" reset on \
      ">$(secret "redis-$name")" "${rules[@]}" >/dev/null \
      || die "could not create the Redis user $name"
  done <"$ROOT/deploy/redis/users.acl"
}

# The Kafka-protocol broker keeps its log in memory: a restart starts it empty (the bridge
# recreates its topics). Point ORBIT_KAFKA_BROKERS at a real cluster for anything durable.
kafka_up() {
  if pid_alive kafka; then say "kafka already running"; return; fi
  port_busy "$KAFKA_PORT" && die "port $KAFKA_PORT is taken; set ORBIT_KAFKA_PORT"
  spawn kafka "$(tansu_bin)" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/
  wait_port "$KAFKA_PORT" 30 || die "kafka did not start; see $LOGS/kafka.log"
}

# noida-db speaks the Elasticsearch REST API and keeps its indices under DATA. Its binary is
# linked against a newer glibc's optional pidfd_spawnp (a weak symbol Rust's std looks up
# and does without), so the loader's warning about GLIBC_2.39 in its log is harmless.
elasticsearch_up() {
  [[ "${ORBIT_ELASTICSEARCH:-1}" == 0 ]] && return 0
  if pid_alive elasticsearch; then say "elasticsearch already running"; return; fi
  port_busy "$ELASTICSEARCH_PORT" && die "port $ELASTICSEARCH_PORT is taken; set ORBIT_ELASTICSEARCH_PORT"
  mkdir -p "$DATA/elasticsearch"
  # The emulator holds every document in memory (about ten times its file) and rewrites one
  # JSON file of them all: a dev stack that ran benchmarks for a few days would hold gigabytes.
  # Past ORBIT_ELASTICSEARCH_MAX_MB on disk it starts empty (every result is in Postgres).
  # The test stack's always starts empty: its documents are of earlier runs.
  local file="$DATA/elasticsearch/elasticsearch.json" max_mb="${ORBIT_ELASTICSEARCH_MAX_MB:-512}"
  [[ "$ORBIT_ENV" == test ]] && max_mb=0
  if [[ -f "$file" ]] && (( $(stat -c %s "$file") > max_mb * 1024 * 1024 )); then
    if [[ "$ORBIT_ENV" == test ]]; then
      say "starting the test Elasticsearch empty"
    else
      say "the local Elasticsearch holds $(( $(stat -c %s "$file") / 1048576 )) MB (over ORBIT_ELASTICSEARCH_MAX_MB=$max_mb): starting it empty"
    fi
    rm -f "$file"
  fi
  spawn elasticsearch "$(elasticsearch_bin)" start --only elasticsearch \
    --elasticsearch-port "$ELASTICSEARCH_PORT" --host 127.0.0.1 --data-dir "$DATA/elasticsearch"
  wait_port "$ELASTICSEARCH_PORT" 30 || die "elasticsearch did not start; see $LOGS/elasticsearch.log"
}

# The local stacks index lean result documents (no series: the emulator keeps every document
# in memory, and Postgres has the series); the Elasticsearch tests turn them whole again. They
# keep five minutes of results in it: the emulator rewrites its whole store after every change, so
# its CPU follows what it holds. The dev stack's sink sends a bulk every 5 s instead of every
# second, so the emulator saves a fifth as often (the tests keep 1 s: they wait for documents).
write_env() {
  umask 077
  cat >"$ENV_FILE" <<ENV
ORBIT_ENV=$ORBIT_ENV
ORBIT_NATS_URL=nats://127.0.0.1:$NATS_PORT
ORBIT_NATS_ADMIN_USER=admin
ORBIT_NATS_ADMIN_PASSWORD=$(secret nats-admin)
ORBIT_SECRETS_DIR=$SECRETS
ORBIT_PG_WRITER_ROLES=${ORBIT_PG_WRITER_ROLES:?set by orbit from stack.toml}
ORBIT_PG_READER_ROLES=${ORBIT_PG_READER_ROLES:?set by orbit from stack.toml}
ORBIT_DATABASE_URL=postgres://orbit:$(secret postgres)@127.0.0.1:$PG_PORT/orbit
ORBIT_REDIS_URL=redis://:$(secret redis)@127.0.0.1:$REDIS_PORT/0
ORBIT_NATS_MONITOR_URL=http://127.0.0.1:$NATS_MONITOR_PORT
ORBIT_HTTP_PORT=$HTTP_PORT
ORBIT_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
ORBIT_BRIDGE_HTTP_ADDR=127.0.0.1:$BRIDGE_PORT
ORBIT_ELASTICSEARCH_URL=$( [[ "${ORBIT_ELASTICSEARCH:-1}" == 0 ]] || echo "http://127.0.0.1:$ELASTICSEARCH_PORT" )
ORBIT_ELASTICSEARCH_DATA=${ORBIT_ELASTICSEARCH_DATA:-off}
ORBIT_ELASTICSEARCH_RESULTS_RETENTION_SECS=${ORBIT_ELASTICSEARCH_RESULTS_RETENTION_SECS:-300}
ORBIT_ELASTICSEARCH_LINGER_MS=${ORBIT_ELASTICSEARCH_LINGER_MS:-$( [[ "$ORBIT_ENV" == test ]] && echo 1000 || echo 5000 )}
ORBIT_KAFKA_PYTHONPATH=$(kafka_pythonpath)
ORBIT_TRITON_PYTHONPATH=$(triton_pythonpath)
ORBIT_OPENAPI_PYTHONPATH=$(openapi_pythonpath)
ORBIT_TANSU_BIN=$(tansu_bin)
ORBIT_TANSU_STORAGE_BIN=$(tansu_storage_bin)
ORBIT_ELASTICSEARCH_BIN=$(elasticsearch_bin)
ORBIT_PROMTOOL=$(promtool_bin)
ORT_DYLIB_PATH=$(ort_lib)
ENV
}

up() {
  "$ROOT/scripts/install.sh"
  mkdir -p "$RUN" "$LOGS"
  nats_up
  postgres_up
  redis_up
  redis_users
  kafka_up
  elasticsearch_up
  write_env
  say "infrastructure up: NATS :$NATS_PORT, Postgres :$PG_PORT, Redis :$REDIS_PORT, Kafka :$KAFKA_PORT, Elasticsearch :$ELASTICSEARCH_PORT ($ENV_FILE)"
}

postgres_down() {
  if [[ -f "$RUN/postgres.dir" ]]; then
    local bin dir; bin="$(pg_bin)"; dir="$(cat "$RUN/postgres.dir")"
    if runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null && say "stopped postgres"
    fi
  fi
}

down() {
  if pid_alive redis; then
    stop redis
  fi
  postgres_down
  stop elasticsearch
  stop kafka
  stop nats
}

stop_one() {
  case "${1:-}" in
    postgres) postgres_down ;;
    nats|redis|kafka|elasticsearch) stop "$1" ;;
    *) echo "usage: $0 stop nats|postgres|redis|kafka|elasticsearch" >&2; exit 2 ;;
  esac
}

status() {
  local name
  for name in nats redis kafka elasticsearch; do
    if pid_alive "$name"; then echo "  $name: running (pid $(cat "$RUN/$name.pid"))"; else echo "  $name: stopped"; fi
  done
  local bin dir
  if [[ -f "$RUN/postgres.dir" ]] && bin="$(pg_bin)" && dir="$(cat "$RUN/postgres.dir")" \
     && runuser -u postgres -- "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    echo "  postgres: running (port $PG_PORT, data $dir)"
  else
    echo "  postgres: stopped"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop) stop_one "${2:-}" ;;
  *) echo "usage: $0 up|down|status|stop SERVICE" >&2; exit 2 ;;
esac
