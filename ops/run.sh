#!/usr/bin/env bash
# The dev stack behind `make run`: a private PostgreSQL 15 (var/pg, Unix
# socket only), FerretDB on it, redis-server (append-only file under
# var/redis), migrations, then the server in the foreground. Ctrl-C stops
# them all; data stays in var/.
# With TRELLIS_MONGO_URI or TRELLIS_REDIS_URL set, those are used instead of
# starting our own.
set -euo pipefail
cd "$(dirname "$0")/.."

VAR="$PWD/var"
# libmongoc's shared-memory counters (opened as the binary loads; see
# systemd/trellis.service): not used, and a killed process leaves them behind
export MONGOC_DISABLE_SHM=1
DEV_MONGO_PORT="${TRELLIS_DEV_MONGO_PORT:-27117}"
DEV_REDIS_PORT="${TRELLIS_DEV_REDIS_PORT:-6479}"
PORT="${TRELLIS_PORT:-8080}"
FERRETDB="${TRELLIS_FERRETDB_BIN:-$(go env GOPATH 2>/dev/null)/bin/ferretdb}"
mkdir -p "$VAR"

pids=()
pg_started=0
stop_all() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	[ "$pg_started" -eq 1 ] && bash ops/pg.sh stop "$VAR/pg"
	return 0
}
trap stop_all EXIT
trap 'exit 0' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 1 100); do port_busy "$1" && return 0; sleep 0.1; done
	echo "run: $2 did not start on port $1 (see $3)" >&2
	exit 1
}

if [ -z "${TRELLIS_MONGO_URI:-}" ]; then
	port_busy "$DEV_MONGO_PORT" && { echo "run: port $DEV_MONGO_PORT is taken; set TRELLIS_DEV_MONGO_PORT or TRELLIS_MONGO_URI" >&2; exit 1; }
	if [ -d "$VAR/ferretdb" ] && [ ! -d "$VAR/pg" ] && ls "$VAR/ferretdb"/*.sqlite >/dev/null 2>&1; then
		echo "run: $VAR/ferretdb holds data of the old SQLite backend, which Trellis no longer runs; move it away (the new database lives in $VAR/pg)" >&2
		exit 1
	fi
	bash ops/pg.sh start "$VAR/pg" || exit 1 # it said why
	pg_started=1
	mkdir -p "$VAR/ferretdb"
	"$FERRETDB" --handler=postgresql --postgresql-url="$(bash ops/pg.sh url "$VAR/pg")" \
		--state-dir="$VAR/ferretdb" --listen-addr="127.0.0.1:$DEV_MONGO_PORT" --debug-addr=- \
		--telemetry=disable --log-level=warn >"$VAR/ferretdb.log" 2>&1 &
	pids+=($!)
	wait_port "$DEV_MONGO_PORT" FerretDB "$VAR/ferretdb.log"
	export TRELLIS_MONGO_URI="mongodb://127.0.0.1:$DEV_MONGO_PORT/trellis"
	export TRELLIS_POSTGRESQL_URI="$(bash ops/pg.sh libpq "$VAR/pg")"
fi
if [ -z "${TRELLIS_REDIS_URL:-}" ]; then
	port_busy "$DEV_REDIS_PORT" && { echo "run: port $DEV_REDIS_PORT is taken; set TRELLIS_DEV_REDIS_PORT or TRELLIS_REDIS_URL" >&2; exit 1; }
	mkdir -p "$VAR/redis"
	redis-server --port "$DEV_REDIS_PORT" --bind 127.0.0.1 --dir "$VAR/redis" \
		--appendonly yes --save '' --daemonize no --logfile "$VAR/redis.log" &
	pids+=($!)
	wait_port "$DEV_REDIS_PORT" redis-server "$VAR/redis.log"
	export TRELLIS_REDIS_URL="redis://127.0.0.1:$DEV_REDIS_PORT/0"
fi

build/trellis migrate
build/trellis &
pids+=($!)
wait_port "$PORT" trellis "the output above"
cat <<TXT

  Trellis is running: http://127.0.0.1:$PORT
  Console: http://127.0.0.1:$PORT/app/  (sign up with POST /v1/signup, or seed a demo tenant:
           echo 'a-password-1' | build/trellis-demo seed --tenant demo)
  SDK:     http://127.0.0.1:$PORT/sdk/trellis.js
  Try:  curl -s http://127.0.0.1:$PORT/readyz
        curl -s http://127.0.0.1:$PORT/v1/openapi.json
  Data: $VAR (PostgreSQL in var/pg behind FerretDB on :$DEV_MONGO_PORT, Redis on :$DEV_REDIS_PORT).
  Ctrl-C stops everything.

TXT
wait "${pids[-1]}"
