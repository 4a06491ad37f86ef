#!/usr/bin/env bash
# Entrypoint of the postgres:17 stand-in (a test fixture). It keeps the official image's documented contract:
# POSTGRES_USER (default postgres), POSTGRES_DB (default: the user), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE,
# POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), PGDATA; the data directory is
# initialised on the first start only; the server runs as the postgres user, listens on every interface, and
# stops with a fast shutdown on SIGTERM (the official image's STOPSIGNAL is SIGINT).
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR from the environment, or from the file named by VAR_FILE (not both).
file_env() {
  local var="$1" file="${1}_FILE" def="${2:-}" val
  if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
    echo "error: both $var and $file are set (but are exclusive)" >&2
    exit 1
  fi
  val="$def"
  if [ -n "${!var:-}" ]; then
    val="${!var}"
  elif [ -n "${!file:-}" ]; then
    val="$(< "${!file}")"
  fi
  export "$var"="$val"
  unset "$file"
}

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    echo "error: database is uninitialized and superuser password is not specified" >&2
    echo "       set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or POSTGRES_HOST_AUTH_METHOD=trust" >&2
    exit 1
  fi
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  # Create the database on a server reachable through the socket only, then stop it again.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
else
  echo "PostgreSQL Database directory appears to contain a database; Skipping initialization"
fi
unset POSTGRES_PASSWORD

postgres "${@:2}" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
status=0
wait "$pid" || status=$?
if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
