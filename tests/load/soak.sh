#!/usr/bin/env bash
# Trellis soak: `make soak` (or `bash tests/load/soak.sh`).
#
# Starts a private stack on free loopback ports in a temporary directory -
# PostgreSQL (ops/pg.sh) with FerretDB on it, Redis, one server process -
# then runs tests/load/soak.py against it for SOAK_MINUTES (default 30):
# steady mixed traffic (CRM leads to deals, ERP orders through confirm,
# invoice and payment, task reminders from the job queue, a webhook to a
# local receiver, WebSocket clients checking every event arrives), sampling
# the server's RSS, open fds and threads. Prints a table per minute and
# writes the JSON report and the table under build/soak/; exits non-zero
# when soak.py's checks fail (README "Soak" says which) or the stack did
# not start. Tears everything down on any exit.
#
# The server is the release build (build/trellis), as production runs it:
# ASan keeps freed memory in quarantine (256 MiB by default) and maps
# shadow memory, so an ASan server's RSS climbs for reasons of its own and
# a flat line would say nothing. Leaks at exit are LeakSanitizer's job in
# `make test`; SOAK_BIN runs another binary (an ASan one prints its leak
# report into build/soak/logs/trellis.log at exit).
#
# Environment (soak.py reads the SOAK_* ones):
#   SOAK_MINUTES          length of the traffic, default 30
#   SOAK_RATE             flows started per second, default 1 (about 14 requests each)
#   SOAK_CLIENTS          threads running flows, default 4
#   SOAK_WS_CLIENTS       WebSockets subscribed for the whole run, default 3
#   SOAK_SAMPLE_SECONDS   how often RSS/fds/threads are read, default 10
#   SOAK_WARMUP_FRAC      share of the run not judged, default 0.2 (at least 60 s)
#   SOAK_RSS_SLOPE_MIB_H, SOAK_RSS_RISE_MIB, SOAK_FD_SLACK  the bounds (soak_analysis.py)
#   SOAK_BIN              server binary, default build/trellis
#   SOAK_OUT              where the report and logs go, default build/soak
#   TRELLIS_WORKERS       server DB workers, default 4
#   TRELLIS_FERRETDB_BIN  default ~/go/bin/ferretdb
#   TRELLIS_PYTHON        default .venv/bin/python
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${SOAK_OUT:-$ROOT/build/soak}
MINUTES=${SOAK_MINUTES:-30}
WORKERS=${TRELLIS_WORKERS:-4}
BIN=${SOAK_BIN:-$ROOT/build/trellis}
FERRETDB_BIN=${TRELLIS_FERRETDB_BIN:-$HOME/go/bin/ferretdb}
PY=${TRELLIS_PYTHON:-$ROOT/.venv/bin/python}
STARTUP_TIMEOUT=60
# One tenant makes every request, in bursts when a slow minute catches
# up: limits lifted, as in the benchmark, so a 429 never passes for a fault.
RATE_LIMIT=1000000

PIDS=()
TMP=""
PG_STARTED=0

log() { printf 'soak: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 2
}

preflight() {
	[[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ $MINUTES != 0 ]] ||
		die "SOAK_MINUTES must be a positive number, got '$MINUTES'"
	[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "TRELLIS_WORKERS must be a positive integer, got '$WORKERS'"
	[[ -x $BIN ]] || die "$BIN not found: run 'make build' first"
	[[ -x $FERRETDB_BIN ]] || die "FerretDB not found at $FERRETDB_BIN (make deps; or TRELLIS_FERRETDB_BIN)"
	command -v redis-server >/dev/null || die "redis-server not found (make deps)"
	[[ -x $PY ]] || die "no Python at $PY: run 'make deps' or set TRELLIS_PYTHON"
	"$PY" -c 'import requests, websockets.sync.client' 2>/dev/null ||
		die "$PY lacks requests/websockets: run 'make deps'"
}

stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
	done
	if ((PG_STARTED)); then
		bash "$ROOT/ops/pg.sh" stop "$TMP/pg"
		cp -f "$TMP/pg/postgresql.log" "$TMP/postgresql.log" 2>/dev/null || true
	fi
	if [[ -n $TMP && -d $TMP ]]; then
		mkdir -p "$OUT/logs"
		cp -f "$TMP"/*.log "$OUT/logs/" 2>/dev/null || true
		if ((rc != 0)) && [[ -s $TMP/trellis.log ]]; then
			log "last lines of the server log ($OUT/logs/trellis.log):"
			tail -n 20 "$TMP/trellis.log" >&2 || true
		fi
		rm -rf "$TMP"
	fi
	exit "$rc"
}

wait_for_port() {
	local name=$1 pid=$2 port=$3 logfile=$4 deadline=$((SECONDS + STARTUP_TIMEOUT))
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logfile" >&2 || true
			die "$name exited during start-up (log above)"
		fi
		((SECONDS < deadline)) || die "$name did not listen on port $port within ${STARTUP_TIMEOUT}s"
		sleep 0.1
	done
}

main() {
	preflight
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	TMP=$(mktemp -d /tmp/trellis-soak-XXXXXX)
	chmod 755 "$TMP"
	mkdir -p "$OUT"
	local ports mongo_port redis_port http_port
	ports=$("$PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
	read -r mongo_port redis_port http_port <<<"$ports"

	bash "$ROOT/ops/pg.sh" start "$TMP/pg" || die "PostgreSQL did not start (above)"
	PG_STARTED=1
	mkdir -p "$TMP/ferretdb" "$TMP/redis"
	"$FERRETDB_BIN" --handler=postgresql --postgresql-url="$(bash "$ROOT/ops/pg.sh" url "$TMP/pg")" \
		--listen-addr="127.0.0.1:$mongo_port" --debug-addr=- --telemetry=disable \
		--state-dir="$TMP/ferretdb" --log-level=warn >"$TMP/ferretdb.log" 2>&1 &
	PIDS+=($!)
	wait_for_port FerretDB $! "$mongo_port" "$TMP/ferretdb.log"
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
		--save '' --daemonize no >"$TMP/redis.log" 2>&1 &
	PIDS+=($!)
	wait_for_port Redis $! "$redis_port" "$TMP/redis.log"

	# Tokens outlive the run: the WebSockets authenticate once.
	local ttl
	ttl=$("$PY" -c "import math; print(math.ceil(float('$MINUTES') * 60) + 3600)")
	local server_env=(
		-u TRELLIS_CONFIG
		MONGOC_DISABLE_SHM=1
		TRELLIS_HOST=127.0.0.1
		TRELLIS_PORT="$http_port"
		TRELLIS_MONGO_URI="mongodb://127.0.0.1:$mongo_port/trellis"
		TRELLIS_POSTGRESQL_URI="$(bash "$ROOT/ops/pg.sh" libpq "$TMP/pg")"
		TRELLIS_REDIS_URL="redis://127.0.0.1:$redis_port/0"
		TRELLIS_ENV=production
		TRELLIS_JWT_SECRET="soak-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		TRELLIS_WORKERS="$WORKERS"
		TRELLIS_MIGRATIONS_DIR="$ROOT/migrations"
		TRELLIS_RATE_LIMIT_RPS="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_BURST="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_USER_RPS="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_USER_BURST="$RATE_LIMIT"
		TRELLIS_ACCESS_TTL="$ttl"
		TRELLIS_WEBHOOK_ALLOW_PRIVATE=1
		TRELLIS_LOG_LEVEL=warn
	)
	log "applying migrations"
	(cd "$ROOT" && env "${server_env[@]}" "$BIN" migrate) >"$TMP/trellis-migrate.log" 2>&1 ||
		{
			tail -n 20 "$TMP/trellis-migrate.log" >&2
			die "trellis migrate failed (log above)"
		}
	# `env` execs the server, so $! is its pid: the one soak.py samples.
	(cd "$ROOT" && exec env "${server_env[@]}" "$BIN" serve) >"$TMP/trellis.log" 2>&1 &
	local server_pid=$!
	PIDS+=("$server_pid")
	local deadline=$((SECONDS + STARTUP_TIMEOUT)) code=""
	while [[ $code != 200 ]]; do
		kill -0 "$server_pid" 2>/dev/null || die "the server exited during start-up"
		((SECONDS < deadline)) || die "/readyz not 200 within ${STARTUP_TIMEOUT}s (last: $code)"
		sleep 0.2
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$http_port/readyz" || true)
	done
	log "server $server_pid ($BIN) on port $http_port; load average $(cut -d' ' -f1-3 /proc/loadavg)"

	local rc=0
	(cd "$ROOT/tests/load" && "$PY" soak.py --base-url "http://127.0.0.1:$http_port" --pid "$server_pid" \
		--out "$OUT" --server-log "$TMP/trellis.log" --minutes "$MINUTES") || rc=$?
	kill -0 "$server_pid" 2>/dev/null || { log "the server is gone"; rc=1; }
	return "$rc"
}

main "$@"
