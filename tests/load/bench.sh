#!/usr/bin/env bash
# Trellis benchmark: `make bench` (or `bash tests/load/bench.sh`).
#
# Starts a private PostgreSQL with FerretDB on it, Redis, the release server (build/trellis) and
# nginx on free loopback ports in a temporary directory, then measures:
#
#   1. GET /healthz on Trellis against nginx serving a static file with the
#      same body, both with wrk -t2 -c64; goal: Trellis >= 50% of nginx.
#   2. GET /v1/tags/{id} (JWT + Redis session + FerretDB find) with wrk
#      -t2 -c64 against tests/load/baseline_find.c, the same find_one sent
#      straight to FerretDB from TRELLIS_WORKERS threads over a pool of the
#      same size; goal: Trellis >= 70% of the baseline.
#   3. The server's idle RSS after start-up (VmRSS once /readyz is 200 and
#      it has been idle a few seconds); goal: under 20 MiB.
#   4. WebSocket fan-out, side by side with Centrifugo: BENCH_WS_CLIENTS
#      clients of one tenant subscribed to one topic on one server process,
#      BENCH_WS_RATE events/s for BENCH_WS_SECONDS, driven by the same load
#      client (tests/load/wsfan) against a fresh Trellis process and then
#      against Centrifugo (tests/load/centrifugo). Figures: delivered
#      messages/s, publish-to-receive latency p50/p99/max, RSS per idle
#      subscribed connection. Goals: Trellis delivers at least as many
#      messages/s as Centrifugo with a p99 no higher, and uses at most
#      8 KiB per idle connection and less than Centrifugo.
#   5. Resume: one Trellis client catching up on BENCH_RESUME_EVENTS events
#      it missed (resume_from); catch-up events/s, the median of 5 resumes.
#   6. CRM lead intake to push - BENCH_CRM_PARTNERS partner clients post
#      leads through an API key while BENCH_CRM_LISTENERS WebSocket clients
#      (a manager) wait for each crm.lead.created event: leads/s accepted,
#      POST-to-event p50/p99, missing deliveries.
#   7. Data (tests/load/data): BENCH_DATA_TENANTS tenants of
#      BENCH_DATA_LEADS leads and one of BENCH_DATA_BIG_LEADS leads with
#      BENCH_DATA_BIG_DEALS deals, loaded through the server's data layer
#      (build/load_crm); then page 1 and page BENCH_DATA_PAGE of the big
#      tenant's leads (with and without a status filter), a lead POST, a
#      lead GET and the reports, each the p50 and p99 of
#      BENCH_DATA_REQUESTS requests; and how long loading took.
#   8. ERP (tests/load/wsfan erp-sales, erp-moves; tests/load/load_erp.c),
#      each on a fresh tenant: BENCH_ERP_CLIENTS clients run orders through
#      create -> confirm -> invoice -> pay -> ship on one server process
#      (orders/s, p50/p99 per step; goal >= 200 orders/s) while a WebSocket
#      listener on erp.orders times erp.order.paid after the payment's 201
#      (goal p99 <= 50 ms); stock moves/s on one hot product and spread over
#      BENCH_ERP_PRODUCTS products from clients spread over
#      BENCH_ERP_SERVERS processes (goal >= 500/s on the hot product, and
#      the stock left equal to the fold of the moves answered 201, with
#      GET /v1/erp/checks ok); GET /v1/erp/ledger/verify over
#      BENCH_ERP_ENTRIES entries loaded through the ledger's own
#      erp_ledger_post (build/load_erp; goal <= 2 s). Beside each, its
#      database floor: tests/load/baseline_erp.c sends the same work
#      straight to FerretDB with the raw driver once the servers are
#      stopped - the sales flow in its fewest statements (and in the
#      server's own), register appends on one hot key from
#      BENCH_ERP_SERVERS processes, the journal read back and its chain
#      checked - and the ratio says how much of that floor Trellis gets.
#   9. BPM (tests/load/wsfan bpm-flow, bpm-inbox; tests/load/load_bpm.c),
#      side by side with Flowable 7's embedded engine (tests/load/bpm_peer)
#      on the same process shape, service step -> user task -> exclusive
#      gateway -> end: BENCH_BPM_CLIENTS clients each start an instance,
#      wait for its bpm.task.assigned on a WebSocket, complete the task,
#      for BENCH_BPM_WARMUP + BENCH_BPM_SECONDS (instances/s, goal >=
#      Flowable's in the same run; start-to-assigned p99, goal <= 50 ms);
#      then BENCH_BPM_TASKS open tasks for one user (through the API, the
#      rest by build/load_bpm once the API's rate says all would take over
#      BENCH_BPM_API_BUDGET) and BENCH_BPM_REQUESTS GETs of the inbox's
#      first page (goal p50 <= 20 ms; Flowable's inbox query over as many
#      tasks beside it).
#  10. Gateway (tests/load/wsfan gw-hooks, gw-fill, gw-changes): leads
#      created through the API at BENCH_GW_RATE/s for BENCH_GW_SECONDS while
#      one webhook on crm.leads points at a receiver inside wsfan, once
#      answering every delivery and once failing BENCH_GW_FAIL_PCT% of them
#      with 500 (seeded): deliveries/s, p50/p99 from the POST's 201 to the
#      successful delivery (goal p99 <= 100 ms, healthy receiver), events
#      never delivered after BENCH_GW_DRAIN s (goal 0); then a tenant's
#      stream filled with BENCH_GW_FEED_EVENTS events straight in Redis, in
#      the server's format, and GET /v1/changes?limit=500 pages followed by
#      BENCH_GW_CLIENTS clients for BENCH_GW_FEED_SECONDS: pages/s, p50/p99.
#  11. Scale-out (BENCH_ONLY=scale): GET /v1/me (wrk), WebSocket fan-out
#      and the ERP order flow (wsfan fanout, erp-sales) through haproxy
#      (ops/haproxy-config.sh) with 1 and then 3 server processes in the
#      same run, side by side with the ratio 3/1.
#
# Prints a table with each figure, its baseline, the ratio and PASS/MISS,
# and writes the same table to build/bench/results.md (raw wrk and
# baseline output and the process logs go to build/bench/ too).
#
# Exit status: 0 when every measurement ran, whether or not the goals were
# met; non-zero when something failed to run or a measured request failed
# (non-2xx responses or socket errors make the numbers meaningless).
#
# Environment:
#   BENCH_SECONDS         length of each run, default 10
#   BENCH_ME_ROUNDS       /healthz-then-/v1/me pairs for the identity ratio
#                         (the median pair's ratio is reported), default 3
#   BENCH_IDLE_SECONDS    idle time before RSS is read, default 3
#   BENCH_SETTLE_SECONDS  pause before each run, default 3
#   TRELLIS_WORKERS       server DB workers = baseline threads, default 4
#   TRELLIS_BIN           server binary, default build/trellis
#   TRELLIS_FERRETDB_BIN  default ~/go/bin/ferretdb
#   TRELLIS_PYTHON        default .venv/bin/python (falls back to
#                         /tmp/vtest/bin/python when .venv is missing)
#   BENCH_ONLY            all (default), http (1-3 and the identity runs),
#                         ws (4 and 5), crm (6), data (7), erp (8), bpm (9)
#                         gateway (10) or scale (11)
#   BENCH_WS_CLIENTS      WebSocket clients, default 10000
#   BENCH_WS_SECONDS      publishing time, default 30
#   BENCH_WS_RATE         events per second, default 100
#   BENCH_WS_IDLE_SECONDS all clients subscribed and idle this long before
#                         RSS is read, default 5
#   BENCH_RESUME_EVENTS   events the resuming client catches up on, default 10000
#   CENTRIFUGO_VERSION    default v5.4.9 (see tests/load/centrifugo/install.sh)
#   Quick WebSocket run:  BENCH_ONLY=ws BENCH_WS_CLIENTS=500 BENCH_WS_SECONDS=5 \
#                         BENCH_RESUME_EVENTS=1000 bash tests/load/bench.sh
#   BENCH_CRM_LISTENERS   WebSocket clients waiting for lead events, default 500
#   BENCH_CRM_PARTNERS    partner clients posting leads, default 32
#   BENCH_CRM_SECONDS     lead posting time, default 20
#   BENCH_DATA_TENANTS    small tenants, default 100
#   BENCH_DATA_LEADS      leads of each small tenant, default 10000
#   BENCH_DATA_BIG_LEADS  leads of the big tenant, default 200000
#   BENCH_DATA_BIG_DEALS  deals of the big tenant, default 100000
#   BENCH_DATA_REQUESTS   requests per figure, default 200
#   BENCH_DATA_PAGE       the deep page, default 1000
#   Quick data run:       BENCH_ONLY=data BENCH_DATA_TENANTS=5 BENCH_DATA_LEADS=2000 \
#                         BENCH_DATA_BIG_LEADS=60000 BENCH_DATA_BIG_DEALS=20000 \
#                         BENCH_DATA_REQUESTS=50 bash tests/load/bench.sh
#   Quick CRM run:        BENCH_ONLY=crm BENCH_CRM_LISTENERS=100 BENCH_CRM_SECONDS=5 \
#                         bash tests/load/bench.sh
#   BENCH_ERP_CLIENTS     clients of the sales flow and of the stock moves, default 32
#   BENCH_ERP_SECONDS     sales flow: time orders are started in, default 30
#   BENCH_ERP_PRODUCTS    stocked products of the flow and of the spread moves,
#                         default 1000 (at most 1000)
#   BENCH_ERP_LINES       lines per order, default 3
#   BENCH_ERP_LISTENERS   WebSocket listeners for erp.order.paid, default 1
#   BENCH_ERP_SERVERS     server processes of the stock moves, default 3
#   BENCH_ERP_MOVE_SECONDS each stock-move phase (hot, spread), default 20
#   BENCH_ERP_ENTRIES     journal entries under the ledger verify, default 100000
#   BENCH_ERP_VERIFY_RUNS verify requests timed (the slowest counts), default 1
#   Quick ERP run:        BENCH_ONLY=erp BENCH_ERP_SECONDS=5 BENCH_ERP_PRODUCTS=100 \
#                         BENCH_ERP_MOVE_SECONDS=5 BENCH_ERP_ENTRIES=5000 bash tests/load/bench.sh
#   BENCH_BPM_CLIENTS     clients of the flow (and Flowable's threads), default 32
#   BENCH_BPM_SECONDS     measured seconds of the flow, default 20
#   BENCH_BPM_WARMUP      seconds of the flow before them (both sides), default 5
#   BENCH_BPM_TASKS       open tasks under the inbox, default 100000
#   BENCH_BPM_REQUESTS    timed inbox GETs (and Flowable queries), default 200
#   BENCH_BPM_PROBE       instances started through the API at a time, default 2000
#   BENCH_BPM_API_BUDGET  seconds the API may take for all the tasks; when the
#                         time spent plus the rest at the last batch's rate
#                         says longer, build/load_bpm writes the rest, default 600
#   BENCH_BPM_INBOX_SECONDS  timed inbox GETs stop after this long even when
#                         fewer than BENCH_BPM_REQUESTS were made, default 600
#   Quick BPM run:        BENCH_ONLY=bpm BENCH_BPM_SECONDS=5 BENCH_BPM_TASKS=5000 \
#                         BENCH_BPM_REQUESTS=50 bash tests/load/bench.sh
#   BENCH_GW_RATE         leads (events) created per second, default 50
#   BENCH_GW_SECONDS      seconds leads are created for, each delivery run, default 30
#   BENCH_GW_DRAIN        longest wait for deliveries after the last POST, default 40
#   BENCH_GW_FAIL_PCT     deliveries the failing receiver answers 500, percent, default 10
#   BENCH_GW_SEED         seed of the receiver's choice of failures, default 1
#   BENCH_GW_FEED_EVENTS  events in the changes feed's stream, default 1000000
#   BENCH_GW_CLIENTS      clients paging the changes feed, default 8
#   BENCH_GW_FEED_SECONDS seconds of paging, default 20
#   BENCH_SCALE_SECONDS   each scale figure's run, default 10
#   BENCH_SCALE_WS_CLIENTS WebSocket clients of the scale fan-out, default 500
#   BENCH_SCALE_WS_RATE   events/s of the scale fan-out, default 20
#   BENCH_SCALE_PRODUCTS  stocked products of the scale order flow, default 100
#   Quick gateway run:    BENCH_ONLY=gateway BENCH_GW_SECONDS=5 BENCH_GW_FEED_EVENTS=20000 \
#                         BENCH_GW_FEED_SECONDS=5 bash tests/load/bench.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$ROOT/build/bench"

DURATION=${BENCH_SECONDS:-10}
ME_ROUNDS=${BENCH_ME_ROUNDS:-3}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-3}
SETTLE_SECONDS=${BENCH_SETTLE_SECONDS:-3}
WORKERS=${TRELLIS_WORKERS:-4}
CONNECTIONS=64
WRK_THREADS=2
NGINX_WORKERS=1
# One tenant sends every request, so the per-tenant rate limit (default
# 200/s) would turn most of them into 429s; the bench lifts it.
RATE_LIMIT=1000000
ME_GOAL=0.60  # GET /v1/me at least 60% of /healthz
P99_GOAL=2.0  # /healthz p99 under login load at most 2x the quiet p99
LOG_LEVEL=warn

TRELLIS_BIN=${TRELLIS_BIN:-$ROOT/build/trellis}
FERRETDB_BIN=${TRELLIS_FERRETDB_BIN:-$HOME/go/bin/ferretdb}

# Goals from the issue.
HEALTHZ_GOAL=0.50
TAGS_GOAL=0.70
RSS_GOAL_MIB=20

HEALTH_BODY='{"status":"ok"}'
STARTUP_TIMEOUT=30

ONLY=${BENCH_ONLY:-all}
WS_CLIENTS=${BENCH_WS_CLIENTS:-10000}
WS_SECONDS=${BENCH_WS_SECONDS:-30}
WS_RATE=${BENCH_WS_RATE:-100}
WS_IDLE_SECONDS=${BENCH_WS_IDLE_SECONDS:-5}
RESUME_EVENTS=${BENCH_RESUME_EVENTS:-10000}
CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v5.4.9}
export CENTRIFUGO_VERSION
WS_MEM_GOAL=8192 # bytes of server RSS per idle subscribed connection
# Publish requests the load client keeps in flight at most; every one may
# be a connection of its own, so it counts in the open-files budget.
WS_PUBLISHERS=1024
CRM_LISTENERS=${BENCH_CRM_LISTENERS:-500}
CRM_PARTNERS=${BENCH_CRM_PARTNERS:-32}
CRM_SECONDS=${BENCH_CRM_SECONDS:-20}
DATA_TENANTS=${BENCH_DATA_TENANTS:-100}
DATA_LEADS=${BENCH_DATA_LEADS:-10000}
DATA_BIG_LEADS=${BENCH_DATA_BIG_LEADS:-200000}
DATA_BIG_DEALS=${BENCH_DATA_BIG_DEALS:-100000}
DATA_REQUESTS=${BENCH_DATA_REQUESTS:-200}
DATA_PAGE=${BENCH_DATA_PAGE:-1000}
ERP_CLIENTS=${BENCH_ERP_CLIENTS:-32}
ERP_SECONDS=${BENCH_ERP_SECONDS:-30}
ERP_PRODUCTS=${BENCH_ERP_PRODUCTS:-1000}
ERP_LINES=${BENCH_ERP_LINES:-3}
ERP_LISTENERS=${BENCH_ERP_LISTENERS:-1}
ERP_SERVERS=${BENCH_ERP_SERVERS:-3}
ERP_MOVE_SECONDS=${BENCH_ERP_MOVE_SECONDS:-20}
ERP_ENTRIES=${BENCH_ERP_ENTRIES:-100000}
ERP_VERIFY_RUNS=${BENCH_ERP_VERIFY_RUNS:-1}
# ERP goals from the issue.
ERP_ORDERS_GOAL=200  # whole sales flows per second
ERP_MOVES_GOAL=500   # stock moves per second on one hot product
ERP_PAID_P99_GOAL=50 # ms from the payment's 201 to erp.order.paid
ERP_VERIFY_GOAL=2    # s for GET /v1/erp/ledger/verify
BPM_CLIENTS=${BENCH_BPM_CLIENTS:-32}
BPM_SECONDS=${BENCH_BPM_SECONDS:-20}
BPM_WARMUP=${BENCH_BPM_WARMUP:-5}
BPM_TASKS=${BENCH_BPM_TASKS:-100000}
BPM_REQUESTS=${BENCH_BPM_REQUESTS:-200}
BPM_PROBE=${BENCH_BPM_PROBE:-2000}
BPM_API_BUDGET=${BENCH_BPM_API_BUDGET:-600}
BPM_INBOX_SECONDS=${BENCH_BPM_INBOX_SECONDS:-600}
# BPM goals from the issue.
BPM_ASSIGNED_P99_GOAL=50 # ms from starting an instance to its bpm.task.assigned
BPM_INBOX_P50_GOAL=20    # ms for the inbox's first page over BENCH_BPM_TASKS tasks
SCALE_SECONDS=${BENCH_SCALE_SECONDS:-10}
SCALE_WS_CLIENTS=${BENCH_SCALE_WS_CLIENTS:-500}
SCALE_WS_RATE=${BENCH_SCALE_WS_RATE:-20}
SCALE_PRODUCTS=${BENCH_SCALE_PRODUCTS:-100}
GW_RATE=${BENCH_GW_RATE:-50}
GW_SECONDS=${BENCH_GW_SECONDS:-30}
GW_DRAIN=${BENCH_GW_DRAIN:-40}
GW_FAIL_PCT=${BENCH_GW_FAIL_PCT:-10}
GW_SEED=${BENCH_GW_SEED:-1}
GW_FEED_EVENTS=${BENCH_GW_FEED_EVENTS:-1000000}
GW_CLIENTS=${BENCH_GW_CLIENTS:-8}
GW_FEED_SECONDS=${BENCH_GW_FEED_SECONDS:-20}
# Gateway goal from the issue.
GW_P99_GOAL=100 # ms from a lead's 201 to its webhook delivery, healthy receiver

# Every process started here, in start order; torn down in reverse.
PIDS=()
TMP=""
PG_STARTED=0

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

choose_python() {
	if [[ -n ${TRELLIS_PYTHON:-} ]]; then
		PY=$TRELLIS_PYTHON
	elif [[ -x $ROOT/.venv/bin/python ]]; then
		PY=$ROOT/.venv/bin/python
	elif [[ -x /tmp/vtest/bin/python ]]; then
		PY=/tmp/vtest/bin/python
	else
		die "no Python: run 'make deps' (creates .venv/) or set TRELLIS_PYTHON"
	fi
	[[ -x $PY ]] || die "TRELLIS_PYTHON=$PY is not executable"
}

preflight() {
	is_count "$DURATION" || die "BENCH_SECONDS must be a positive integer, got '$DURATION'"
	is_count "$ME_ROUNDS" || die "BENCH_ME_ROUNDS must be a positive integer, got '$ME_ROUNDS'"
	[[ $SETTLE_SECONDS =~ ^[0-9]+$ ]] || die "BENCH_SETTLE_SECONDS must be a whole number, got '$SETTLE_SECONDS'"
	is_count "$IDLE_SECONDS" || die "BENCH_IDLE_SECONDS must be a positive integer, got '$IDLE_SECONDS'"
	is_count "$WORKERS" || die "TRELLIS_WORKERS must be a positive integer, got '$WORKERS'"
	local tool
	for tool in wrk nginx redis-server gcc pkg-config curl; do
		command -v "$tool" >/dev/null || die "'$tool' not found (make deps installs it)"
	done
	pkg-config --exists libmongoc-1.0 || die "libmongoc-1.0 not found by pkg-config"
	[[ -x $TRELLIS_BIN ]] || die "$TRELLIS_BIN not found: run 'make build' first"
	[[ -x $FERRETDB_BIN ]] || die "FerretDB not found at $FERRETDB_BIN (set TRELLIS_FERRETDB_BIN)"
	choose_python
	"$PY" -c 'import bson, jwt, pymongo, redis' 2>/dev/null ||
		die "$PY lacks pymongo/redis/PyJWT: run 'make deps'"
}

# Stops one process: TERM, up to 5 s of grace, then KILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# EXIT trap: runs on success, failure and signals alike.
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
		cp -f "$TMP/nginx/error.log" "$OUT/logs/nginx-error.log" 2>/dev/null || true
		if ((rc != 0)) && [[ -s $TMP/trellis.log ]]; then
			log "last lines of the server log ($OUT/logs/trellis.log):"
			tail -n 20 "$TMP/trellis.log" >&2 || true
		fi
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# Prints N distinct free loopback TCP ports, space separated. The sockets
# are held open together so the kernel hands out different ports.
free_ports() {
	"$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# Waits until something accepts TCP connections on 127.0.0.1:PORT, failing
# early if PID has died.
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

# PostgreSQL (ops/pg.sh, durable settings as in `make run`) and FerretDB on it.
start_ferretdb() {
	local dir=$TMP/ferretdb
	mkdir -p "$dir"
	chmod 755 "$TMP"
	bash "$ROOT/ops/pg.sh" start "$TMP/pg" || die "PostgreSQL did not start (above)"
	PG_STARTED=1
	export TRELLIS_POSTGRESQL_URI
	TRELLIS_POSTGRESQL_URI=$(bash "$ROOT/ops/pg.sh" libpq "$TMP/pg")
	"$FERRETDB_BIN" --handler=postgresql --postgresql-url="$(bash "$ROOT/ops/pg.sh" url "$TMP/pg")" \
		--listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr=- \
		--telemetry=disable --state-dir="$dir" --log-level=warn \
		>"$TMP/ferretdb.log" 2>&1 &
	PIDS+=($!)
	wait_for_port FerretDB $! "$MONGO_PORT" "$TMP/ferretdb.log"
}

start_redis() {
	local dir=$TMP/redis
	mkdir -p "$dir"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
		--appendonly yes --save '' --daemonize no \
		>"$TMP/redis.log" 2>&1 &
	PIDS+=($!)
	wait_for_port Redis $! "$REDIS_PORT" "$TMP/redis.log"
}

# The server's settings, for both `migrate` and `serve`. TRELLIS_CONFIG is
# dropped so a developer's config file cannot change what is measured.
# `env` execs the server, so $! of a backgrounded `env ...` is its pid.
server_env() {
	SERVER_ENV=(
		-u TRELLIS_CONFIG
		MONGOC_DISABLE_SHM=1
		TRELLIS_HOST=127.0.0.1
		TRELLIS_PORT="$HTTP_PORT"
		TRELLIS_MONGO_URI="$MONGO_URI"
		TRELLIS_REDIS_URL="$REDIS_URL"
		TRELLIS_ENV=production
		TRELLIS_JWT_SECRET="$JWT_SECRET"
		TRELLIS_WORKERS="$WORKERS"
		TRELLIS_MIGRATIONS_DIR="$ROOT/migrations"
		TRELLIS_RATE_LIMIT_RPS="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_BURST="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_USER_RPS="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_USER_BURST="$RATE_LIMIT"
		TRELLIS_LOG_LEVEL="$LOG_LEVEL"
	)
}

start_server() {
	server_env
	log "applying migrations"
	if ! (cd "$ROOT" && env "${SERVER_ENV[@]}" "$TRELLIS_BIN" migrate) >"$TMP/trellis-migrate.log" 2>&1; then
		tail -n 20 "$TMP/trellis-migrate.log" >&2 || true
		die "trellis migrate failed (log above)"
	fi
	cd "$ROOT"
	env "${SERVER_ENV[@]}" "$TRELLIS_BIN" serve >"$TMP/trellis.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	cd - >/dev/null

	local deadline=$((SECONDS + STARTUP_TIMEOUT)) code
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$HTTP_PORT/readyz" || true)
		[[ $code == 200 ]] && break
		kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited during start-up"
		((SECONDS < deadline)) || die "/readyz not 200 within ${STARTUP_TIMEOUT}s (last: $code)"
		sleep 0.1
	done
}

# VmRSS of the server in KiB, read after it has been idle a while.
measure_idle_rss() {
	sleep "$IDLE_SECONDS"
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server died while idle"
	RSS_KIB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
	[[ -n $RSS_KIB ]] || die "no VmRSS in /proc/$SERVER_PID/status"
}

seed() {
	local output
	output=$("$PY" "$ROOT/tests/load/seed.py" --base-url "http://127.0.0.1:$HTTP_PORT" \
		--mongo-uri "$MONGO_URI" --redis-url "$REDIS_URL") ||
		die "seed.py failed"
	TENANT_ID=$(sed -n 's/^tenant_id=//p' <<<"$output")
	TAG_ID=$(sed -n 's/^tag_id=//p' <<<"$output")
	TOKEN=$(sed -n 's/^token=//p' <<<"$output")
	SLUG=$(sed -n 's/^slug=//p' <<<"$output")
	EMAIL=$(sed -n 's/^email=//p' <<<"$output")
	PASSWORD=$(sed -n 's/^password=//p' <<<"$output")
	[[ -n $TENANT_ID && -n $TAG_ID && -n $TOKEN ]] || die "seed.py printed no ids/token: $output"
}

start_nginx() {
	local dir=$TMP/nginx
	mkdir -p "$dir/www"
	printf '%s' "$HEALTH_BODY" >"$dir/www/healthz"
	# Workers drop to an unprivileged user when nginx runs as root, and
	# mktemp -d makes the directory private: open the path to them.
	chmod 755 "$TMP" "$dir" "$dir/www"
	chmod 644 "$dir/www/healthz"
	cat >"$dir/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $dir/www;
        location = /healthz { default_type application/json; }
    }
}
EOF
	nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$TMP/nginx.log" 2>&1 &
	PIDS+=($!)
	wait_for_port nginx $! "$NGINX_PORT" "$TMP/nginx.log"
}

# Fetches URL once (extra curl args after it) and checks the status; the
# body is left in $TMP/probe.body.
probe() {
	local name=$1 url=$2 code
	shift 2
	code=$(curl -s -o "$TMP/probe.body" -w '%{http_code}' --max-time 5 "$@" "$url" || true)
	if [[ $code != 200 ]]; then
		log "$name: GET $url answered $code:"
		cat "$TMP/probe.body" >&2 2>/dev/null || true
		echo >&2
		die "$name does not answer 200 before the benchmark"
	fi
}

# run_wrk NAME URL [wrk args...]: one wrk run; output kept in
# $OUT/wrk-NAME.txt and echoed. Sets WRK_RPS, WRK_P50, WRK_P99, WRK_ERRORS
# (non-2xx responses + socket errors) and WRK_ERROR_TEXT.
run_wrk() {
	local name=$1 url=$2 file=$OUT/wrk-$1.txt
	shift 2
	local conns=${RUN_CONNECTIONS:-$CONNECTIONS} threads=${RUN_THREADS:-$WRK_THREADS}
	log "wrk -t$threads -c$conns -d${DURATION}s $name"
	wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "$@" "$url" >"$file" 2>&1 ||
		{
			cat "$file" >&2
			die "wrk failed for $name"
		}
	sed 's/^/    /' "$file" >&2
	WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
	WRK_P50=$(awk '$1 == "50%" { print $2; exit }' "$file")
	WRK_P99=$(awk '$1 == "99%" { print $2; exit }' "$file")
	local non2xx socket
	non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$file")
	# "Socket errors: connect 0, read 0, write 0, timeout 0": sum the numbers.
	socket=$(awk '/Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i }
		END { print n + 0 }' "$file")
	WRK_ERRORS=$((${non2xx:-0} + ${socket:-0}))
	WRK_ERROR_TEXT=""
	if ((WRK_ERRORS > 0)); then
		WRK_ERROR_TEXT=$(grep -E 'Non-2xx|Socket errors' "$file" | sed 's/^ *//' | paste -sd ';' -)
		log "$name: $WRK_ERROR_TEXT"
	fi
	[[ -n $WRK_RPS ]] || die "no Requests/sec in the wrk output for $name"
}

run_baseline() {
	local bin=$OUT/baseline_find file=$OUT/baseline_find.txt
	log "building $bin"
	# shellcheck disable=SC2046 # pkg-config output is meant to split
	gcc -std=c11 -O2 -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
		$(pkg-config --cflags libmongoc-1.0) -o "$bin" "$ROOT/tests/load/baseline_find.c" \
		$(pkg-config --libs libmongoc-1.0) -pthread
	log "baseline_find: $WORKERS threads, ${DURATION}s"
	# The driver's warnings (e.g. FerretDB lacking endSessions at pool
	# teardown) go to a separate file, shown only when the run fails.
	"$bin" "$MONGO_URI" "$TENANT_ID" "$TAG_ID" "$WORKERS" "$DURATION" >"$file" 2>"$OUT/baseline_find.stderr" ||
		{
			cat "$file" "$OUT/baseline_find.stderr" >&2
			die "baseline_find failed"
		}
	sed 's/^/    /' "$file" >&2
	BASELINE_OPS=$(sed -n 's/^ops_per_sec=//p' "$file")
	[[ -n $BASELINE_OPS ]] || die "baseline_find printed no ops_per_sec"
}

# A pause between runs so one run's tail (queued work, TIME_WAIT sockets,
# FerretDB still busy) does not bleed into the next.
settle() { sleep "$SETTLE_SECONDS"; }

# ratio A B -> A/B with two decimals.
# wrk latencies ("850.00us", "1.42ms", "1.01s") in milliseconds.
to_ms() {
	awk -v t="$1" 'BEGIN {
		if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
		else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
		else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 }
		else print "n/a" }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# at_least VALUE GOAL -> PASS or MISS.
at_least() { awk -v v="$1" -v g="$2" 'BEGIN { print (v != "n/a" && v + 0 >= g + 0) ? "PASS" : "MISS" }'; }
below() { awk -v v="$1" -v g="$2" 'BEGIN { print (v + 0 < g + 0) ? "PASS" : "MISS" }'; }

write_results() {
	local healthz_ratio tags_ratio rss_mib commit
	healthz_ratio=$(ratio "$HEALTHZ_RPS" "$NGINX_RPS")
	tags_ratio=$(ratio "$TAGS_RPS" "$BASELINE_OPS")
	rss_mib=$(awk -v k="$RSS_KIB" 'BEGIN { printf "%.1f", k / 1024 }')
	commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
	HEALTHZ_RESULT=$(at_least "$healthz_ratio" "$HEALTHZ_GOAL")
	TAGS_RESULT=$(at_least "$tags_ratio" "$TAGS_GOAL")
	RSS_RESULT=$(below "$rss_mib" "$RSS_GOAL_MIB")
	local me_ratio=$ME_RATIO p99_ratio
	ME_RESULT=$(at_least "$me_ratio" "$ME_GOAL")
	QUIET_P99_MS=$(to_ms "$QUIET_P99")
	LOADED_P99_MS=$(to_ms "$LOADED_P99")
	p99_ratio=$(ratio "$LOADED_P99_MS" "$QUIET_P99_MS")
	P99_RESULT=$(awk -v v="$p99_ratio" -v g="$P99_GOAL" 'BEGIN { print (v != "n/a" && v + 0 <= g + 0) ? "PASS" : "MISS" }')

	{
		echo "# Trellis benchmark"
		echo
		echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $(nproc) CPUs," \
			"wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s, all on one machine over loopback."
		echo
		echo "| figure | Trellis | baseline | ratio | goal | result |"
		echo "| --- | ---: | --- | ---: | --- | --- |"
		echo "| GET /healthz, requests/s | $HEALTHZ_RPS | $NGINX_RPS (nginx, static file) | $healthz_ratio | >= $HEALTHZ_GOAL | $HEALTHZ_RESULT |"
		echo "| GET /v1/tags/{id}, requests/s | $TAGS_RPS | $BASELINE_OPS (baseline_find, $WORKERS threads) | $tags_ratio | >= $TAGS_GOAL | $TAGS_RESULT |"
		echo "| idle RSS, MiB | $rss_mib | - | - | < $RSS_GOAL_MIB | $RSS_RESULT |"
		echo "| GET /v1/me (JWT + Redis session), requests/s | $ME_RPS | $ME_HEALTHZ_RPS (Trellis /healthz, run just before) | $me_ratio | >= $ME_GOAL | $ME_RESULT |"
		echo "| /healthz p99 under 50 clients logging in | $LOADED_P99_MS ms | $QUIET_P99_MS ms (no login load) | $p99_ratio | <= $P99_GOAL | $P99_RESULT |"
		echo "| logins/s (Argon2id, 50 clients) | $LOGIN_RPS | - | - | - | - |"
		echo
		echo "| wrk run | requests/s | p50 | p99 | errors |"
		echo "| --- | ---: | ---: | ---: | --- |"
		echo "| nginx /healthz | $NGINX_RPS | $NGINX_P50 | $NGINX_P99 | ${NGINX_ERRORS_TEXT:-none} |"
		echo "| Trellis /healthz | $HEALTHZ_RPS | $HEALTHZ_P50 | $HEALTHZ_P99 | ${HEALTHZ_ERRORS_TEXT:-none} |"
		echo "| Trellis /v1/tags/{id} | $TAGS_RPS | $TAGS_P50 | $TAGS_P99 | ${TAGS_ERRORS_TEXT:-none} |"
		echo "| Trellis /v1/me (median pair) | $ME_RPS | $ME_P50 | $ME_P99 | ${ME_ERRORS_TEXT:-none} |"
		echo "| Trellis /healthz with /v1/me's Authorization header | $BEARER_RPS | $BEARER_P50 | $BEARER_P99 | ${BEARER_ERRORS_TEXT:-none} |"
		echo "| /healthz, 4 connections, quiet | - | $QUIET_P50 | $QUIET_P99 | - |"
		echo "| /healthz, 4 connections, during login load | - | $LOADED_P50 | $LOADED_P99 | - |"
		echo
		echo "Notes:"
		echo "- Trellis: release build, TRELLIS_LOG_LEVEL=$LOG_LEVEL (no per-request log lines)," \
			"TRELLIS_WORKERS=$WORKERS, TRELLIS_ENV=production, per-tenant rate limit raised to" \
			"$RATE_LIMIT/s (one tenant sends every request)."
		echo "- nginx: worker_processes $NGINX_WORKERS, access_log off, serves a file holding" \
			"the same body ($HEALTH_BODY)."
		echo "- /v1/tags/{id}: one tenant, 1000 tags, the same tag every request; JWT check," \
			"Redis session check and FerretDB find on each."
		echo "- baseline_find: find_one({_id}) limit 1 on \`tags\` plus the tenant_id check in C (the server's query) straight to FerretDB," \
			"mongoc_client_pool_t of $WORKERS clients, $WORKERS threads; run first, on an idle FerretDB," \
			"and every run after a ${SETTLE_SECONDS}s pause."
		echo "- /v1/me: $ME_ROUNDS pairs of a /healthz run then a /v1/me run, back to back;" \
			"the median pair's ratio is the figure. Every pair, ratio (/v1/me / /healthz):" \
			"$ME_PAIRS. /healthz sent with the same Authorization header (which it does not read)" \
			"ran at $BEARER_RPS requests/s, $(ratio "$BEARER_RPS" "$ME_HEALTHZ_RPS") of the median pair's" \
			"/healthz: that share of the gap is libwebsockets parsing the header."
		echo "- idle RSS: VmRSS of the server ${IDLE_SECONDS}s after /readyz first answered 200," \
			"before any benchmark request."
		if [[ -n $BODY_NOTE ]]; then
			echo "- The /healthz bodies differ in bytes: $BODY_NOTE."
		fi
	} >"$OUT/results.md"
}

# ---- WebSocket fan-out and resume (measurements 4 and 5) ----------------
#
# The same load client (tests/load/wsfan) and the same scenario against a
# fresh Trellis process and then against Centrifugo, one at a time, on the
# same two cores. wsfan prints one JSON object per run; ws_load turns it
# into shell variables.

ws_preflight() {
	local n
	for n in WS_CLIENTS WS_SECONDS WS_RATE WS_IDLE_SECONDS RESUME_EVENTS; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	command -v go >/dev/null || die "'go' not found: the WebSocket benchmark builds its load client and Centrifugo with Go"
	# One socket per client on both ends (the server and wsfan each hold
	# WS_CLIENTS), plus the publish connections and some slack.
	local need=$((WS_CLIENTS + WS_PUBLISHERS + 512)) hard
	hard=$(ulimit -Hn)
	if [[ $hard != unlimited ]] && ((hard < need)); then
		die "BENCH_WS_CLIENTS=$WS_CLIENTS needs $need open files per process; the hard limit is $hard (lower BENCH_WS_CLIENTS or raise the limit)"
	fi
	# Raised here, so every process started from now on inherits it.
	if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < need)); then
		ulimit -Sn "$need" || die "could not raise the open-files limit to $need"
	fi
}

ws_build_client() {
	WSFAN=$OUT/wsfan
	log "building $WSFAN"
	(cd "$ROOT/tests/load/wsfan" && go build -o "$WSFAN" .) || die "could not build tests/load/wsfan"
}

ws_install_centrifugo() {
	CENTRIFUGO_BIN=$(bash "$ROOT/tests/load/centrifugo/install.sh") || die "could not install Centrifugo $CENTRIFUGO_VERSION"
	[[ -x $CENTRIFUGO_BIN ]] || die "tests/load/centrifugo/install.sh printed no binary"
	log "$("$CENTRIFUGO_BIN" version | head -n 1) at $CENTRIFUGO_BIN"
}

# Waits until GET URL answers 200, failing early if PID has died.
wait_http_200() {
	local name=$1 pid=$2 url=$3 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		[[ $code == 200 ]] && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited during start-up"
		((SECONDS < deadline)) || die "$name: $url not 200 within ${STARTUP_TIMEOUT}s (last: $code)"
		sleep 0.1
	done
}

# A fresh Trellis process for the WebSocket runs, so that the memory per
# connection is measured from a clean start rather than on a heap the wrk
# runs grew. Same settings as the first one, plus room for the clients and
# access tokens that outlive the runs.
ws_start_trellis() {
	stop_pid "$SERVER_PID"
	read -r WS_PORT < <(free_ports 1)
	server_env
	SERVER_ENV+=(
		TRELLIS_PORT="$WS_PORT"
		TRELLIS_MAX_CONNECTIONS=$((WS_CLIENTS + WS_PUBLISHERS + 20000))
		TRELLIS_ACCESS_TTL=3600
	)
	cd "$ROOT"
	env "${SERVER_ENV[@]}" "$TRELLIS_BIN" serve >"$TMP/trellis-ws.log" 2>&1 &
	WS_SERVER_PID=$!
	PIDS+=("$WS_SERVER_PID")
	cd - >/dev/null
	wait_http_200 "Trellis (WebSocket runs)" "$WS_SERVER_PID" "http://127.0.0.1:$WS_PORT/readyz"
	log "Trellis for the WebSocket runs: pid $WS_SERVER_PID, port $WS_PORT"
}

# POSTs JSON BODY to URL (extra curl args after it); prints the answer's
# field FIELD, dies unless the status is WANT.
post_json_field() {
	local name=$1 url=$2 body=$3 want=$4 field=$5 code
	shift 5
	code=$(curl -s -o "$TMP/post.body" -w '%{http_code}' --max-time 30 \
		-H 'Content-Type: application/json' -d "$body" "$@" "$url" || true)
	[[ $code == "$want" ]] || die "$name: $url answered $code: $(head -c 300 "$TMP/post.body")"
	"$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TMP/post.body" "$field" ||
		die "$name: no '$field' in $(head -c 300 "$TMP/post.body")"
}

# A fresh owner token (an hour long on this server) for the subscribers,
# and a second user of the tenant whose name the publisher changes: the
# subscribers' own user would have its sessions refreshed on every change,
# which is not what a fan-out of someone else's edits costs.
ws_trellis_accounts() {
	local base="http://127.0.0.1:$WS_PORT"
	WS_TOKEN=$(post_json_field login "$base/v1/auth/login" \
		"{\"tenant_slug\":\"$SLUG\",\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" 200 access_token)
	WS_SUBJECT=$(post_json_field "create user" "$base/v1/users" \
		"{\"email\":\"subject@bench.test\",\"name\":\"Bench Subject\",\"roles\":[\"employee\"],\"password\":\"subject-password-$RANDOM$RANDOM\"}" \
		201 id -H "Authorization: Bearer $WS_TOKEN")
}

ws_start_centrifugo() {
	local dir=$TMP/centrifugo major=${CENTRIFUGO_VERSION%%.*} template
	template=$ROOT/tests/load/centrifugo/config.$major.json
	[[ -f $template ]] || die "no Centrifugo configuration for $major ($template)"
	mkdir -p "$dir"
	read -r CF_PORT < <(free_ports 1)
	CF_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	CF_API_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	sed -e "s/@PORT@/$CF_PORT/" -e "s/@HMAC_SECRET@/$CF_SECRET/" -e "s/@API_KEY@/$CF_API_KEY/" \
		"$template" >"$dir/config.json"
	(cd "$dir" && exec "$CENTRIFUGO_BIN" --config "$dir/config.json") >"$TMP/centrifugo.log" 2>&1 &
	CF_PID=$!
	PIDS+=("$CF_PID")
	wait_for_port Centrifugo "$CF_PID" "$CF_PORT" "$TMP/centrifugo.log"
	# One publish through the API: the key is right and the namespace exists.
	local answer
	answer=$(curl -s --max-time 5 -H "X-API-Key: $CF_API_KEY" -H 'Content-Type: application/json' \
		-d '{"channel":"bench:fan","data":{"probe":true}}' "http://127.0.0.1:$CF_PORT/api/publish" || true)
	[[ $answer == '{"result":{}}' ]] || die "Centrifugo's publish API answered '$answer'"
	log "Centrifugo: pid $CF_PID, port $CF_PORT"
}

# ws_run NAME ARGS...: one wsfan run; its JSON goes to $OUT/ws-NAME.json,
# its progress to the terminal and $OUT/ws-NAME.log.
ws_run() {
	local name=$1
	shift
	log "wsfan $1 ($name)"
	"$WSFAN" "$@" >"$OUT/ws-$name.json" 2> >(tee "$OUT/ws-$name.log" | sed 's/^/    /' >&2) ||
		die "wsfan $name failed (see $OUT/ws-$name.log)"
}

# ws_load FILE PREFIX: wsfan's JSON object as shell variables PREFIX_key.
ws_load() {
	local assignments
	assignments=$("$PY" - "$1" "$2" <<'PYEOF'
import json, shlex, sys
lines = open(sys.argv[1]).read().strip().splitlines()
for key, value in json.loads(lines[-1]).items():
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float):
        value = f"{value:.3f}"
    elif isinstance(value, list):
        value = ", ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in value)
    print(f"{sys.argv[2]}_{key}={shlex.quote(str(value))}")
PYEOF
	) || die "could not read wsfan's output in $1"
	eval "$assignments"
}

# ws_fanout NAME PREFIX PID ARGS...: a fan-out run with the settings, loaded
# as PREFIX_*; connection failures or failed publishes make it invalid.
ws_fanout() {
	local name=$1 prefix=$2 pid=$3
	shift 3
	ws_run "$name" fanout -clients "$WS_CLIENTS" -seconds "$WS_SECONDS" -rate "$WS_RATE" \
		-idle "${WS_IDLE_SECONDS}s" -publishers "$WS_PUBLISHERS" -pid "$pid" "$@"
	ws_load "$OUT/ws-$name.json" "$prefix"
	local failed=${prefix}_connect_failed errs=${prefix}_publish_errors dups=${prefix}_duplicates unk=${prefix}_unknown
	if ((${!failed} > 0 || ${!errs} > 0 || ${!dups} > 0 || ${!unk} > 0)); then
		WS_ERRORS=$((WS_ERRORS + 1))
	fi
	kill -0 "$pid" 2>/dev/null || die "the server of the $name run died"
}

ws_bench() {
	# Anything else busy on the machine skews these runs more than the
	# HTTP ones (the client alone needs a good part of a core): noted.
	WS_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	ws_build_client
	ws_install_centrifugo
	ws_start_trellis
	ws_trellis_accounts

	settle
	ws_fanout trellis TR "$WS_SERVER_PID" -target trellis \
		-ws "ws://127.0.0.1:$WS_PORT/v1/ws" -http "http://127.0.0.1:$WS_PORT" \
		-token "$WS_TOKEN" -user-id "$WS_SUBJECT"

	settle
	ws_run resume resume -ws "ws://127.0.0.1:$WS_PORT/v1/ws" -http "http://127.0.0.1:$WS_PORT" \
		-token "$WS_TOKEN" -user-id "$WS_SUBJECT" -events "$RESUME_EVENTS"
	ws_load "$OUT/ws-resume.json" RS
	[[ $RS_complete == true && -z ${RS_problem:-} ]] || WS_ERRORS=$((WS_ERRORS + 1))
	kill -0 "$WS_SERVER_PID" 2>/dev/null || die "Trellis died during the resume run"
	stop_pid "$WS_SERVER_PID"

	ws_start_centrifugo
	settle
	ws_fanout centrifugo CF "$CF_PID" -target centrifugo \
		-ws "ws://127.0.0.1:$CF_PORT/connection/websocket" -api "http://127.0.0.1:$CF_PORT/api" \
		-api-key "$CF_API_KEY" -hmac-secret "$CF_SECRET" -channel bench:fan
	stop_pid "$CF_PID"
}

# ws_field PREFIX KEY: the value of PREFIX_KEY, empty when unset.
ws_field() {
	local n="$1_$2"
	printf '%s' "${!n:-}"
}

# ws_invalid PREFIX: why that side's fan-out figures mean nothing, or empty.
ws_invalid() {
	local who=Trellis why=()
	[[ $1 == CF ]] && who=Centrifugo
	(($(ws_field "$1" connect_failed) > 0)) && why+=("$(ws_field "$1" connect_failed) connections failed")
	(($(ws_field "$1" publish_errors) > 0)) && why+=("$(ws_field "$1" publish_errors) of $(($(ws_field "$1" publish_errors) + $(ws_field "$1" published))) publishes failed")
	(($(ws_field "$1" duplicates) > 0)) && why+=("duplicates")
	(($(ws_field "$1" unknown) > 0)) && why+=("unknown events")
	((${#why[@]} > 0)) || return 0
	printf '%s: %s' "$who" "${why[0]}"
	((${#why[@]} == 1)) || printf ', %s' "${why[@]:1}"
}

# ws_p99_cell PREFIX: the p99 counting lost events, or why there is none.
ws_p99_cell() {
	local v
	v=$(ws_field "$1" latency_p99_all_ms)
	if awk -v v="$v" 'BEGIN { exit !(v < 0) }'; then
		echo "none: over 1% lost"
	else
		num "$v" 1
	fi
}

# ws_run_row LABEL PREFIX: one row of the per-run table.
ws_run_row() {
	local p=$2
	echo "| $1 | $(ws_field "$p" connected)/$(ws_field "$p" clients) |" \
		"$(num "$(ws_field "$p" published_per_sec)" 1) |" \
		"$(num "$(ws_field "$p" publish_p50_ms)" 1) / $(num "$(ws_field "$p" publish_p99_ms)" 1) |" \
		"$(ws_field "$p" delivered) / $(ws_field "$p" expected) | $(ws_field "$p" lost) |" \
		"$(ws_field "$p" duplicates) | $(ws_field "$p" dropped) |" \
		"$(num "$(ws_field "$p" server_cpu_pct)" 0)% | $(num "$(ws_field "$p" client_cpu_pct)" 0)% |" \
		"$(mib "$(ws_field "$p" rss_before_kib)") / $(mib "$(ws_field "$p" rss_idle_kib)") /" \
		"$(mib "$(ws_field "$p" rss_after_kib)") |"
}

# num VALUE DECIMALS
num() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

write_results_header() {
	local commit
	commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
	{
		echo "# Trellis benchmark"
		echo
		echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $(nproc) CPUs, all on one machine over loopback."
	} >"$OUT/results.md"
}

write_ws_results() {
	local cf="Centrifugo $CENTRIFUGO_VERSION"
	local rate_result p99_result mem_result
	rate_result=$(awk -v t="$TR_delivered_per_sec" -v c="$CF_delivered_per_sec" 'BEGIN { print (t > 0 && t >= c) ? "PASS" : "MISS" }')
	# p99 over every (client, event) pair expected; -1: more than 1% never
	# arrived, i.e. later than anything measured.
	p99_result=$(awk -v t="$TR_latency_p99_all_ms" -v c="$CF_latency_p99_all_ms" 'BEGIN { print (t >= 0 && (c < 0 || t <= c)) ? "PASS" : "MISS" }')
	mem_result=$(awk -v t="$TR_rss_per_conn_bytes" -v c="$CF_rss_per_conn_bytes" -v g="$WS_MEM_GOAL" 'BEGIN { print (t <= g && t < c) ? "PASS" : "MISS" }')
	# A side whose publishes failed (or that saw duplicates or unknown
	# events) ran a different load than the schedule: its delivered/s and
	# latency compare nothing, so those rows say so instead of PASS/MISS.
	local p bad invalid=""
	for p in TR CF; do
		bad=$(ws_invalid "$p")
		[[ -z $bad ]] || invalid+="${invalid:+; }$bad"
	done
	if [[ -n $invalid ]]; then
		rate_result="INVALID ($invalid)"
		p99_result="INVALID ($invalid)"
	fi
	if (($(ws_field TR connect_failed) > 0 || $(ws_field CF connect_failed) > 0)); then
		mem_result="INVALID (connections failed)"
	fi
	local resume_cell resume_result="-"
	if [[ $RS_complete == true && -z ${RS_problem:-} ]]; then
		resume_cell="$(num "$RS_catchup_per_sec" 0) ($(num "$(awk -v s="$RS_catchup_seconds" 'BEGIN { print s * 1000 }')" 0) ms)"
	else
		resume_cell="incomplete: $RS_received of $RS_events"
		resume_result="FAIL"
	fi
	{
		echo
		echo "## WebSocket fan-out and resume"
		echo
		echo "$WS_CLIENTS clients of one tenant subscribed to one topic on one server process;" \
			"$WS_RATE events/s published for $WS_SECONDS s. The same load client" \
			"(tests/load/wsfan) and the same scenario against Trellis and $cf, one after the other."
		echo
		echo "| figure | Trellis | $cf | goal | result |"
		echo "| --- | ---: | ---: | --- | --- |"
		echo "| delivered messages/s | $(num "$TR_delivered_per_sec" 0) | $(num "$CF_delivered_per_sec" 0) | >= Centrifugo | $rate_result |"
		echo "| publish-to-receive p99, ms (an event a client never got counts as never arriving) | $(ws_p99_cell TR) | $(ws_p99_cell CF) | <= Centrifugo | $p99_result |"
		echo "| events lost (share of client x event pairs) | $(num "$TR_lost_pct" 2)% | $(num "$CF_lost_pct" 2)% | - | - |"
		echo "| publish-to-receive of the delivered: p50 / p99 / max, ms | $(num "$TR_latency_p50_ms" 1) / $(num "$TR_latency_p99_ms" 1) / $(num "$TR_latency_max_ms" 1) | $(num "$CF_latency_p50_ms" 1) / $(num "$CF_latency_p99_ms" 1) / $(num "$CF_latency_max_ms" 1) | - | - |"
		echo "| RSS per idle subscribed connection, bytes | $(num "$TR_rss_per_conn_bytes" 0) | $(num "$CF_rss_per_conn_bytes" 0) | <= $WS_MEM_GOAL and < Centrifugo | $mem_result |"
		echo "| resume: catch up on $RESUME_EVENTS missed events, events/s | $resume_cell | - | - | $resume_result |"
		echo
		echo "| run | connected | events published/s | publish request p50 / p99, ms | delivered / expected | lost | duplicates | connections dropped | server CPU | wsfan CPU | server RSS before / idle / after, MiB |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
		ws_run_row Trellis TR
		ws_run_row "$cf" CF
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by the server under test and wsfan (its CPU is in the table):" \
			"the load client competes with what it measures, the same way for both servers." \
			"Load average (1, 5, 15 min) as these runs began: $WS_LOADAVG."
		echo "- delivered messages/s = event frames received by all clients / the time from the first" \
			"publish to the last publish or the last receipt, whichever is later. Latency: wsfan notes" \
			"when it sends each event's publish request and when each client receives the event (one" \
			"process, monotonic clock); every (client, event) pair counts once. Expected pairs: every" \
			"client subscribed when publishing began x every event the server accepted or delivered."
		echo "- Trellis path: HTTP PATCH /v1/users/{id} (JWT, session check, FerretDB write, outbox)," \
			"Redis stream + pub/sub, WebSocket frame; the event carries the user resource." \
			"Centrifugo path: HTTP POST /api/publish, its in-memory broker, WebSocket push" \
			"(JSON protocol) of {\"seq\": N}."
		echo "- RSS per connection: (server VmRSS with every client connected, authenticated," \
			"subscribed and idle ${WS_IDLE_SECONDS}s - VmRSS before the first connected) / clients connected," \
			"on a freshly started process."
		echo "- Both servers with their default limits (Trellis: ws_send_queue 1024 frames;" \
			"Centrifugo: client_queue_max_size 1 MB); a client past its queue is disconnected and" \
			"counted under connections dropped."
		echo "- Resume: one client saw an event, $RESUME_EVENTS more were made with PATCH" \
			"($(num "$RS_produce_per_sec" 0)/s), then a client connected with resume_from;" \
			"timed from sending auth to the ${RESUME_EVENTS}th event frame (first after" \
			"$(num "$RS_first_event_ms" 1) ms); order, duplicates and gaps checked. The figure is" \
			"the median of ${RS_runs:-1} resumes from the same event, each checked (ms: ${RS_catchup_ms_runs:-})."
		local p
		for p in TR CF; do
			local e="${p}_connect_error" pe="${p}_publish_error" dr="${p}_drop_reasons" who=Trellis
			if [[ $p == CF ]]; then who=$cf; fi
			if [[ -n ${!e:-} ]]; then
				echo "- $who: connections that failed, first error: ${!e}"
			fi
			if [[ -n ${!pe:-} ]]; then
				echo "- $who: publishes that failed, first error: ${!pe}"
			fi
			if [[ -n ${!dr:-} ]]; then
				echo "- $who: connections dropped during the run: ${!dr}"
			fi
			local un="${p}_unknown"
			if ((${!un:-0} > 0)); then
				echo "- $who: ${!un} frames carried a sequence number wsfan never published"
			fi
		done
		if [[ -n ${RS_problem:-} ]]; then
			echo "- Resume problem: $RS_problem"
		fi
		if [[ $CENTRIFUGO_VERSION == v5.* ]]; then
			echo "- Centrifugo v5.4.9, not v6: the Go module proxy reached here refuses every" \
				"github.com/centrifugal/centrifugo/v6 version (403); see tests/load/centrifugo/install.sh."
		fi
	} >>"$OUT/results.md"
}

# Measurements 1-3 and the identity runs: wrk against nginx, Trellis and
# the database baseline. Requests that failed are added to HTTP_ERRORS.
http_bench() {
	start_nginx

	local nginx_url="http://127.0.0.1:$NGINX_PORT/healthz"
	local healthz_url="http://127.0.0.1:$HTTP_PORT/healthz"
	local tags_url="http://127.0.0.1:$HTTP_PORT/v1/tags/$TAG_ID"
	local auth="Authorization: Bearer $TOKEN"
	probe nginx "$nginx_url"
	local nginx_body
	nginx_body=$(cat "$TMP/probe.body")
	probe Trellis "$healthz_url"
	BODY_NOTE=""
	if [[ $(cat "$TMP/probe.body") != "$nginx_body" ]]; then
		BODY_NOTE="Trellis answers /healthz with '$(cat "$TMP/probe.body")', nginx with '$nginx_body'"
		log "warning: bodies differ: $BODY_NOTE"
	fi
	probe "Trellis /v1/tags/{id}" "$tags_url" -H "$auth"
	grep -q "$TAG_ID" "$TMP/probe.body" || die "GET /v1/tags/$TAG_ID did not return that tag: $(cat "$TMP/probe.body")"

	# The baseline goes first, on an idle FerretDB: right after the Trellis
	# run, the server is still draining queued finds for a second or so and
	# the baseline would be measured against that load. Every run is
	# preceded by a pause for the same reason.
	settle
	run_baseline

	settle
	run_wrk nginx-healthz "$nginx_url"
	NGINX_RPS=$WRK_RPS NGINX_P50=$WRK_P50 NGINX_P99=$WRK_P99 NGINX_ERRORS_TEXT=$WRK_ERROR_TEXT
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	settle
	run_wrk trellis-healthz "$healthz_url"
	HEALTHZ_RPS=$WRK_RPS HEALTHZ_P50=$WRK_P50 HEALTHZ_P99=$WRK_P99 HEALTHZ_ERRORS_TEXT=$WRK_ERROR_TEXT
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	settle
	run_wrk trellis-tags "$tags_url" -H "$auth"
	TAGS_RPS=$WRK_RPS TAGS_P50=$WRK_P50 TAGS_P99=$WRK_P99 TAGS_ERRORS_TEXT=$WRK_ERROR_TEXT
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the benchmark"

	# Identity: what authentication costs, and whether Argon2 on the
	# workers ever holds up the loop. /healthz latency is probed with few
	# connections (so p99 is not queueing in wrk itself), first alone,
	# then while 50 clients log in as fast as they can.
	local me_url="http://127.0.0.1:$HTTP_PORT/v1/me"
	local login_url="http://127.0.0.1:$HTTP_PORT/v1/auth/login"
	probe "Trellis /v1/me" "$me_url" -H "$auth"
	# /v1/me against /healthz in back-to-back pairs, the median pair's
	# ratio reported: a neighbour's load on this shared machine moves both
	# halves of a pair alike, where two runs half a minute apart could
	# each catch a different load.
	local round pairs=""
	for ((round = 1; round <= ME_ROUNDS; round++)); do
		settle
		run_wrk "trellis-healthz-pair$round" "$healthz_url"
		local pair_healthz=$WRK_RPS
		HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
		run_wrk "trellis-me-pair$round" "$me_url" -H "$auth"
		HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
		pairs+="$(ratio "$WRK_RPS" "$pair_healthz") $WRK_RPS $pair_healthz $WRK_P50 $WRK_P99 ${WRK_ERROR_TEXT:-none}"$'\n'
	done
	# the median pair by ratio (the upper one of an even count)
	local median
	median=$(printf '%s' "$pairs" | sort -n -k1,1 | sed -n "$((ME_ROUNDS / 2 + 1))p")
	read -r ME_RATIO ME_RPS ME_HEALTHZ_RPS ME_P50 ME_P99 ME_ERRORS_TEXT <<<"$median"
	[[ $ME_ERRORS_TEXT == none ]] && ME_ERRORS_TEXT=""
	ME_PAIRS=$(printf '%s' "$pairs" | awk 'NF { printf "%s%s (%s / %s)", sep, $1, $2, $3; sep = ", " }')
	# What the bearer header alone costs (libwebsockets parses it byte by
	# byte): /healthz sent with the same Authorization header, not read.
	settle
	run_wrk trellis-healthz-bearer "$healthz_url" -H "$auth"
	BEARER_RPS=$WRK_RPS BEARER_P50=$WRK_P50 BEARER_P99=$WRK_P99 BEARER_ERRORS_TEXT=$WRK_ERROR_TEXT
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	settle
	RUN_CONNECTIONS=4 RUN_THREADS=1 run_wrk healthz-quiet "$healthz_url"
	QUIET_P50=$WRK_P50 QUIET_P99=$WRK_P99
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	cat >"$TMP/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"tenant_slug":"$SLUG","email":"$EMAIL","password":"$PASSWORD"}'
LUA
	settle
	log "wrk -t1 -c50 -d$((DURATION + 4))s login load (background)"
	wrk -t1 -c50 -d"$((DURATION + 4))s" --latency -s "$TMP/login.lua" "$login_url" >"$OUT/wrk-login.txt" 2>&1 &
	local login_pid=$!
	sleep 2
	RUN_CONNECTIONS=4 RUN_THREADS=1 run_wrk healthz-under-login "$healthz_url"
	LOADED_P50=$WRK_P50 LOADED_P99=$WRK_P99
	HTTP_ERRORS=$((HTTP_ERRORS + WRK_ERRORS))
	wait "$login_pid" || die "the login load failed"
	sed 's/^/    /' "$OUT/wrk-login.txt" >&2
	LOGIN_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/wrk-login.txt")
	if grep -q 'Non-2xx' "$OUT/wrk-login.txt"; then
		die "logins failed during the login load: $(grep 'Non-2xx' "$OUT/wrk-login.txt")"
	fi
	kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the benchmark"

	write_results
}

# ---- CRM: lead intake to push (measurement 6) ----------------------------
#
# A fresh Trellis process with the API-key rate limit lifted too: partners
# post leads through an API key (wsfan leads), a manager's WebSocket clients
# wait for each crm.lead.created. The step writes JSON to
# build/bench/crm-leads.json, loaded as shell variables (ws_load).

crm_preflight() {
	local n
	for n in CRM_LISTENERS CRM_PARTNERS CRM_SECONDS; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	command -v go >/dev/null || die "'go' not found: the CRM benchmark builds its load client (tests/load/wsfan) with Go"
	local need=$((CRM_LISTENERS + CRM_PARTNERS + 512)) hard
	hard=$(ulimit -Hn)
	if [[ $hard != unlimited ]] && ((hard < need)); then
		die "BENCH_CRM_LISTENERS=$CRM_LISTENERS needs $need open files per process; the hard limit is $hard"
	fi
	if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < need)); then
		ulimit -Sn "$need" || die "could not raise the open-files limit to $need"
	fi
}

crm_start_trellis() {
	stop_pid "$SERVER_PID"
	read -r CRM_PORT < <(free_ports 1)
	server_env
	SERVER_ENV+=(
		TRELLIS_PORT="$CRM_PORT"
		TRELLIS_RATE_LIMIT_KEY_RPS="$RATE_LIMIT"
		TRELLIS_RATE_LIMIT_KEY_BURST="$RATE_LIMIT"
		TRELLIS_MAX_CONNECTIONS=$((CRM_LISTENERS + CRM_PARTNERS + 1024))
		TRELLIS_ACCESS_TTL=3600
	)
	cd "$ROOT"
	env "${SERVER_ENV[@]}" "$TRELLIS_BIN" serve >"$TMP/trellis-crm.log" 2>&1 &
	CRM_SERVER_PID=$!
	PIDS+=("$CRM_SERVER_PID")
	cd - >/dev/null
	wait_http_200 "Trellis (CRM runs)" "$CRM_SERVER_PID" "http://127.0.0.1:$CRM_PORT/readyz"
	log "Trellis for the CRM runs: pid $CRM_SERVER_PID, port $CRM_PORT"
}

# The owner's token (tenant A, from seed.py), a manager whose token the
# listeners share, and the partners' API key.
crm_accounts() {
	local base="http://127.0.0.1:$CRM_PORT" password="manager-password-$RANDOM$RANDOM"
	CRM_TOKEN=$(post_json_field login "$base/v1/auth/login" \
		"{\"tenant_slug\":\"$SLUG\",\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" 200 access_token)
	post_json_field "create manager" "$base/v1/users" \
		"{\"email\":\"crm-manager@bench.test\",\"name\":\"CRM Manager\",\"roles\":[\"manager\"],\"password\":\"$password\"}" \
		201 id -H "Authorization: Bearer $CRM_TOKEN" >/dev/null
	CRM_MANAGER_TOKEN=$(post_json_field "manager login" "$base/v1/auth/login" \
		"{\"tenant_slug\":\"$SLUG\",\"email\":\"crm-manager@bench.test\",\"password\":\"$password\"}" 200 access_token)
	CRM_KEY=$(post_json_field "create API key" "$base/v1/api-keys" \
		'{"name":"bench partner","permissions":["crm.leads.write","crm.leads.read"]}' \
		201 key -H "Authorization: Bearer $CRM_TOKEN")
}

# crm_step NAME PREFIX COMMAND...: runs a step whose stdout is one JSON
# object, kept as $OUT/crm-NAME.json and loaded as PREFIX_*; progress to
# the terminal and $OUT/crm-NAME.log.
crm_step() {
	local name=$1 prefix=$2
	shift 2
	log "CRM: $name"
	"$@" >"$OUT/crm-$name.json" 2> >(tee "$OUT/crm-$name.log" | sed 's/^/    /' >&2) ||
		die "the CRM step $name failed (see $OUT/crm-$name.log)"
	ws_load "$OUT/crm-$name.json" "$prefix"
}

# proc_cpu PID: user + system CPU seconds the process has used.
proc_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

crm_bench() {
	CRM_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	local ferretdb_pid=${PIDS[0]} cpu0 wall0
	ws_build_client
	crm_start_trellis
	crm_accounts
	local base="http://127.0.0.1:$CRM_PORT"

	settle
	cpu0=$(proc_cpu "$ferretdb_pid") wall0=$(date +%s.%N)
	crm_step leads CL "$WSFAN" leads -ws "ws://127.0.0.1:$CRM_PORT/v1/ws" -http "$base" \
		-token "$CRM_MANAGER_TOKEN" -api-key "$CRM_KEY" -clients "$CRM_LISTENERS" \
		-posters "$CRM_PARTNERS" -seconds "$CRM_SECONDS" -pid "$CRM_SERVER_PID"
	CRM_FERRETDB_CPU=$(awk -v a="$cpu0" -v b="$(proc_cpu "$ferretdb_pid")" -v w0="$wall0" -v w1="$(date +%s.%N)" \
		'BEGIN { printf "%.0f", 100 * (b - a) / (w1 - w0) }')
	if ((CL_connect_failed > 0 || CL_post_errors > 0 || CL_duplicates > 0 || CL_unknown > 0)); then
		CRM_ERRORS=$((CRM_ERRORS + 1))
	fi
	kill -0 "$CRM_SERVER_PID" 2>/dev/null || die "the server died during the lead intake"

	kill -0 "$CRM_SERVER_PID" 2>/dev/null || die "the server died during the CRM runs"
	stop_pid "$CRM_SERVER_PID"
}

write_crm_results() {
	local lost_result="MISS"
	if ((CL_lost == 0 && CL_events > 0)); then lost_result=PASS; fi
	local p99_all
	p99_all=$(ws_p99_cell CL)
	{
		echo
		echo "## CRM lead intake"
		echo
		echo "$CRM_PARTNERS partner clients post leads (POST /v1/crm/leads, X-API-Key)" \
			"for $CRM_SECONDS s while $CRM_LISTENERS WebSocket clients (one manager's token) listen on crm.leads."
		echo
		echo "| figure | measured | baseline | ratio | goal | result |"
		echo "| --- | ---: | --- | ---: | --- | --- |"
		echo "| leads accepted/s ($CRM_PARTNERS partners, API key) | $(num "$CL_accepted_per_sec" 1) | - | - | - | - |"
		echo "| POST-to-event p50 / p99, ms ($CRM_LISTENERS listeners; p99 counting missing: $p99_all) | $(num "$CL_latency_p50_ms" 1) / $(num "$CL_latency_p99_ms" 1) | $(num "$CL_post_p50_ms" 1) / $(num "$CL_post_p99_ms" 1) (the POST's own answer) | - | - | - |"
		echo "| missing deliveries (listener x lead pairs) | $CL_lost of $CL_expected ($(num "$CL_lost_pct" 2)%) | - | - | 0 | $lost_result |"
		echo
		echo "| run | detail |"
		echo "| --- | --- |"
		echo "| intake | listeners connected $CL_connected/$CL_clients (subscribed at start: $CL_subscribers); leads posted $CL_posted, accepted $CL_accepted, failed $CL_post_errors${CL_post_statuses:+ ($CL_post_statuses)}; events delivered $CL_delivered of $CL_expected, duplicates $CL_duplicates, unknown $CL_unknown; POST-to-event max $(num "$CL_latency_max_ms" 1) ms; connections dropped $CL_dropped; CPU: server $(num "$CL_server_cpu_pct" 0)%, wsfan $(num "$CL_client_cpu_pct" 0)%, FerretDB ${CRM_FERRETDB_CPU}% (over the whole wsfan run, connecting included); server RSS $(mib "$CL_rss_before_kib") -> $(mib "$CL_rss_after_kib") MiB |"
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by the server, FerretDB, PostgreSQL, Redis and the load clients." \
			"Load average (1, 5, 15 min) as these runs began: $CRM_LOADAVG. Server: $TRELLIS_BIN," \
			"TRELLIS_WORKERS=$WORKERS."
		echo "- Each partner sends one POST at a time (a closed loop) with a unique name; POST-to-event =" \
			"when a listener read the crm.lead.created frame naming the lead - when wsfan sent that lead's POST" \
			"(one process, monotonic clock). Expected pairs: every lead accepted (201) x every listener" \
			"subscribed when posting began; a pair never delivered is missing. The API-key, user and tenant" \
			"rate limits are lifted."
		if [[ -n ${CL_connect_error:-} ]]; then
			echo "- Listeners that failed to connect, first error: $CL_connect_error"
		fi
		if [[ -n ${CL_post_error:-} ]]; then
			echo "- Lead POSTs that failed during the intake, first error: $CL_post_error"
		fi
		if [[ -n ${CL_drop_reasons:-} ]]; then
			echo "- Listener connections dropped during the intake: $CL_drop_reasons"
		fi
	} >>"$OUT/results.md"
}

# ---- data: a million leads, page and report times (measurement 7) -------
#
# A fresh Trellis process; tests/load/data/data_bench.py signs the tenants
# up, loads them with build/load_crm and times the requests. It appends its
# section to results.md and prints its figures as JSON.
data_preflight() {
	local n
	for n in DATA_TENANTS DATA_LEADS DATA_BIG_LEADS DATA_BIG_DEALS DATA_REQUESTS DATA_PAGE; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	[[ -x $ROOT/build/load_crm ]] || die "build/load_crm not found: run 'make build/load_crm' (make bench does)"
	((DATA_BIG_LEADS * 5 / 10 >= (DATA_PAGE + 1) * 50)) ||
		die "BENCH_DATA_BIG_LEADS=$DATA_BIG_LEADS holds too few new leads for page $DATA_PAGE"
}

data_bench() {
	local port
	stop_pid "$SERVER_PID"
	read -r port < <(free_ports 1)
	server_env
	SERVER_ENV+=(TRELLIS_PORT="$port" TRELLIS_ACCESS_TTL=3600 TRELLIS_SIGNUP_ENABLED=1)
	cd "$ROOT"
	env "${SERVER_ENV[@]}" "$TRELLIS_BIN" serve >"$TMP/trellis-data.log" 2>&1 &
	DATA_SERVER_PID=$!
	PIDS+=("$DATA_SERVER_PID")
	cd - >/dev/null
	wait_http_200 "Trellis (data runs)" "$DATA_SERVER_PID" "http://127.0.0.1:$port/readyz"
	log "data: Trellis pid $DATA_SERVER_PID, port $port"
	settle
	env MONGOC_DISABLE_SHM=1 TRELLIS_MONGO_URI="$MONGO_URI" TRELLIS_POSTGRESQL_URI="$TRELLIS_POSTGRESQL_URI" \
		TRELLIS_REDIS_URL="$REDIS_URL" TRELLIS_LOG_LEVEL=warn \
		"$PY" "$ROOT/tests/load/data/data_bench.py" --base-url "http://127.0.0.1:$port" \
		--loader "$ROOT/build/load_crm" --out "$OUT" --markdown "$OUT/results.md" \
		--tenants "$DATA_TENANTS" --leads-per-tenant "$DATA_LEADS" --big-leads "$DATA_BIG_LEADS" \
		--big-deals "$DATA_BIG_DEALS" --requests "$DATA_REQUESTS" --page "$DATA_PAGE" \
		>"$OUT/data.json" 2> >(tee "$OUT/data.log" | sed 's/^/    /' >&2) ||
		die "the data runs failed (see $OUT/data.log)"
	kill -0 "$DATA_SERVER_PID" 2>/dev/null || die "the server died during the data runs"
	if grep -q '"failed": [1-9]' "$OUT/data.json"; then
		DATA_ERRORS=1
	fi
	stop_pid "$DATA_SERVER_PID"
}

# ---- ERP: sales flow, stock moves, paid events, ledger verify (8) -------
#
# Fresh tenants (POST /v1/signup) on fresh server processes, so that each
# figure is measured on its own data: wsfan erp-sales on one process (the
# flow, with a listener for erp.order.paid), wsfan erp-moves on
# BENCH_ERP_SERVERS processes (same FerretDB and Redis, clients spread
# over them), then build/load_erp and GET /v1/erp/ledger/verify on one.
# wsfan's JSON is loaded as shell variables (ES_*, EM_*).

erp_preflight() {
	local n
	for n in ERP_CLIENTS ERP_SECONDS ERP_PRODUCTS ERP_LINES ERP_LISTENERS ERP_SERVERS \
		ERP_MOVE_SECONDS ERP_ENTRIES ERP_VERIFY_RUNS; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	((ERP_LINES <= ERP_PRODUCTS)) || die "BENCH_ERP_LINES must be at most BENCH_ERP_PRODUCTS"
	((ERP_PRODUCTS <= 1000)) || die "BENCH_ERP_PRODUCTS is at most 1000 (GET /v1/erp/stock lists 1000 pairs)"
	command -v go >/dev/null || die "'go' not found: the ERP benchmark builds its load client (tests/load/wsfan) with Go"
	[[ -x $ROOT/build/load_erp ]] || die "build/load_erp not found: run 'make build/load_erp' (make bench does)"
	pkg-config --exists libsodium libpq || die "libsodium or libpq not found by pkg-config (baseline_erp needs them)"
}

# ---- the ERP's database floor (tests/load/baseline_erp.c) ----
#
# Each figure's floor runs once that figure's servers are stopped, so the
# database serves it alone; its key=value output is kept as
# build/bench/erp-floor-NAME.txt (the driver's warnings in .stderr).

erp_build_floor() {
	BASELINE_ERP=$OUT/baseline_erp
	log "building $BASELINE_ERP"
	# shellcheck disable=SC2046 # pkg-config output is meant to split
	gcc -std=c11 -O2 -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
		$(pkg-config --cflags libmongoc-1.0 libsodium libpq) -o "$BASELINE_ERP" \
		"$ROOT/tests/load/baseline_erp.c" $(pkg-config --libs libmongoc-1.0 libsodium libpq) -pthread
}

# The database's processes for baseline_erp to read the CPU of (its
# BASELINE_ERP_CPU): FerretDB, and the PostgreSQL postmaster, whose
# backends it counts with it.
erp_floor_cpu() {
	local pm
	pm=$(head -n 1 "$TMP/pg/data/postmaster.pid" 2>/dev/null || echo 0)
	echo "ferretdb=${PIDS[0]},postgresql=$pm"
}

# kv_load FILE PREFIX: the key=value lines of FILE as shell variables
# PREFIX_key.
kv_load() {
	local line
	while IFS= read -r line; do
		[[ $line =~ ^([a-z0-9_]+)=([^\ ]*)$ ]] || continue
		printf -v "$2_${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
	done <"$1"
}

# erp_floor NAME PREFIX ARGS...: one baseline_erp run, loaded as PREFIX_*.
erp_floor() {
	local name=$1 prefix=$2 file=$OUT/erp-floor-$1.txt
	shift 2
	log "baseline_erp $1 ($name)"
	env MONGOC_DISABLE_SHM=1 BASELINE_ERP_CPU="$(erp_floor_cpu)" "$BASELINE_ERP" "$@" \
		>"$file" 2>"$OUT/erp-floor-$name.stderr" || {
		cat "$file" >&2
		grep -v endSessions "$OUT/erp-floor-$name.stderr" >&2 || true
		die "baseline_erp $name failed"
	}
	sed 's/^/    /' "$file" >&2
	kv_load "$file" "$prefix"
}

# erp_floor_append NAME PREFIX KEYS: BENCH_ERP_SERVERS baseline_erp append
# processes at once, TRELLIS_WORKERS threads each, for
# BENCH_ERP_MOVE_SECONDS, on the register keys KEYS. Sets PREFIX_appends
# (all processes'), PREFIX_appends_per_sec (over the longest one's time),
# PREFIX_conflicts, PREFIX_statements_per_append, PREFIX_insert_ms and
# PREFIX_find_ms (means over the processes), PREFIX_exact (each key's newest
# sequence is the appends made) and PREFIX_ferretdb_cpu_ms /
# PREFIX_postgresql_cpu_ms (the database's CPU per append).
erp_floor_append() {
	local name=$1 prefix=$2 keys=$3 i failed=0 cpu assignments
	local -a pids=() files=()
	log "baseline_erp append ($name): $ERP_SERVERS processes x $WORKERS threads, ${ERP_MOVE_SECONDS}s, keys $keys"
	cpu=$(erp_floor_cpu)
	for ((i = 1; i <= ERP_SERVERS; i++)); do
		files+=("$OUT/erp-floor-$name-$i.txt")
		env MONGOC_DISABLE_SHM=1 BASELINE_ERP_CPU="$cpu" "$BASELINE_ERP" append "$MONGO_URI" \
			"$ERP_TENANT" "$WORKERS" "$ERP_MOVE_SECONDS" "$keys" \
			>"$OUT/erp-floor-$name-$i.txt" 2>"$OUT/erp-floor-$name-$i.stderr" &
		pids+=($!)
	done
	for ((i = 0; i < ${#pids[@]}; i++)); do
		wait "${pids[i]}" || failed=1
	done
	for ((i = 1; i <= ERP_SERVERS; i++)); do
		sed "s/^/    $i: /" "$OUT/erp-floor-$name-$i.txt" >&2
	done
	if ((failed)); then
		grep -hv endSessions "$OUT"/erp-floor-"$name"-*.stderr >&2 || true
		die "baseline_erp append ($name) failed"
	fi
	# every process read the database's CPU over the same time: the
	# largest reading covers them all
	assignments=$(awk -F= -v p="$prefix" '
		$1 == "appends" { n += $2 } $1 == "conflicts" { c += $2 }
		$1 == "finds" || $1 == "inserts" { st += $2 }
		$1 == "seconds" && $2 > s { s = $2 }
		$1 == "insert_ms" { im += $2; ni++ } $1 == "find_ms" { fm += $2; nf++ }
		$1 == "ferretdb_cpu_seconds" && $2 > fc { fc = $2 }
		$1 == "postgresql_cpu_seconds" && $2 > pc { pc = $2 }
		$1 ~ /^final_seq_/ && $2 > top[$1] { top[$1] = $2 }
		END {
			exact = "true"
			for (k in top) if (top[k] != n) exact = "false"
			printf "%s_appends=%d\n%s_conflicts=%d\n%s_exact=%s\n", p, n, p, c, p, exact
			printf "%s_appends_per_sec=%.1f\n", p, (s > 0 ? n / s : 0)
			printf "%s_statements_per_append=%.2f\n", p, (n > 0 ? st / n : 0)
			printf "%s_insert_ms=%.2f\n%s_find_ms=%.2f\n", p, (ni ? im / ni : 0), p, (nf ? fm / nf : 0)
			printf "%s_ferretdb_cpu_ms=%.2f\n", p, (n > 0 ? 1000 * fc / n : 0)
			printf "%s_postgresql_cpu_ms=%.2f\n", p, (n > 0 ? 1000 * pc / n : 0)
		}' "${files[@]}")
	eval "$assignments"
}

# erp_start_servers NAME N: N fresh server processes on free ports, one
# database; sets ERP_PORTS and ERP_PIDS (arrays). Their logs are
# trellis-erp-NAME-<i>.log.
erp_start_servers() {
	local name=$1 n=$2 i pid
	local -a ports
	read -r -a ports < <(free_ports "$n")
	ERP_PORTS=() ERP_PIDS=()
	server_env
	cd "$ROOT"
	for ((i = 0; i < n; i++)); do
		env "${SERVER_ENV[@]}" TRELLIS_PORT="${ports[i]}" TRELLIS_ACCESS_TTL=3600 TRELLIS_SIGNUP_ENABLED=1 \
			"$TRELLIS_BIN" serve >"$TMP/trellis-erp-$name-$((i + 1)).log" 2>&1 &
		pid=$!
		PIDS+=("$pid")
		ERP_PIDS+=("$pid")
		ERP_PORTS+=("${ports[i]}")
	done
	cd - >/dev/null
	for ((i = 0; i < n; i++)); do
		wait_http_200 "Trellis (ERP $name $((i + 1)))" "${ERP_PIDS[i]}" "http://127.0.0.1:${ERP_PORTS[i]}/readyz"
	done
	log "ERP $name: Trellis pids ${ERP_PIDS[*]}, ports ${ERP_PORTS[*]}"
}

erp_stop_servers() {
	local pid
	for pid in "${ERP_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "a server of the ERP runs (pid $pid) died"
		stop_pid "$pid"
	done
}

# erp_signup PORT NAME: a new tenant and its owner; sets ERP_TENANT and
# ERP_TOKEN (an hour long on these servers).
erp_signup() {
	local slug="bench-$2-$RANDOM$RANDOM" code
	code=$(curl -s -o "$TMP/signup.body" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
		-d "{\"tenant_name\":\"Bench $2\",\"tenant_slug\":\"$slug\",\"email\":\"owner@bench.test\",\"password\":\"bench-password-$RANDOM$RANDOM\",\"name\":\"Bench Owner\"}" \
		"http://127.0.0.1:$1/v1/signup" || true)
	[[ $code == 201 ]] || die "signup of the ERP tenant answered $code: $(head -c 300 "$TMP/signup.body")"
	read -r ERP_TENANT ERP_TOKEN < <("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["tenant"]["id"], j["access_token"])' "$TMP/signup.body") ||
		die "the signup answer has no tenant id or token"
}

# erp_step NAME PREFIX COMMAND...: a wsfan run whose stdout is one JSON
# object, kept as $OUT/erp-NAME.json and loaded as PREFIX_*.
erp_step() {
	local name=$1 prefix=$2
	shift 2
	log "ERP: $name"
	"$@" >"$OUT/erp-$name.json" 2> >(tee "$OUT/erp-$name.log" | sed 's/^/    /' >&2) ||
		die "the ERP step $name failed (see $OUT/erp-$name.log)"
	ws_load "$OUT/erp-$name.json" "$prefix"
}

# erp_settle_backlog PORT: stock-settle jobs not yet run (delayed, waiting
# or in flight), from /metrics.
erp_settle_backlog() {
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk '/^trellis_jobs\{queue="erp.stock.settle",state="(delayed|waiting|in_flight)"\}/ { n += $2 } END { print n + 0 }'
}

# The sales flow and erp.order.paid (measurements 8.1 and 8.3).
erp_sales() {
	erp_start_servers sales 1
	erp_signup "${ERP_PORTS[0]}" sales
	settle
	erp_step sales ES "$WSFAN" erp-sales -http "http://127.0.0.1:${ERP_PORTS[0]}" \
		-ws "ws://127.0.0.1:${ERP_PORTS[0]}/v1/ws" -token "$ERP_TOKEN" -clients "$ERP_CLIENTS" \
		-seconds "$ERP_SECONDS" -products "$ERP_PRODUCTS" -lines "$ERP_LINES" \
		-listeners "$ERP_LISTENERS" -pid "${ERP_PIDS[0]}"
	if ((ES_orders_failed > 0 || ES_connect_failed > 0 || ES_paid_duplicates > 0 || ES_paid_unknown > 0)); then
		ERP_ERRORS=$((ERP_ERRORS + 1))
	fi
	[[ $ES_checks_ok == true ]] || ERP_ERRORS=$((ERP_ERRORS + 1))
	erp_stop_servers
	# the floor: the fewest statements, from as many threads as clients
	# and from as many as the server has workers; the server's own
	# statements from as many threads as clients
	settle
	erp_floor sales BF orderflow "$MONGO_URI" "$ERP_TENANT" "$ERP_CLIENTS" "$ERP_SECONDS" \
		minimal "$ERP_PRODUCTS" "$ERP_LINES"
	settle
	erp_floor sales-workers BW orderflow "$MONGO_URI" "$ERP_TENANT" "$WORKERS" "$ERP_SECONDS" \
		minimal "$ERP_PRODUCTS" "$ERP_LINES"
	settle
	erp_floor sales-today BT orderflow "$MONGO_URI" "$ERP_TENANT" "$ERP_CLIENTS" "$ERP_SECONDS" \
		today "$ERP_PRODUCTS" "$ERP_LINES"
}

# Stock moves across BENCH_ERP_SERVERS processes (measurement 8.2).
erp_moves() {
	erp_start_servers moves "$ERP_SERVERS"
	erp_signup "${ERP_PORTS[0]}" moves
	local bases="" pids="" i
	for ((i = 0; i < ${#ERP_PORTS[@]}; i++)); do
		bases+="${bases:+,}http://127.0.0.1:${ERP_PORTS[i]}"
		pids+="${pids:+,}${ERP_PIDS[i]}"
	done
	settle
	erp_step moves EM "$WSFAN" erp-moves -http "$bases" -token "$ERP_TOKEN" \
		-clients "$ERP_CLIENTS" -seconds "$ERP_MOVE_SECONDS" -products "$ERP_PRODUCTS" -pids "$pids"
	if ((EM_hot_failed > 0 || EM_spread_failed > 0)); then
		ERP_ERRORS=$((ERP_ERRORS + 1))
	fi
	if ((EM_hot_mismatched > 0 || EM_spread_mismatched > 0)) || [[ $EM_checks_ok != true ]]; then
		ERP_ERRORS=$((ERP_ERRORS + 1))
	fi
	erp_stop_servers
	# the floor: appends on one hot register, and on a move's two (its
	# stock and the tenant's ledger), from as many processes as servers
	local tag=$RANDOM$RANDOM
	settle
	erp_floor_append hot BA "erp.stock/hot-$tag"
	settle
	erp_floor_append hot-ledger B2 "erp.stock/hot2-$tag,erp.ledger/$tag"
	if [[ $BA_exact != true || $B2_exact != true ]]; then
		ERP_FLOOR_PROBLEM="a hot register's newest sequence is not the appends made (see $OUT/erp-floor-hot*.txt)"
		ERP_ERRORS=$((ERP_ERRORS + 1))
	fi
}

# BENCH_ERP_ENTRIES journal entries through build/load_erp, then
# GET /v1/erp/ledger/verify timed BENCH_ERP_VERIFY_RUNS times
# (measurement 8.4).
erp_ledger() {
	erp_start_servers ledger 1
	local port=${ERP_PORTS[0]} i code t
	erp_signup "$port" ledger
	log "ERP: loading $ERP_ENTRIES journal entries (build/load_erp)"
	env MONGOC_DISABLE_SHM=1 TRELLIS_MONGO_URI="$MONGO_URI" TRELLIS_POSTGRESQL_URI="$TRELLIS_POSTGRESQL_URI" \
		TRELLIS_REDIS_URL="$REDIS_URL" TRELLIS_LOG_LEVEL=warn TRELLIS_WORKERS="$WORKERS" \
		"$ROOT/build/load_erp" "$ERP_TENANT" "$ERP_ENTRIES" \
		>"$OUT/erp-ledger-load.json" 2> >(tee "$OUT/erp-ledger-load.log" | sed 's/^/    /' >&2) ||
		die "build/load_erp failed (see $OUT/erp-ledger-load.log)"
	ws_load "$OUT/erp-ledger-load.json" EL
	# The stock-settle jobs the moves left (each move schedules one a
	# minute later) run on this server too: they are waited for, so that
	# the verify is timed alone.
	local deadline=$((SECONDS + 180))
	ERP_SETTLE_LEFT=$(erp_settle_backlog "$port")
	while ((ERP_SETTLE_LEFT > 0 && SECONDS < deadline)); do
		sleep 2
		ERP_SETTLE_LEFT=$(erp_settle_backlog "$port")
	done
	settle
	ERP_VERIFY_TIMES=() ERP_VERIFY_PROBLEM=""
	for ((i = 1; i <= ERP_VERIFY_RUNS; i++)); do
		log "ERP: GET /v1/erp/ledger/verify ($i of $ERP_VERIFY_RUNS)"
		read -r code t < <(curl -s -o "$OUT/erp-verify.json" -w '%{http_code} %{time_total}\n' --max-time 900 \
			-H "Authorization: Bearer $ERP_TOKEN" "http://127.0.0.1:$port/v1/erp/ledger/verify" || echo "0 0")
		log "    $code in ${t}s: $(head -c 200 "$OUT/erp-verify.json")"
		if [[ $code != 200 ]]; then
			ERP_VERIFY_PROBLEM="answered $code: $(head -c 200 "$OUT/erp-verify.json")"
		elif ! "$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if j["ok"] is True and j["entries"] == int(sys.argv[2]) else 1)' \
			"$OUT/erp-verify.json" "$ERP_ENTRIES"; then
			ERP_VERIFY_PROBLEM="not ok over $ERP_ENTRIES entries: $(head -c 200 "$OUT/erp-verify.json")"
		fi
		ERP_VERIFY_TIMES+=("$t")
	done
	[[ -z $ERP_VERIFY_PROBLEM ]] || ERP_ERRORS=$((ERP_ERRORS + 1))
	erp_stop_servers
	# the floor: the same movements read back bucket by bucket as the
	# server reads them, with one cursor sorted as a verify needs them, and
	# unsorted (baseline_erp fails unless each read finds the whole chain
	# unbroken); the fastest of them is the floor
	settle
	erp_floor verify BV verify "$MONGO_URI" "$ERP_TENANT" "$ERP_ENTRIES" buckets,sorted,natural
}

erp_bench() {
	ERP_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	stop_pid "$SERVER_PID"
	ws_build_client
	erp_build_floor
	ERP_FLOOR_PROBLEM=""
	erp_sales
	erp_moves
	erp_ledger
}

# at_most VALUE GOAL -> PASS or MISS.
at_most() { awk -v v="$1" -v g="$2" 'BEGIN { print (v != "" && v + 0 <= g + 0) ? "PASS" : "MISS" }'; }

write_erp_results() {
	local flow_result moves_result inv_result paid_result verify_result missing_result
	local step slowest median violations=0 inv_detail=() p99_all
	flow_result=$(at_least "$ES_orders_per_sec" "$ERP_ORDERS_GOAL")
	moves_result=$(at_least "$EM_hot_per_sec" "$ERP_MOVES_GOAL")
	if ((EM_hot_mismatched > 0)); then
		violations=$((violations + EM_hot_mismatched))
		inv_detail+=("hot product: $EM_hot_first_mismatch")
	fi
	if ((EM_spread_mismatched > 0)); then
		violations=$((violations + EM_spread_mismatched))
		inv_detail+=("spread: $EM_spread_first_mismatch")
	fi
	if [[ $EM_checks_ok != true ]]; then
		violations=$((violations + 1))
		inv_detail+=("GET /v1/erp/checks after the moves: $EM_checks_detail")
	fi
	if [[ $ES_checks_ok != true ]]; then
		violations=$((violations + 1))
		inv_detail+=("GET /v1/erp/checks after the sales flow: $ES_checks_detail")
	fi
	inv_result=PASS
	((violations == 0)) || inv_result=FAIL
	# the goal is on the p99 counting a missing event as later than any
	# delivered (-1: more than 1% missing, so no p99 at all)
	p99_all=$ES_paid_after_p99_all_ms
	if awk -v v="$p99_all" 'BEGIN { exit !(v < 0) }'; then
		p99_all="none: over 1% missing"
		paid_result=MISS
	else
		paid_result=$(at_most "$p99_all" "$ERP_PAID_P99_GOAL")
		p99_all="$(num "$p99_all" 1) ms"
	fi
	missing_result=MISS
	if ((ES_paid_missing == 0 && ES_paid_expected > 0)); then missing_result=PASS; fi
	slowest=$(printf '%s\n' "${ERP_VERIFY_TIMES[@]}" | sort -g | tail -n 1)
	median=$(printf '%s\n' "${ERP_VERIFY_TIMES[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	verify_result=$(at_most "$slowest" "$ERP_VERIFY_GOAL")
	# the sales flow's floor: the better of its two thread counts
	local floor=BF floor_threads=$ERP_CLIENTS
	if awk -v a="${BW_orders_per_sec:-0}" -v b="${BF_orders_per_sec:-0}" 'BEGIN { exit !(a > b) }'; then
		floor=BW floor_threads=$WORKERS
	fi
	[[ -z $ERP_VERIFY_PROBLEM ]] || verify_result="FAIL ($ERP_VERIFY_PROBLEM)"
	{
		echo
		echo "## ERP"
		echo
		echo "Sales flow: $ERP_CLIENTS clients, each one order at a time ($ERP_LINES lines of $ERP_PRODUCTS stocked" \
			"products), for $ERP_SECONDS s on one server process, a WebSocket listener on erp.orders." \
			"Stock moves: $ERP_CLIENTS clients over $ERP_SERVERS server processes on one FerretDB and Redis," \
			"$ERP_MOVE_SECONDS s per phase. Ledger: $ERP_ENTRIES entries, then verify. Fresh tenant for each."
		echo
		echo "| figure | measured | baseline | ratio | goal | result |"
		echo "| --- | ---: | --- | ---: | --- | --- |"
		echo "| sales flow (create, confirm, invoice, pay, ship), orders/s, $ERP_CLIENTS clients | $(num "$ES_orders_per_sec" 1) | $(num "$(ws_field "$floor" orders_per_sec)" 1) (baseline_erp orderflow: the same flow in its fewest statements, $(num "$(ws_field "$floor" statements_per_order)" 0) per order, straight to FerretDB; the better of $ERP_CLIENTS and $WORKERS threads: $floor_threads) | $(ratio "$ES_orders_per_sec" "$(ws_field "$floor" orders_per_sec)") | >= $ERP_ORDERS_GOAL | $flow_result |"
		for step in create confirm invoice pay ship; do
			echo "| - $step p50 / p99, ms | $(num "$(ws_field ES "${step}_p50_ms")" 1) / $(num "$(ws_field ES "${step}_p99_ms")" 1) | $(num "$(ws_field "$floor" "${step}_p50_ms")" 1) / $(num "$(ws_field "$floor" "${step}_p99_ms")" 1) (the floor's step) | - | - | - |"
		done
		echo "| stock moves/s, one hot product, $ERP_SERVERS processes | $(num "$EM_hot_per_sec" 1) | $(num "$BA_appends_per_sec" 1) (baseline_erp append: register appends on one hot key, $ERP_SERVERS processes x $WORKERS threads) | $(ratio "$EM_hot_per_sec" "$BA_appends_per_sec") | >= $ERP_MOVES_GOAL | $moves_result |"
		echo "| stock moves/s, spread over $ERP_PRODUCTS products, $ERP_SERVERS processes | $(num "$EM_spread_per_sec" 1) | $(num "$EM_hot_per_sec" 1) (one hot product) | $(ratio "$EM_spread_per_sec" "$EM_hot_per_sec") | - | - |"
		echo "| invariant violations (stock = fold of the 201s per product; GET /v1/erp/checks after the moves and after the flow) | $violations | - | - | 0 | $inv_result |"
		echo "| erp.order.paid after the payment's 201, p50 / p99, ms (p99 counting missing: $p99_all) | $(num "$ES_paid_after_p50_ms" 1) / $(num "$ES_paid_after_p99_ms" 1) | $(num "$ES_paid_from_post_p50_ms" 1) / $(num "$ES_paid_from_post_p99_ms" 1) (from sending the payment) | - | p99 <= $ERP_PAID_P99_GOAL | $paid_result |"
		echo "| erp.order.paid missing (listener x paid order pairs) | $ES_paid_missing of $ES_paid_expected | - | - | 0 | $missing_result |"
		echo "| GET /v1/erp/ledger/verify, $ERP_ENTRIES entries, s (slowest of $ERP_VERIFY_RUNS) | $(num "$slowest" 2) | $(num "$BV_fastest_seconds" 2) (baseline_erp verify: the movements read straight from FerretDB, the chain checked in C; the fastest read: $BV_fastest_read) | $(ratio "$BV_fastest_seconds" "$slowest") | <= $ERP_VERIFY_GOAL | $verify_result |"
		echo "| loading $ERP_ENTRIES entries (build/load_erp, erp_ledger_post one after the other), s | $(num "$EL_seconds" 1) ($(awk -v n="$EL_entries" -v s="$EL_seconds" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')/s) | - | - | - | - |"
		echo
		echo "| run | detail |"
		echo "| --- | --- |"
		echo "| sales flow | seeded $ES_products products in $(num "$ES_seed_seconds" 1) s; orders started $ES_orders_started, completed $ES_orders_completed in $(num "$ES_run_seconds" 1) s, failed $ES_orders_failed${ES_failed_statuses:+ ($ES_failed_statuses)}; $(num "$ES_requests_per_sec" 0) requests/s; whole flow p50 / p99 $(num "$ES_flow_p50_ms" 0) / $(num "$ES_flow_p99_ms" 0) ms; CPU: server $(num "$ES_server_cpu_pct" 0)%, wsfan $(num "$ES_client_cpu_pct" 0)%; server RSS $(mib "$ES_rss_before_kib") -> $(mib "$ES_rss_after_kib") MiB; checks in $(num "$ES_checks_seconds" 1) s: $ES_checks_detail |"
		echo "| erp.order.paid | listeners $ES_connected/$ES_listeners; delivered $ES_paid_delivered of $ES_paid_expected, duplicates $ES_paid_duplicates, unknown $ES_paid_unknown, $ES_paid_before_answer arrived before the payment's 201 was read (negative latencies); max $(num "$ES_paid_after_max_ms" 1) ms after the 201; connections dropped $ES_dropped |"
		echo "| moves, hot product | $EM_hot_moves sent, $EM_hot_accepted answered 201 ($EM_hot_receipts receipts, $EM_hot_write_offs write-offs) in $(num "$EM_hot_seconds" 1) s, failed $EM_hot_failed${EM_hot_statuses:+ ($EM_hot_statuses)}; p50 / p99 $(num "$EM_hot_p50_ms" 1) / $(num "$EM_hot_p99_ms" 1) ms; on hand $EM_hot_on_hand_found, fold of the 201s $EM_hot_on_hand_expected; servers' CPU $(num "$EM_hot_server_cpu_pct" 0)%, wsfan $(num "$EM_hot_client_cpu_pct" 0)% |"
		echo "| moves, spread | $EM_spread_moves sent, $EM_spread_accepted answered 201 ($EM_spread_receipts receipts, $EM_spread_write_offs write-offs) in $(num "$EM_spread_seconds" 1) s, failed $EM_spread_failed${EM_spread_statuses:+ ($EM_spread_statuses)}; p50 / p99 $(num "$EM_spread_p50_ms" 1) / $(num "$EM_spread_p99_ms" 1) ms; on hand $EM_spread_on_hand_found, fold of the 201s $EM_spread_on_hand_expected ($EM_spread_mismatched products differ); servers' CPU $(num "$EM_spread_server_cpu_pct" 0)%, wsfan $(num "$EM_spread_client_cpu_pct" 0)%; seeding $(num "$EM_seed_seconds" 1) s; checks in $(num "$EM_checks_seconds" 1) s: $EM_checks_detail |"
		echo "| ledger | loaded $EL_entries entries (seq $EL_seq) in $(num "$EL_seconds" 1) s; verify runs (s): ${ERP_VERIFY_TIMES[*]}, median $(num "$median" 2); settle jobs still pending when timing began: $ERP_SETTLE_LEFT |"
		echo "| floor: sales flow | fewest statements ($BF_statements_per_order per order: $BF_finds_per_order finds, $BF_inserts_per_order inserts, $BF_modifys_per_order findAndModify, $BF_deletes_per_order deletes). From $ERP_CLIENTS threads: $(num "$BF_orders_per_sec" 1) orders/s ($BF_orders in $(num "$BF_seconds" 1) s), flow p50 / p99 $(num "$BF_flow_p50_ms" 0) / $(num "$BF_flow_p99_ms" 0) ms, mean ms per find / insert / findAndModify / delete $BF_find_ms / $BF_insert_ms / $BF_modify_ms / $BF_delete_ms, waiting for another thread's append to the same register (the tenant's ledger and invoice numbers) $(num "$BF_register_wait_ms_per_order" 0) ms per order, database CPU per order FerretDB $(num "$BF_ferretdb_cpu_ms_per_order" 1) ms + PostgreSQL $(num "$BF_postgresql_cpu_ms_per_order" 1) ms. From $WORKERS threads (TRELLIS_WORKERS): $(num "$BW_orders_per_sec" 1) orders/s, flow p50 / p99 $(num "$BW_flow_p50_ms" 0) / $(num "$BW_flow_p99_ms" 0) ms, mean ms $BW_find_ms / $BW_insert_ms / $BW_modify_ms / $BW_delete_ms, register wait $(num "$BW_register_wait_ms_per_order" 0) ms per order, database CPU per order $(num "$BW_ferretdb_cpu_ms_per_order" 1) + $(num "$BW_postgresql_cpu_ms_per_order" 1) ms. The server's own statements replayed ($(num "$BT_statements_per_order" 0) per order: $BT_finds_per_order finds, $BT_inserts_per_order inserts, $BT_modifys_per_order updates, $BT_deletes_per_order deletes) from $ERP_CLIENTS threads: $(num "$BT_orders_per_sec" 1) orders/s (Trellis reached $(ratio "$ES_orders_per_sec" "$BT_orders_per_sec") of it), flow p50 / p99 $(num "$BT_flow_p50_ms" 0) / $(num "$BT_flow_p99_ms" 0) ms, register wait $(num "$BT_register_wait_ms_per_order" 0) ms per order, database CPU per order $(num "$BT_ferretdb_cpu_ms_per_order" 1) + $(num "$BT_postgresql_cpu_ms_per_order" 1) ms |"
		echo "| floor: hot register | one key: $BA_appends appends, $BA_conflicts lost races, $BA_statements_per_append statements per append (mean insert $BA_insert_ms ms, find $BA_find_ms ms), newest seq = appends: $BA_exact; database CPU per append: FerretDB $BA_ferretdb_cpu_ms ms, PostgreSQL $BA_postgresql_cpu_ms ms. A move's two hot keys (stock, then ledger) per append: $(num "$B2_appends_per_sec" 1)/s (Trellis reached $(ratio "$EM_hot_per_sec" "$B2_appends_per_sec") of it), $B2_conflicts lost races, $B2_statements_per_append statements per append, exact: $B2_exact; database CPU per append: FerretDB $B2_ferretdb_cpu_ms ms, PostgreSQL $B2_postgresql_cpu_ms ms |"
		echo "| floor: ledger verify | bucket by bucket as the server reads ($BV_buckets_finds finds by rb): $(num "$BV_buckets_seconds" 2) s ($(num "$BV_buckets_entries_per_sec" 0) entries/s); one cursor sorted by seq, whole documents: $(num "$BV_sorted_seconds" 2) s ($(num "$BV_sorted_entries_per_sec" 0)/s); one cursor unsorted with a projection, ordered in C: $(num "$BV_natural_seconds" 2) s ($(num "$BV_natural_entries_per_sec" 0)/s); each found $BV_entries entries, chain ok: $BV_ok; FerretDB CPU per entry read: $BV_buckets_ferretdb_cpu_ms_per_entry / $BV_sorted_ferretdb_cpu_ms_per_entry / $BV_natural_ferretdb_cpu_ms_per_entry ms (PostgreSQL: $BV_buckets_postgresql_cpu_ms_per_entry / $BV_sorted_postgresql_cpu_ms_per_entry / $BV_natural_postgresql_cpu_ms_per_entry) |"
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by the servers, FerretDB, PostgreSQL, Redis and the load client." \
			"Load average (1, 5, 15 min) as these runs began: $ERP_LOADAVG. Server: $TRELLIS_BIN," \
			"TRELLIS_WORKERS=$WORKERS, TRELLIS_ENV=production, rate limits lifted, one owner's token."
		echo "- Orders/s: orders through all five steps / the time from the first order to the last one" \
			"finished (no order is started after $ERP_SECONDS s). A step answered otherwise (201, 200, 201," \
			"201, 201) ends its order and counts as failed."
		echo "- erp.order.paid: when the listener read the frame - when the payment's 201 had been read" \
			"(one process, monotonic clock); negative when the event came first. Beside it, from sending" \
			"the payment, as the CRM intake measures. A pair never delivered is missing."
		echo "- Stock moves: each client alternates a receipt of 1 unit (varying unit cost) and a write-off" \
			"of 1 unit, one at a time, client c on server c mod $ERP_SERVERS; moves/s = 201s / phase time." \
			"Every move also posts its journal entry, so all of them append to the tenant's one ledger." \
			"Each move, the opening receipts too, schedules a settle job (a read of the move) a" \
			"minute later, run by the servers' job threads: those of the seeding may come due during" \
			"the timed runs, those of a phase's moves come due after it."
		echo "- Ledger: build/load_erp posts the entries through erp_ledger_post (the module's own chain" \
			"logic, one after the other: the journal is one register per tenant); verify reads them all" \
			"back. The verify is timed after the moves' settle jobs ran, on its own."
		echo "- Baselines (tests/load/baseline_erp.c): each figure's database floor, the same work sent" \
			"straight to FerretDB with the raw driver (mongoc), run once that figure's servers are stopped." \
			"Ratio: Trellis's rate / the floor's (for the verify: the floor's time / Trellis's), so 1.00" \
			"is all the database allows. The sales-flow floor makes the same records, register movements," \
			"journal entries and outbox events in $(num "$BF_statements_per_order" 0) statements per order; the server sends" \
			"$(num "$BT_statements_per_order" 0) (counted on the wire; baseline_erp's header says which and why), replayed in" \
			"the floor's row as the server's own statements. No Redis, no HTTP in any floor. Database CPU:" \
			"FerretDB's and PostgreSQL's (postmaster and backends) over the floor's timed part."
		echo "- The hot-register floor is one movement per append on one key, the pattern of" \
			"server/data/register_post.c (insert seq + 1; on a lost race read on and insert again); a" \
			"Trellis stock move appends to two hot registers (its stock and the tenant's ledger) and" \
			"writes a dozen more statements, which the floor's two-key row comes closer to."
		echo "- Odoo's ~50 write transactions/s with 8 workers is its published figure, quoted as context;" \
			"nothing of Odoo ran here."
		if [[ -n ${ERP_FLOOR_PROBLEM:-} ]]; then
			echo "- Floor problem: $ERP_FLOOR_PROBLEM"
		fi
		local d
		for d in "${inv_detail[@]}"; do
			echo "- Invariant: $d"
		done
		if [[ -n ${ES_first_error:-} ]]; then
			echo "- Sales flow, first failure: $ES_first_error"
		fi
		if [[ -n ${ES_connect_error:-} ]]; then
			echo "- Listeners that failed to connect, first error: $ES_connect_error"
		fi
		if [[ -n ${EM_hot_first_error:-} ]]; then
			echo "- Hot-product moves, first failure: $EM_hot_first_error"
		fi
		if [[ -n ${EM_spread_first_error:-} ]]; then
			echo "- Spread moves, first failure: $EM_spread_first_error"
		fi
		if [[ -n ${ES_drop_reasons:-} ]]; then
			echo "- Listener connections dropped: $ES_drop_reasons"
		fi
	} >>"$OUT/results.md"
}

# ---- BPM: the flow and the inbox, beside Flowable (measurement 9) -------
#
# Trellis: fresh server processes and tenants (POST /v1/signup); wsfan
# bpm-flow runs the flow, wsfan bpm-inbox seeds the inbox and times its
# first page. Flowable: tests/load/bpm_peer/run.sh, its embedded engine on
# an H2 file database, the same process shape, clients and seconds, one
# side at a time on the same cores. Each side's JSON is loaded as shell
# variables (BF_*, FF_* flow; BI_*, FI_* inbox).

bpm_preflight() {
	local n
	for n in BPM_CLIENTS BPM_SECONDS BPM_TASKS BPM_REQUESTS BPM_PROBE BPM_API_BUDGET BPM_INBOX_SECONDS; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	[[ $BPM_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_BPM_WARMUP must be a whole number, got '$BPM_WARMUP'"
	command -v go >/dev/null || die "'go' not found: the BPM benchmark builds its load client (tests/load/wsfan) with Go"
	command -v psql >/dev/null || die "'psql' not found: the BPM benchmark reads PostgreSQL's counters with it"
	[[ -x $ROOT/build/load_bpm ]] || die "build/load_bpm not found: run 'make build/load_bpm' (make bench does)"
	# the peer's own checks (Java 17+, Maven) run when it starts
}

# bpm_start_server NAME N: a fresh server process on a free port, on
# Redis database N of its own (so that it neither runs nor waits for jobs
# an earlier run left behind); sets BPM_PORT, BPM_PID and BPM_REDIS. Its
# log is trellis-bpm-NAME.log.
bpm_start_server() {
	read -r BPM_PORT < <(free_ports 1)
	BPM_REDIS=${REDIS_URL%/*}/$2
	server_env
	cd "$ROOT"
	env "${SERVER_ENV[@]}" TRELLIS_REDIS_URL="$BPM_REDIS" TRELLIS_PORT="$BPM_PORT" TRELLIS_ACCESS_TTL=3600 \
		TRELLIS_SIGNUP_ENABLED=1 \
		"$TRELLIS_BIN" serve >"$TMP/trellis-bpm-$1.log" 2>&1 &
	BPM_PID=$!
	PIDS+=("$BPM_PID")
	cd - >/dev/null
	wait_http_200 "Trellis (BPM $1)" "$BPM_PID" "http://127.0.0.1:$BPM_PORT/readyz"
	log "BPM $1: Trellis pid $BPM_PID, port $BPM_PORT"
}

bpm_stop_server() {
	kill -0 "$BPM_PID" 2>/dev/null || die "the server of the BPM runs (pid $BPM_PID) died"
	stop_pid "$BPM_PID"
}

# bpm_step NAME PREFIX COMMAND...: a run whose stdout ends with one JSON
# object, kept as $OUT/bpm-NAME.json and loaded as PREFIX_*.
bpm_step() {
	local name=$1 prefix=$2
	shift 2
	log "BPM: $name"
	"$@" >"$OUT/bpm-$name.json" 2> >(tee "$OUT/bpm-$name.log" | sed 's/^/    /' >&2) ||
		die "the BPM step $name failed (see $OUT/bpm-$name.log)"
	ws_load "$OUT/bpm-$name.json" "$prefix"
}

# The processes whose CPU the Trellis runs report beside the server's:
# FerretDB, PostgreSQL (the postmaster and its backends) and Redis.
bpm_cpu_pids() {
	local pg
	pg=$(head -n 1 "$TMP/pg/data/postmaster.pid" 2>/dev/null || echo 0)
	BPM_CPU_PIDS="ferretdb=${PIDS[0]},postgres=$pg,redis=${PIDS[1]}"
}

bpm_bench() {
	BPM_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	stop_pid "$SERVER_PID"
	ws_build_client
	bpm_cpu_pids
	local peer=$ROOT/tests/load/bpm_peer/run.sh

	# the flow, Flowable first (its build, the first time, takes a while)
	settle
	bpm_step flowable-flow FF bash "$peer" --threads "$BPM_CLIENTS" --seconds "$BPM_SECONDS" \
		--warmup "$BPM_WARMUP"
	((FF_errors == 0)) || BPM_ERRORS=$((BPM_ERRORS + 1))

	bpm_start_server flow 2
	erp_signup "$BPM_PORT" bpm-flow
	settle
	bpm_step flow BF "$WSFAN" bpm-flow -http "http://127.0.0.1:$BPM_PORT" -ws "ws://127.0.0.1:$BPM_PORT/v1/ws" \
		-token "$ERP_TOKEN" -clients "$BPM_CLIENTS" -seconds "$BPM_SECONDS" -warmup "$BPM_WARMUP" \
		-pid "$BPM_PID" -cpu-pids "$BPM_CPU_PIDS" -pg "$TRELLIS_POSTGRESQL_URI"
	if ((BF_failed > 0 || BF_events_duplicate > 0 || BF_events_unknown > 0)) ||
		[[ $BF_stalled == true || -n ${BF_sample_problem:-} || -n ${BF_listener_error:-} ]]; then
		BPM_ERRORS=$((BPM_ERRORS + 1))
	fi
	BPM_STACKS=""
	if [[ $BF_stalled == true ]]; then
		bpm_stacks
	fi
	bpm_stop_server

	# the inbox: Trellis, then Flowable over as many tasks
	bpm_start_server inbox 3
	erp_signup "$BPM_PORT" bpm-inbox
	settle
	bpm_step inbox BI env MONGOC_DISABLE_SHM=1 TRELLIS_MONGO_URI="$MONGO_URI" \
		TRELLIS_POSTGRESQL_URI="$TRELLIS_POSTGRESQL_URI" TRELLIS_REDIS_URL="$BPM_REDIS" \
		TRELLIS_LOG_LEVEL=warn TRELLIS_WORKERS="$WORKERS" \
		"$WSFAN" bpm-inbox -http "http://127.0.0.1:$BPM_PORT" -token "$ERP_TOKEN" -tenant "$ERP_TENANT" \
		-tasks "$BPM_TASKS" -clients "$BPM_CLIENTS" -probe "$BPM_PROBE" -api-budget "${BPM_API_BUDGET}s" \
		-loader "$ROOT/build/load_bpm" -requests "$BPM_REQUESTS" -max-time "${BPM_INBOX_SECONDS}s" \
		-also-open "$(((BPM_REQUESTS + 3) / 4))" \
		-pid "$BPM_PID" -cpu-pids "$BPM_CPU_PIDS" -pg "$TRELLIS_POSTGRESQL_URI"
	((BI_failed == 0)) || BPM_ERRORS=$((BPM_ERRORS + 1))
	bpm_stop_server
	settle
	bpm_step flowable-inbox FI bash "$peer" --inbox "$BPM_TASKS" --queries "$BPM_REQUESTS"
}

# bpm_stacks: the threads of a stalled flow server, while it is still
# stuck (gdb, when installed), kept as $OUT/bpm-flow-stacks.txt; BPM_STACKS
# says in a line where they wait.
bpm_stacks() {
	local file=$OUT/bpm-flow-stacks.txt total pool
	if ! command -v gdb >/dev/null; then
		BPM_STACKS="(gdb is not installed: the stalled server's threads were not read)"
		return
	fi
	timeout 120 gdb -p "$BPM_PID" -batch -ex 'thread apply all bt 30' >"$file" 2>/dev/null || true
	total=$(grep -c '^Thread ' "$file" || true)
	# the threads whose innermost Trellis frame waits for a pooled database client
	pool=$(awk '/^Thread /{ if (t) n += w; t = 1; w = 0; found = 0; next }
		/ in tr_dbpool_pop / && !found { w = 1 }
		/ at (server|modules)\// { found = 1 }
		END { if (t) n += w; print n + 0 }' "$file")
	BPM_STACKS="$pool of the server's $total threads wait in tr_dbpool_pop (mongoc_client_pool_pop: no database client free; $(grep -c 'tr_emit_background' "$file" || true) frames in tr_emit_background) - stacks in ${file#"$ROOT"/}"
	log "BPM flow stalled: $BPM_STACKS"
}

# bpm_p99_cell: the start-to-assigned p99 counting missing events, or why
# there is none.
bpm_p99_cell() {
	if awk -v v="$BF_assigned_p99_all_ms" 'BEGIN { exit !(v < 0) }'; then
		echo "none: over 1% missing"
	else
		num "$BF_assigned_p99_all_ms" 1
	fi
}

write_bpm_results() {
	local flow_result assigned_result inbox_result flow_ratio inbox_ratio p99_all engine
	engine=${FF_engine^}
	flow_ratio=$(ratio "$BF_instances_per_sec" "$FF_instances_per_sec")
	flow_result=$(awk -v t="$BF_instances_per_sec" -v f="$FF_instances_per_sec" 'BEGIN { print (t > 0 && t >= f) ? "PASS" : "MISS" }')
	p99_all=$(bpm_p99_cell)
	assigned_result=MISS
	if [[ $p99_all != none* ]]; then
		assigned_result=$(at_most "$BF_assigned_p99_all_ms" "$BPM_ASSIGNED_P99_GOAL")
	fi
	inbox_result=$(at_most "$BI_p50_ms" "$BPM_INBOX_P50_GOAL")
	inbox_ratio=$(ratio "$BI_p50_ms" "$FI_inbox_p50_ms")
	local flow_cell
	flow_cell=$(num "$BF_instances_per_sec" 1)
	if [[ $BF_stalled == true ]]; then
		flow_cell="$flow_cell (the server stalled $(num "$BF_stalled_after_seconds" 1) s into the run: $BF_instances_all instances completed in all, $BF_stalled_in_flight abandoned in flight)"
		flow_result="$flow_result (stalled: see notes)"
	elif ((BPM_ERRORS > 0)); then
		flow_result="$flow_result (run had failures: see notes)"
	fi
	local seeding
	if [[ $BI_seed_method == api ]]; then
		seeding="all $BI_api_started through the API ($BI_api_clients clients) in $(num "$BI_api_seconds" 1) s ($(num "$BI_api_per_sec" 1)/s)"
	else
		seeding="$BI_api_started through the API ($BI_api_clients clients) in $(num "$BI_api_seconds" 1) s ($(num "$BI_api_per_sec" 1)/s; at the last $BPM_PROBE's rate all $BPM_TASKS would have taken $(num "$BI_api_projected_seconds" 0) s, over the ${BPM_API_BUDGET} s budget), then $BI_loaded copies of the first instance and its task by build/load_bpm in $(num "$BI_load_seconds" 1) s (the data layer's import; the user's open tasks counted afterwards: $BI_loaded_open_tasks)"
	fi
	{
		echo
		echo "## BPM"
		echo
		echo "The same process on both sides: service step -> user task (assigned to one user, form" \
			"approved: bool) -> exclusive gateway (approved == true -> end yes, default -> end no)." \
			"Flow: $BPM_CLIENTS clients, each one instance at a time, ${BPM_WARMUP} s warm-up + $BPM_SECONDS s measured;" \
			"Trellis on one fresh server process, $engine embedded on an H2 file database, one after the other."
		echo
		echo "| figure | Trellis | $engine (same run) | ratio | goal | result |"
		echo "| --- | ---: | ---: | ---: | --- | --- |"
		echo "| instances started and completed/s, $BPM_CLIENTS clients | $flow_cell | $(num "$FF_instances_per_sec" 1) | $flow_ratio | >= $engine | $flow_result |"
		echo "| start to bpm.task.assigned on the WebSocket, p50 / p99 ms (p99 counting missing: $p99_all) | $(num "$BF_assigned_p50_ms" 1) / $(num "$BF_assigned_p99_ms" 1) | $(num "$FF_start_to_task_p50_ms" 1) / $(num "$FF_start_to_task_p99_ms" 1) (start returned and task queried, in process; no push) | - | p99 <= $BPM_ASSIGNED_P99_GOAL | $assigned_result |"
		echo "| whole instance (start, task, complete), p50 / p99 ms | $(num "$BF_p50_ms" 1) / $(num "$BF_p99_ms" 1) | $(num "$FF_p50_ms" 1) / $(num "$FF_p99_ms" 1) | - | - | - |"
		echo "| inbox: GET /v1/bpm/tasks?assignee=me&limit=50 over $BI_tasks open tasks, p50 / p99 ms ($BI_timed GETs) | $(num "$BI_p50_ms" 1) / $(num "$BI_p99_ms" 1) | $(num "$FI_inbox_p50_ms" 1) / $(num "$FI_inbox_p99_ms" 1) (task query, assignee, newest first, page of 50, over $FI_inbox_tasks) | $inbox_ratio | p50 <= $BPM_INBOX_P50_GOAL | $inbox_result |"
		echo "| - the same with &status=open, p50 / p99 ms (${BI_open_requests:-0} GETs) | $(num "${BI_open_p50_ms:-0}" 1) / $(num "${BI_open_p99_ms:-0}" 1) | - | - | - | - |"
		echo
		echo "| run | detail |"
		echo "| --- | --- |"
		echo "| Trellis flow | $BF_instances measured instances in $(num "$BF_measured_seconds" 1) s ($BF_instances_all in all), failed $BF_failed${BF_failed_statuses:+ ($BF_failed_statuses)}; start POST p50 / p99 $(num "$BF_start_p50_ms" 1) / $(num "$BF_start_p99_ms" 1) ms, event after the 201 p50 / p99 $(num "$BF_assigned_after_201_p50_ms" 1) / $(num "$BF_assigned_after_201_p99_ms" 1) ms ($BF_assigned_before_201 came before it), complete p50 / p99 $(num "$BF_complete_p50_ms" 1) / $(num "$BF_complete_p99_ms" 1) ms; assigned max $(num "$BF_assigned_max_ms" 1) ms, missing $BF_assigned_missing; events $BF_events_assigned, duplicates $BF_events_duplicate, unknown $BF_events_unknown; sample of $BF_sampled read back: $BF_sample_completed completed, $BF_sample_ends_right ended where the gateway should send them |"
		echo "| Trellis flow: CPU over the window | server $(num "$BF_server_cpu_pct" 0)%, ${BF_other_cpu:-}, wsfan $(num "$BF_client_cpu_pct" 0)% (100% = one core); PostgreSQL: $BF_pg_xacts transactions, $(num "${BF_pg_xacts_per_instance:-0}" 1) per instance completed in the window ($BF_window_completed), $(num "${BF_pg_rows_per_instance:-0}" 0) rows read or written per instance; server RSS $(mib "$BF_rss_before_kib") -> $(mib "$BF_rss_after_kib") MiB |"
		if [[ $BF_stalled == true ]]; then
			echo "| Trellis flow: after the window | not waited for: the server had stalled |"
		else
			echo "| Trellis flow: after the window | the engine's settle jobs (one per start, per step made and per complete, each due 30 s later) ran in the $(num "$BF_jobs_wait_seconds" 0) s after it ($BF_jobs_left left), server CPU meanwhile $(num "$BF_jobs_server_cpu_seconds" 1) s |"
		fi
		echo "| $engine flow | $FF_instances measured instances in $(num "$FF_measured_seconds" 1) s, errors $FF_errors; ended ok / no: $FF_ended_ok / $FF_ended_no (warm-up included); history level $FF_history; other processes' CPU during the window $(num "$FF_other_cpu_cores" 2) cores; $FF_h2 |"
		echo "| Trellis inbox | $seeding; engine jobs waited for $(num "$BI_jobs_wait_seconds" 0) s; VACUUM (ANALYZE) $(num "$BI_analyze_seconds" 1) s; $BI_warmup_done untimed GETs, then $BI_timed timed of the $BI_requests asked for (at most ${BPM_INBOX_SECONDS} s of them; max $(num "$BI_max_ms" 1) ms), failed $BI_failed; CPU during the GETs: server $(num "$BI_server_cpu_pct" 0)%, ${BI_other_cpu:-} |"
		echo "| $engine inbox | $FI_created instances started (batches of $FI_batch per transaction) in $(num "$FI_create_seconds" 1) s ($(num "$FI_created_per_sec" 0)/s); $FI_warmup_queries untimed queries, then $FI_queries timed; other processes' CPU meanwhile $(num "$FI_other_cpu_cores" 2) cores |"
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by the servers, FerretDB, PostgreSQL, Redis, the JVM and" \
			"the load client. Load average (1, 5, 15 min) as the section began: $BPM_LOADAVG." \
			"Server: $TRELLIS_BIN, TRELLIS_WORKERS=$WORKERS, TRELLIS_ENV=production, rate limits lifted, the owner's token."
		echo "- Instances/s, both sides: instances started after the warm-up and completed / (the last one's" \
			"end - the warm-up's end); none is started after the measured seconds. Trellis: POST" \
			"/v1/bpm/instances (201), the bpm.task.assigned frame of that instance on one WebSocket" \
			"subscribed to bpm.tasks, POST /v1/bpm/tasks/{id}/complete (200), approved alternating;" \
			"the service step (webhook.post) runs as a job on the server's queue. $engine: the same" \
			"loop in process (startProcessInstanceByKey, a task query, complete), its service task a Java delegate."
		echo "- Start to assigned: from sending the POST to reading the event frame (one process, monotonic" \
			"clock); an instance whose event never came counts as later than any. $engine has no push: its" \
			"figure is the start call plus the task query."
		echo "- Inbox: Trellis times the GET one at a time on a keep-alive connection, every page checked" \
			"(50 open tasks of the user). $engine times TaskService's query (assignee, ordered by create" \
			"time, newest first, listPage(0, 50)) in process, after $FI_warmup_queries untimed ones."
		echo "- Seeding the Trellis inbox: $seeding."
		if [[ $BF_stalled == true ]]; then
			echo "- Trellis flow: the server stalled - no answer, no event, no failure for 20 s while" \
				"$BPM_CLIENTS clients waited; the run stopped there. $BPM_STACKS."
		fi
		if [[ -n ${BF_first_error:-} ]]; then
			echo "- Trellis flow, first failure: $BF_first_error"
		fi
		if [[ -n ${BF_sample_problem:-} ]]; then
			echo "- Trellis flow, sample problem: $BF_sample_problem"
		fi
		if [[ -n ${BF_listener_error:-} ]]; then
			echo "- Trellis flow, the listener's connection ended: $BF_listener_error"
		fi
		if [[ -n ${BI_first_error:-} ]]; then
			echo "- Trellis inbox, first failure: $BI_first_error"
		fi
	} >>"$OUT/results.md"
}

# ---- Gateway: webhook deliveries and the changes feed (measurement 10) ----
#
# A fresh server process that lets webhooks reach loopback
# (webhook_allow_private) and keeps BENCH_GW_FEED_EVENTS and more in each
# tenant's stream (events_max_len), each part on a fresh tenant:
# wsfan gw-hooks creates leads at BENCH_GW_RATE/s for BENCH_GW_SECONDS while
# the tenant's one webhook on crm.leads points at a receiver inside wsfan,
# first answering every delivery, then failing BENCH_GW_FAIL_PCT% of them
# with 500 (seeded); then a tenant's stream is filled with
# BENCH_GW_FEED_EVENTS copies of a lead event it holds (wsfan gw-fill,
# straight into Redis) and BENCH_GW_CLIENTS clients page GET /v1/changes.

gw_preflight() {
	local n
	for n in GW_RATE GW_SECONDS GW_DRAIN GW_FEED_EVENTS GW_CLIENTS GW_FEED_SECONDS GW_SEED; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	[[ $GW_FAIL_PCT =~ ^[0-9]+$ ]] && ((GW_FAIL_PCT <= 100)) ||
		die "BENCH_GW_FAIL_PCT must be a whole number from 0 to 100, got '$GW_FAIL_PCT'"
	command -v go >/dev/null || die "'go' not found: the gateway benchmark builds its load client (tests/load/wsfan) with Go"
}

gw_start_server() {
	read -r GW_PORT < <(free_ports 1)
	server_env
	cd "$ROOT"
	# events_max_len: room for the filled stream and what the runs add,
	# so that nothing is trimmed under the feed's readers
	env "${SERVER_ENV[@]}" TRELLIS_PORT="$GW_PORT" TRELLIS_ACCESS_TTL=3600 TRELLIS_SIGNUP_ENABLED=1 \
		TRELLIS_WEBHOOK_ALLOW_PRIVATE=1 TRELLIS_EVENTS_MAX_LEN=$((GW_FEED_EVENTS * 2 + 100000)) \
		"$TRELLIS_BIN" serve >"$TMP/trellis-gateway.log" 2>&1 &
	GW_PID=$!
	PIDS+=("$GW_PID")
	cd - >/dev/null
	wait_http_200 "Trellis (gateway)" "$GW_PID" "http://127.0.0.1:$GW_PORT/readyz"
	log "gateway: Trellis pid $GW_PID, port $GW_PORT"
}

# gw_step NAME PREFIX COMMAND...: a wsfan run whose stdout ends with one
# JSON object, kept as $OUT/gateway-NAME.json and loaded as PREFIX_*.
gw_step() {
	local name=$1 prefix=$2
	shift 2
	log "gateway: $name"
	"$@" >"$OUT/gateway-$name.json" 2> >(tee "$OUT/gateway-$name.log" | sed 's/^/    /' >&2) ||
		die "the gateway step $name failed (see $OUT/gateway-$name.log)"
	ws_load "$OUT/gateway-$name.json" "$prefix"
}

# gw_hooks NAME PREFIX FAIL_PCT [wsfan flags]: one delivery run on a fresh tenant.
gw_hooks() {
	local name=$1 p=$2 fail=$3
	shift 3
	erp_signup "$GW_PORT" "gw-$name"
	settle
	gw_step "$name" "$p" "$WSFAN" gw-hooks -http "http://127.0.0.1:$GW_PORT" -token "$ERP_TOKEN" \
		-rate "$GW_RATE" -seconds "$GW_SECONDS" -fail-pct "$fail" -seed "$GW_SEED" -drain "${GW_DRAIN}s" \
		-pid "$GW_PID" -cpu-pids "$BPM_CPU_PIDS" "$@"
	local e="${p}_post_errors" d="${p}_duplicates" u="${p}_unknown" m="${p}_missing_headers"
	if ((${!e} > 0 || ${!d} > 0 || ${!u} > 0 || ${!m} > 0)); then
		GW_ERRORS=$((GW_ERRORS + 1))
	fi
	kill -0 "$GW_PID" 2>/dev/null || die "the server died during the gateway run $1"
}

gw_bench() {
	GW_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	stop_pid "$SERVER_PID"
	ws_build_client
	bpm_cpu_pids
	gw_start_server

	gw_hooks hooks-healthy GH 0 -replay
	gw_hooks hooks-failing GF "$GW_FAIL_PCT"

	# the feed: one lead through the API (the entry copied), the fill, the reads
	erp_signup "$GW_PORT" gw-feed
	local base="http://127.0.0.1:$GW_PORT"
	post_json_field "feed template lead" "$base/v1/crm/leads" \
		'{"name":"Feed Template Lead","email":"feed.template@bench.test","phone":"+49 30 1234567","company":"Gateway Feed GmbH","source":{"channel":"partner","campaign_id":null}}' \
		201 id -H "Authorization: Bearer $ERP_TOKEN" >/dev/null
	gw_step fill GL "$WSFAN" gw-fill -redis "127.0.0.1:$REDIS_PORT" -tenant "$ERP_TENANT" \
		-events "$GW_FEED_EVENTS"
	settle
	gw_step changes GC "$WSFAN" gw-changes -http "$base" -token "$ERP_TOKEN" -clients "$GW_CLIENTS" \
		-seconds "$GW_FEED_SECONDS" -limit 500 -first "$GL_first_id" -last "$GL_last_id" \
		-pid "$GW_PID" -cpu-pids "$BPM_CPU_PIDS"
	if ((GC_failed > 0 || GC_gaps > 0 || GC_short_pages > 0)); then
		GW_ERRORS=$((GW_ERRORS + 1))
	fi
	kill -0 "$GW_PID" 2>/dev/null || die "the server died during the changes feed run"
	stop_pid "$GW_PID"
}

# gw_p99_cell PREFIX: the delivery p99 counting lost events, or why none.
gw_p99_cell() {
	local v
	v=$(ws_field "$1" latency_p99_all_ms)
	if awk -v v="$v" 'BEGIN { exit !(v < 0) }'; then
		echo "none: over 1% lost"
	else
		num "$v" 1
	fi
}

# gw_p99_result PREFIX GOAL: PASS when the p99 counting lost is within GOAL.
gw_p99_result() {
	local v
	v=$(ws_field "$1" latency_p99_all_ms)
	if awk -v v="$v" 'BEGIN { exit !(v < 0) }'; then
		echo MISS
	else
		at_most "$v" "$2"
	fi
}

gw_lost_result() {
	if (($(ws_field "$1" lost) == 0 && $(ws_field "$1" accepted) > 0)); then echo PASS; else echo MISS; fi
}

# gw_run_row LABEL PREFIX: one delivery run's detail.
gw_run_row() {
	local p=$2
	echo "| $1 | leads posted $(ws_field "$p" posted), accepted $(ws_field "$p" accepted) ($(num "$(ws_field "$p" accepted_per_sec)" 1)/s; POST p50 / p99 $(num "$(ws_field "$p" post_p50_ms)" 1) / $(num "$(ws_field "$p" post_p99_ms)" 1) ms; the latest POST left $(num "$(ws_field "$p" start_lag_max_ms)" 0) ms after its slot)${3:+; failed: $3}; receiver requests $(ws_field "$p" requests), answered 500 $(ws_field "$p" failed); delivered at the first attempt $(ws_field "$p" first_attempt) of $(ws_field "$p" delivered); delivered before the POST's 201: $(ws_field "$p" before_201); POST sent -> delivered p50 / p99 $(num "$(ws_field "$p" sent_p50_ms)" 1) / $(num "$(ws_field "$p" sent_p99_ms)" 1) ms, max after the 201 $(num "$(ws_field "$p" latency_max_ms)" 0) ms; duplicates $(ws_field "$p" duplicates), unknown $(ws_field "$p" unknown); drain $(num "$(ws_field "$p" drain_seconds)" 1) s; all delivered / (the last delivery - the first POST): $(num "$(ws_field "$p" delivered_all_per_sec)" 1)/s; CPU: server $(num "$(ws_field "$p" server_cpu_pct)" 0)%, $(ws_field "$p" other_cpu), wsfan $(num "$(ws_field "$p" client_cpu_pct)" 0)% |"
}

write_gw_results() {
	local gh_p99 gf_p99 feed_note=""
	gh_p99=$(gw_p99_cell GH)
	gf_p99=$(gw_p99_cell GF)
	if ((GC_failed > 0 || GC_gaps > 0 || GC_short_pages > 0)); then
		feed_note=" (INVALID: $GC_failed failed, $GC_gaps gaps, $GC_short_pages short pages)"
	fi
	{
		echo
		echo "## Gateway: webhook deliveries and the changes feed"
		echo
		echo "Leads created through the API (POST /v1/crm/leads, the owner's token) at $GW_RATE/s for" \
			"$GW_SECONDS s while the tenant's one webhook on crm.leads points at a receiver inside wsfan" \
			"(loopback); up to $GW_DRAIN s of drain after the last POST. Then GET /v1/changes?limit=500" \
			"over $GL_stream_len events, $GW_CLIENTS clients for $GW_FEED_SECONDS s. Each part on a fresh tenant."
		echo
		echo "| figure | measured | baseline | ratio | goal | result |"
		echo "| --- | ---: | --- | ---: | --- | --- |"
		echo "| deliveries/s, healthy receiver | $(num "$GH_delivered_per_sec" 1) | $(num "$GH_accepted_per_sec" 1) (leads accepted/s) | $(ratio "$GH_delivered_per_sec" "$GH_accepted_per_sec") | - | - |"
		echo "| 201 -> delivered, healthy receiver: p50 / p99 ms (p99 counting lost: $gh_p99) | $(num "$GH_latency_p50_ms" 1) / $(num "$GH_latency_p99_ms" 1) | - | - | p99 <= $GW_P99_GOAL | $(gw_p99_result GH "$GW_P99_GOAL") |"
		echo "| events never delivered, healthy receiver | $GH_lost of $GH_accepted (jobs in the dead letters: $GH_dead_jobs) | - | - | 0 | $(gw_lost_result GH) |"
		echo "| deliveries/s, healthy receiver, the run's $GH_replayed events replayed at once (POST /v1/webhooks/{id}/replay) | $(num "$GH_replay_per_sec" 1) | - | - | - | - |"
		echo "| deliveries/s, receiver failing $GW_FAIL_PCT% (500) | $(num "$GF_delivered_per_sec" 1) | $(num "$GF_accepted_per_sec" 1) (leads accepted/s) | $(ratio "$GF_delivered_per_sec" "$GF_accepted_per_sec") | - | - |"
		echo "| 201 -> delivered, receiver failing $GW_FAIL_PCT%: p50 / p99 ms (p99 counting lost: $gf_p99) | $(num "$GF_latency_p50_ms" 1) / $(num "$GF_latency_p99_ms" 1) | - | - | - | - |"
		echo "| events never delivered, receiver failing $GW_FAIL_PCT% | $GF_lost of $GF_accepted (jobs in the dead letters: $GF_dead_jobs) | - | - | 0 | $(gw_lost_result GF) |"
		echo "| changes feed over $GL_stream_len events: pages/s (limit 500, $GW_CLIENTS clients)$feed_note | $(num "$GC_pages_per_sec" 1) | - | - | - | - |"
		echo "| changes feed: per page p50 / p99 ms | $(num "$GC_p50_ms" 1) / $(num "$GC_p99_ms" 1) | - | - | - | - |"
		echo
		echo "| run | detail |"
		echo "| --- | --- |"
		gw_run_row "deliveries, healthy" GH "${GH_post_statuses:-}"
		gw_run_row "deliveries, failing $GW_FAIL_PCT%" GF "${GF_post_statuses:-}"
		echo "| replay, healthy | $GH_replayed events enqueued by one POST; the run's leads delivered again: $GH_replay_delivered of $GH_delivered in $(num "$GH_replay_seconds" 2) s (more than once: $GH_replay_duplicates); CPU: server $(num "$GH_replay_server_cpu_pct" 0)%, ${GH_replay_other_cpu:-} |"
		echo "| stream fill | $GL_events entries in $(num "$GL_seconds" 1) s ($(num "$GL_per_sec" 0)/s), each a copy of the tenant's newest entry ($GL_entry_bytes bytes of frame) under a new entity id; Redis memory +$(mib "$((GL_redis_memory_added_bytes / 1024))") MiB; stream $GL_first_id .. $GL_last_id |"
		echo "| changes feed | $GC_pages pages in $(num "$GC_seconds" 1) s, $(num "$GC_items_per_sec" 0) items/s, $(num "$GC_mib_per_sec" 1) MiB/s of JSON; max $(num "$GC_max_ms" 1) ms; failed $GC_failed, walks that reached the end $GC_wraps; CPU: server $(num "$GC_server_cpu_pct" 0)%, $GC_other_cpu, wsfan $(num "$GC_client_cpu_pct" 0)% |"
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by the server, FerretDB, PostgreSQL, Redis and wsfan (receiver" \
			"and clients). Load average (1, 5, 15 min) as the section began: $GW_LOADAVG. Server: $TRELLIS_BIN," \
			"TRELLIS_WORKERS=$WORKERS, job_workers and job_backoff_ms at their defaults (2 threads; first retry" \
			"after 1 s, doubling; 5 attempts), rate limits lifted. CPU percentages: 100% = one core."
		echo "- 201 -> delivered: from wsfan reading the lead POST's 201 to the receiver taking (204) the first" \
			"delivery of that lead's crm.lead.created (one process, monotonic clock); a delivery that came before" \
			"the 201 counts 0. Failed deliveries are retried by the server's job queue, so with a failing" \
			"receiver the p99 is the retry delay. Deliveries/s: events delivered / (the last delivery - the" \
			"first POST) over the posting window; the load is the steady rate, not the most the server can do:" \
			"the replay row is that - every event of the healthy run enqueued by one request, timed from it to" \
			"the last of them delivered again (the $(num "$GH_replay_per_sec" 0)/s of the job threads, without the API load)."
		echo "- The receiver picks the deliveries it fails with a PCG generator seeded $GW_SEED (every request," \
			"retries included, fails with probability $GW_FAIL_PCT%). Lost: accepted leads with no successful" \
			"delivery after the drain. A delivery whose job_max_attempts (5) attempts all failed is in the" \
			"tenant's dead letters (GET /v1/jobs?state=dead; POST /v1/jobs/{id}/retry sends it again): at a" \
			"$GW_FAIL_PCT% failure rate that is one event in $(awk -v p="$GW_FAIL_PCT" 'BEGIN { if (p > 0) printf "%.0f", 1 / (p / 100) ^ 5; else print "never" }')," \
			"so a run of $GW_RATE x $GW_SECONDS events loses one now and then by design of the retry policy."
		echo "- The stream fill bypasses the server: XADD t:<tenant>:events * t <topic> o <owner> b <frame>, as" \
			"the server's publish script writes it, without the MAXLEN (the server runs with" \
			"events_max_len=$((GW_FEED_EVENTS * 2 + 100000)), so nothing is trimmed); no job, pub/sub message or" \
			"outbox record goes with it. Each feed client starts at its own point of the stream (client c at" \
			"c/$GW_CLIENTS of the way, by id time) and follows next; at the end it starts again from the oldest."
		if [[ -n ${GH_post_error:-} ]]; then echo "- Healthy run, first failed POST: $GH_post_error"; fi
		if [[ -n ${GF_post_error:-} ]]; then echo "- Failing run, first failed POST: $GF_post_error"; fi
		if [[ -n ${GC_first_error:-} ]]; then echo "- Changes feed, first failure: $GC_first_error"; fi
	} >>"$OUT/results.md"
}

# ---- scale-out behind haproxy (BENCH_ONLY=scale) ----
#
# The same three figures with one and with three server processes behind
# haproxy (configuration from ops/haproxy-config.sh), in the same run, on
# one database and Redis: GET /v1/me with wrk, WebSocket fan-out (wsfan
# fanout; clients spread over the processes by haproxy, every event
# published through it and carried between processes by Redis) and the
# ERP order flow (wsfan erp-sales). Each count on a fresh tenant.

scale_preflight() {
	local n
	for n in SCALE_WS_CLIENTS SCALE_WS_RATE SCALE_SECONDS; do
		is_count "${!n}" || die "BENCH_$n must be a positive integer, got '${!n}'"
	done
	command -v haproxy >/dev/null || die "haproxy not found: run ops/deps.sh"
	command -v go >/dev/null || die "'go' not found: the scale runs build wsfan with Go"
	local need=$((SCALE_WS_CLIENTS * 2 + WS_PUBLISHERS + 512))
	if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < need)); then
		ulimit -Sn "$need" || die "BENCH_SCALE_WS_CLIENTS=$SCALE_WS_CLIENTS needs $need open files"
	fi
}

# scale_start N: N servers (erp_start_servers) and haproxy in front of
# them; sets SCALE_URL and SCALE_HAPROXY_PID.
scale_start() {
	local n=$1 port i
	local -a backends=()
	erp_start_servers "scale-$n" "$n"
	for ((i = 0; i < n; i++)); do backends+=("127.0.0.1:${ERP_PORTS[i]}"); done
	read -r port < <(free_ports 1)
	MAXCONN=$((SCALE_WS_CLIENTS + WS_PUBLISHERS + 1000)) \
		bash "$ROOT/ops/haproxy-config.sh" "127.0.0.1:$port" "${backends[@]}" >"$TMP/haproxy-$n.cfg"
	haproxy -db -f "$TMP/haproxy-$n.cfg" >"$TMP/haproxy-$n.log" 2>&1 &
	SCALE_HAPROXY_PID=$!
	PIDS+=("$SCALE_HAPROXY_PID")
	SCALE_URL="http://127.0.0.1:$port"
	wait_http_200 "haproxy ($n servers)" "$SCALE_HAPROXY_PID" "$SCALE_URL/readyz"
}

scale_stop() {
	stop_pid "$SCALE_HAPROXY_PID"
	erp_stop_servers
}

# scale_run N PREFIX: the three figures with N processes, as PREFIX_*.
scale_run() {
	local n=$1 p=$2 subject
	scale_start "$n"
	erp_signup "${SCALE_URL##*:}" "scale-$n"
	subject=$(post_json_field "create user" "$SCALE_URL/v1/users" \
		"{\"email\":\"subject@bench.test\",\"name\":\"Bench Subject\",\"roles\":[\"employee\"],\"password\":\"subject-password-$RANDOM$RANDOM\"}" \
		201 id -H "Authorization: Bearer $ERP_TOKEN")
	settle
	local DURATION=$SCALE_SECONDS
	run_wrk "scale-$n-me" "$SCALE_URL/v1/me" -H "Authorization: Bearer $ERP_TOKEN"
	printf -v "${p}_me_rps" '%s' "$WRK_RPS"
	printf -v "${p}_me_p99" '%s' "$WRK_P99"
	printf -v "${p}_me_errors" '%s' "$WRK_ERRORS"
	((WRK_ERRORS == 0)) || SCALE_ERRORS=$((SCALE_ERRORS + 1))
	settle
	ws_run "scale-$n" fanout -clients "$SCALE_WS_CLIENTS" -seconds "$SCALE_SECONDS" \
		-rate "$SCALE_WS_RATE" -idle 1s -publishers "$WS_PUBLISHERS" -pid "${ERP_PIDS[0]}" \
		-target trellis -ws "ws://${SCALE_URL#http://}/v1/ws" -http "$SCALE_URL" \
		-token "$ERP_TOKEN" -user-id "$subject"
	ws_load "$OUT/ws-scale-$n.json" "${p}W"
	local failed=${p}W_connect_failed errs=${p}W_publish_errors dups=${p}W_duplicates
	((${!failed} == 0 && ${!errs} == 0 && ${!dups} == 0)) || SCALE_ERRORS=$((SCALE_ERRORS + 1))
	settle
	erp_step "scale-$n-sales" "${p}E" "$WSFAN" erp-sales -http "$SCALE_URL" \
		-ws "ws://${SCALE_URL#http://}/v1/ws" -token "$ERP_TOKEN" -clients "$ERP_CLIENTS" \
		-seconds "$SCALE_SECONDS" -products "$SCALE_PRODUCTS" -lines "$ERP_LINES" \
		-listeners "$ERP_LISTENERS" -pid "${ERP_PIDS[0]}"
	local of=${p}E_orders_failed ok=${p}E_checks_ok
	((${!of} == 0)) && [[ ${!ok} == true ]] || SCALE_ERRORS=$((SCALE_ERRORS + 1))
	scale_stop
}

scale_bench() {
	SCALE_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	ws_build_client
	stop_pid "$SERVER_PID"
	scale_run 1 S1
	settle
	scale_run 3 S3
	SCALE_LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
}

write_scale_results() {
	{
		echo
		echo "## Scale-out: 1 and 3 processes behind haproxy"
		echo
		echo "| figure | 1 process | 3 processes | 3 / 1 |"
		echo "| --- | ---: | ---: | ---: |"
		echo "| GET /v1/me, requests/s (wrk -t$WRK_THREADS -c$CONNECTIONS) | $S1_me_rps | $S3_me_rps | $(ratio "$S3_me_rps" "$S1_me_rps") |"
		echo "| GET /v1/me p99 | $S1_me_p99 | $S3_me_p99 | - |"
		echo "| WebSocket fan-out, delivered messages/s ($SCALE_WS_CLIENTS clients, $SCALE_WS_RATE events/s) | $(num "$S1W_delivered_per_sec" 0) | $(num "$S3W_delivered_per_sec" 0) | $(ratio "$S3W_delivered_per_sec" "$S1W_delivered_per_sec") |"
		echo "| WebSocket publish -> receive p99 ms | $(num "$S1W_latency_p99_ms" 1) | $(num "$S3W_latency_p99_ms" 1) | - |"
		echo "| ERP orders/s (create -> confirm -> invoice -> pay -> ship, $ERP_CLIENTS clients) | $(num "$S1E_orders_per_sec" 1) | $(num "$S3E_orders_per_sec" 1) | $(ratio "$S3E_orders_per_sec" "$S1E_orders_per_sec") |"
		echo "| ERP flow p99 ms | $(num "$S1E_flow_p99_ms" 1) | $(num "$S3E_flow_p99_ms" 1) | - |"
		echo
		echo "Notes:"
		echo "- One machine, $(nproc) cores, shared by haproxy, the servers, FerretDB, PostgreSQL, Redis, wrk and" \
			"wsfan; a second process only helps where one process leaves a core idle. Load average (1, 5, 15 min)" \
			"as the section began: $SCALE_LOADAVG; as it ended: $SCALE_LOADAVG_END."
		echo "- haproxy from ops/haproxy-config.sh (leastconn, health check on /readyz); every request and" \
			"WebSocket goes through it in both columns. ${SCALE_SECONDS}s per figure; ERP products: $SCALE_PRODUCTS."
		echo "- Failures: /v1/me errors $S1_me_errors / $S3_me_errors; fan-out connect failures" \
			"$S1W_connect_failed / $S3W_connect_failed, failed publishes $S1W_publish_errors / $S3W_publish_errors," \
			"lost $(num "$S1W_lost_pct" 2)% / $(num "$S3W_lost_pct" 2)%;" \
			"orders failed $S1E_orders_failed / $S3E_orders_failed, ERP checks $S1E_checks_ok / $S3E_checks_ok."
	} >>"$OUT/results.md"
}

main() {
	case $ONLY in
	all | http | ws | crm | data | erp | bpm | gateway | scale) ;;
	*) die "BENCH_ONLY must be all, http, ws, crm, data, erp, bpm, gateway or scale, got '$ONLY'" ;;
	esac
	preflight
	[[ $ONLY == http || $ONLY == crm || $ONLY == data || $ONLY == erp || $ONLY == bpm || $ONLY == gateway ||
		$ONLY == scale ]] || ws_preflight
	if [[ $ONLY == all || $ONLY == crm ]]; then
		crm_preflight
	fi
	if [[ $ONLY == all || $ONLY == data ]]; then
		data_preflight
	fi
	if [[ $ONLY == all || $ONLY == erp ]]; then
		erp_preflight
	fi
	if [[ $ONLY == all || $ONLY == bpm ]]; then
		bpm_preflight
	fi
	if [[ $ONLY == all || $ONLY == gateway ]]; then
		gw_preflight
	fi
	if [[ $ONLY == all || $ONLY == scale ]]; then
		scale_preflight
	fi
	mkdir -p "$OUT"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/trellis-bench.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	read -r MONGO_PORT REDIS_PORT HTTP_PORT NGINX_PORT < <(free_ports 4)
	[[ -n ${NGINX_PORT:-} ]] || die "could not pick free ports"
	MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT/trellis_bench"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

	log "temp dir $TMP; ports: FerretDB $MONGO_PORT, Redis $REDIS_PORT, Trellis $HTTP_PORT, nginx $NGINX_PORT"
	log "Trellis runs with TRELLIS_LOG_LEVEL=$LOG_LEVEL and TRELLIS_WORKERS=$WORKERS; nginx with worker_processes $NGINX_WORKERS"
	start_ferretdb
	start_redis
	start_server
	if [[ $ONLY == all || $ONLY == http ]]; then
		log "server ready (pid $SERVER_PID); idle ${IDLE_SECONDS}s before reading VmRSS"
		measure_idle_rss
		log "idle VmRSS: $RSS_KIB KiB"
	fi

	seed
	HTTP_ERRORS=0 WS_ERRORS=0 CRM_ERRORS=0 DATA_ERRORS=0 ERP_ERRORS=0 BPM_ERRORS=0 GW_ERRORS=0
	SCALE_ERRORS=0
	if [[ $ONLY == all || $ONLY == http ]]; then
		http_bench
	else
		write_results_header
	fi
	if [[ $ONLY == all || $ONLY == ws ]]; then
		ws_bench
		write_ws_results
	fi
	if [[ $ONLY == all || $ONLY == crm ]]; then
		crm_bench
		write_crm_results
	fi
	if [[ $ONLY == all || $ONLY == data ]]; then
		data_bench
	fi
	if [[ $ONLY == all || $ONLY == erp ]]; then
		erp_bench
		write_erp_results
	fi
	if [[ $ONLY == all || $ONLY == bpm ]]; then
		bpm_bench
		write_bpm_results
	fi
	if [[ $ONLY == all || $ONLY == gateway ]]; then
		gw_bench
		write_gw_results
	fi
	if [[ $ONLY == all || $ONLY == scale ]]; then
		scale_bench
		write_scale_results
	fi

	echo
	cat "$OUT/results.md"
	echo
	echo "(written to ${OUT#"$ROOT"/}/results.md)"
	if ((HTTP_ERRORS > 0)); then
		die "$HTTP_ERRORS requests failed during the wrk runs (see the errors column); the figures are not valid"
	fi
	if ((WS_ERRORS > 0)); then
		die "the WebSocket runs had failures (see the notes under their table); those figures are not valid"
	fi
	if ((CRM_ERRORS > 0)); then
		die "the CRM runs had failures (see the notes under their table); those figures are not valid"
	fi
	if ((DATA_ERRORS > 0)); then
		die "requests of the data runs failed (see the failed column); those figures are not valid"
	fi
	if ((ERP_ERRORS > 0)); then
		die "the ERP runs had failures or invariant violations (see the notes under their table); those figures are not valid"
	fi
	if ((BPM_ERRORS > 0)); then
		die "the BPM runs had failures (see the notes under their table); those figures are not valid"
	fi
	if ((SCALE_ERRORS > 0)); then
		die "the scale runs had failures (see the notes under their table); those figures are not valid"
	fi
	if ((GW_ERRORS > 0)); then
		die "the gateway runs had failures (see the notes under their table); those figures are not valid"
	fi
}

main "$@"
