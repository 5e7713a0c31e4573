#!/usr/bin/env bash
# A throwaway, project-local PostgreSQL cluster for tests and benchmarks.
#
#   scripts/postgres.sh install                 install Debian's postgresql if missing (root)
#   scripts/postgres.sh start DIR [PORT] [DB]   create (once) and start a cluster in DIR,
#                                               create database DB (default musig2), print its URL
#   scripts/postgres.sh url DIR [DB]            print the URL of a running cluster
#   scripts/postgres.sh stop DIR                stop it (fast shutdown); a stopped one is fine
#
# Every step is idempotent: start on a running cluster only (re)creates the database if needed
# and prints the URL. The cluster listens on 127.0.0.1 only (plus a unix socket in DIR/run),
# with trust authentication for the `postgres` role: it is for tests on this machine, never for
# money. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` OS
# user (created by the Debian package) and DIR is handed to that user.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

bindir() {
  local d
  # Highest installed major version.
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4n | tail -n1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
  echo "$d"
}

install_pg() {
  bindir >/dev/null && return 0
  is_root || die "PostgreSQL is not installed; run 'apt-get install postgresql' as root"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
  export DEBIAN_FRONTEND=noninteractive
  # The Debian package creates and starts a system cluster on 5432; ours do not use it.
  apt-get install -y --no-install-recommends postgresql >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends postgresql >&2; }
  bindir >/dev/null || die "PostgreSQL installation failed"
}

# Runs a PostgreSQL binary as the cluster's owner.
as_owner() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_of() { cat "$1/port" 2>/dev/null || die "no cluster in $1 (start it first)"; }

url_of() {
  local dir=$1 db=${2:-musig2}
  echo "postgres://postgres@127.0.0.1:$(port_of "$dir")/$db"
}

running() { as_owner "$BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

start() {
  local dir=${1:?usage: start DIR [PORT] [DB]} port=${2:-} db=${3:-musig2}
  [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name must match [a-z_][a-z0-9_]*"
  install_pg
  BIN=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -z "$port" ]; then
    port=$(cat "$dir/port" 2>/dev/null || echo 54329)
  fi
  [[ "$port" =~ ^[0-9]+$ ]] || die "port must be a number"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "the postgres OS user is missing (reinstall postgresql)"
    chown postgres: "$dir"
    # The server must reach DIR: every parent needs search permission for others.
    local p=$dir
    while [ "$p" != / ]; do p=$(dirname "$p"); [ -x "$p" ] || die "$p is not searchable"; done
  fi
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    as_owner mkdir -p "$dir/run"
    as_owner "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  if running "$dir"; then
    port=$(port_of "$dir")
  else
    echo "$port" >"$dir/port"
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c max_connections=200 -c shared_buffers=32MB" >&2 \
      || { tail -n 30 "$dir/data/server.log" >&2 || true; die "server did not start"; }
  fi
  local exists
  exists=$(as_owner "$BIN/psql" -h "$dir/run" -p "$port" -U postgres -d postgres -XAtq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [ "$exists" != 1 ]; then
    as_owner "$BIN/psql" -h "$dir/run" -p "$port" -U postgres -d postgres -Xq -c "CREATE DATABASE $db" >&2
  fi
  url_of "$dir" "$db"
}

stop() {
  local dir=${1:?usage: stop DIR}
  [ -s "$dir/data/PG_VERSION" ] || return 0
  BIN=$(bindir) || die "PostgreSQL is not installed"
  if running "$dir"; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -w -t 60 -m fast stop >&2
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  install) install_pg ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  url) url_of "${1:?usage: url DIR [DB]}" "${2:-}" ;;
  *) die "usage: $0 install | start DIR [PORT] [DB] | url DIR [DB] | stop DIR" ;;
esac
