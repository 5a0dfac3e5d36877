#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for FerretDB: one directory holds the data
# (DIR/data), the Unix socket (DIR/socket) and the log (DIR/postgresql.log).
# No TCP port, no system service. As root, the cluster belongs to the
# `postgres` user (PostgreSQL refuses to run as root); otherwise to the caller.
#
#   ops/pg.sh start DIR [--fast]   initdb on first use (UTF-8, C locale), start,
#                                  wait until it accepts connections. --fast
#                                  trades crash safety for speed (tests only).
#   ops/pg.sh stop DIR             fast shutdown; nothing when not running
#   ops/pg.sh url DIR              FerretDB's --postgresql-url for the cluster
#   ops/pg.sh libpq DIR            the same as a libpq connection string
#
# A cluster that cannot start makes `start` print one line saying why and
# exit 1. Settings every cluster gets (see README "The embedded database"):
#   plan_cache_mode=force_custom_plan  FerretDB sends the field name of each
#       pushed-down filter as a bind parameter (_jsonb->$1 @> $2); only a
#       plan made for the actual value matches the expression indexes.
set -euo pipefail

PG_BIN=${TRELLIS_PG_BIN:-/usr/lib/postgresql/15/bin}
DB_NAME=ferretdb

say() { printf 'pg: %s\n' "$*" >&2; }

usage() {
	say "usage: ops/pg.sh start|stop|url|libpq DIR [--fast]"
	exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
shift 2
fast=0
[ "${1:-}" = "--fast" ] && fast=1

data=$dir/data
sock=$dir/socket
log=$dir/postgresql.log

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- \
			env PATH="$PG_BIN:/usr/bin:/bin" LANG=C LC_ALL=C "$@"
	else
		env LANG=C LC_ALL=C "$@"
	fi
}

case $cmd in
url)
	echo "postgres:///$DB_NAME?host=$sock&user=postgres"
	exit 0
	;;
libpq)
	echo "host=$sock user=postgres dbname=$DB_NAME"
	exit 0
	;;
stop)
	[ -f "$data/postmaster.pid" ] || exit 0
	as_owner "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
	exit 0
	;;
start) ;;
*) usage ;;
esac

if [ ! -x "$PG_BIN/postgres" ]; then
	say "PostgreSQL 15 is not installed ($PG_BIN/postgres missing): run make deps"
	exit 1
fi

mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
	if ! id postgres >/dev/null 2>&1; then
		say "there is no postgres user to own the cluster (install postgresql-15)"
		exit 1
	fi
	# the owner must reach DIR through every parent directory
	p=$dir
	while [ "$p" != / ]; do
		if ! setpriv --reuid=postgres --regid=postgres --init-groups test -x "$p" 2>/dev/null; then
			chmod o+x "$p"
		fi
		p=$(dirname "$p")
	done
	chown postgres:postgres "$dir"
fi

if [ ! -f "$data/PG_VERSION" ]; then
	rm -rf "$data"
	if ! out=$(as_owner "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust \
		--encoding=UTF8 --locale=C --no-instructions 2>&1); then
		say "initdb failed: $(printf '%s\n' "$out" | grep -v '^$' | tail -n 1)"
		exit 1
	fi
fi
if [ -f "$data/postmaster.pid" ] && as_owner "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
	say "a PostgreSQL is already running on $data"
	exit 1
fi

mkdir -p "$sock"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$sock"
chmod 700 "$sock"
opts="-c listen_addresses='' -c unix_socket_directories='$sock' -c max_connections=200"
opts="$opts -c plan_cache_mode=force_custom_plan -c shared_buffers=256MB"
opts="$opts -c log_min_messages=warning -c log_statement=none"
if [ "$fast" -eq 1 ]; then
	opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
: >"$log"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$log"
if ! as_owner "$PG_BIN/pg_ctl" -D "$data" -l "$log" -o "$opts" -w -t 60 start >/dev/null 2>&1; then
	why=$(grep -E 'FATAL|PANIC|ERROR' "$log" | tail -n 1)
	say "PostgreSQL did not start: ${why:-see $log}"
	exit 1
fi
if ! as_owner "$PG_BIN/psql" -h "$sock" -U postgres -d postgres -Atqc \
	"SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
	as_owner "$PG_BIN/createdb" -h "$sock" -U postgres -E UTF8 -l C -T template0 "$DB_NAME"
fi
