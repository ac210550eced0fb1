#!/bin/sh
# compose.yaml's Redis: the configuration, passwords included, goes to redis-server on its
# standard input, so no password is on a command line. ORBIT_REDIS_PASSWORD is the default
# (operators') user's; ORBIT_REDIS_PASSWORD_<USER> each user's of users.acl.
set -eu
{
  echo "bind 0.0.0.0"
  echo "port 6379"
  echo "protected-mode no"
  # The job cache is a cache: job keys expire and, past maxmemory, the least recently used of
  # them go first (Postgres has every job); orbit:stats has no TTL, so it is never evicted.
  echo "maxmemory ${ORBIT_REDIS_MAXMEMORY:-1gb}"
  echo "maxmemory-policy volatile-lru"
  echo "save \"\""
  echo "appendonly no"
  echo "requirepass $ORBIT_REDIS_PASSWORD"
  grep -v '^#' /etc/orbit/users.acl | while read -r name rules; do
    [ -n "$name" ] || continue
    variable="ORBIT_REDIS_PASSWORD_$(echo "$name" | tr 'a-z-' 'A-Z_')"
    eval "password=\${$variable:?$variable is not set}"
    echo "user $name reset on >$password $rules"
  done
} | exec redis-server -
