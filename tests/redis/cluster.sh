#!/usr/bin/env bash
# A local Redis Cluster of three masters on loopback, for tests and
# benchmarks: Debian's redis-server in cluster mode, no replicas.
#
#   tests/redis/cluster.sh start DIR PORT1 PORT2 PORT3
#   tests/redis/cluster.sh stop DIR
#
# start returns once every node reports cluster_state:ok and all 16384
# slots are served. Each node keeps its files in DIR/PORT.
set -euo pipefail

redis_server=${TRELLIS_REDIS_BIN:-redis-server}
redis_cli=${TRELLIS_REDIS_CLI:-redis-cli}

die() { echo "cluster.sh: $*" >&2; exit 1; }

start() {
	local dir=$1; shift
	[ $# -eq 3 ] || die "start needs a directory and three ports"
	mkdir -p "$dir"
	for port in "$@"; do
		mkdir -p "$dir/$port"
		"$redis_server" --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
			--cluster-enabled yes --cluster-config-file nodes.conf \
			--cluster-node-timeout 5000 --appendonly yes --save "" \
			--daemonize yes --pidfile "$dir/$port/redis.pid" \
			--logfile "$dir/$port/redis.log" >/dev/null
	done
	for port in "$@"; do
		for _ in $(seq 100); do
			"$redis_cli" -p "$port" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
		"$redis_cli" -p "$port" ping >/dev/null 2>&1 || die "node $port did not start"
	done
	"$redis_cli" --cluster create "127.0.0.1:$1" "127.0.0.1:$2" "127.0.0.1:$3" \
		--cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 ||
		die "cluster create failed: $(tail -5 "$dir/create.log")"
	for _ in $(seq 200); do
		local ok=0
		for port in "$@"; do
			local info
			info=$("$redis_cli" -p "$port" cluster info 2>/dev/null || true)
			if grep -q "cluster_state:ok" <<<"$info" &&
				grep -q "cluster_slots_ok:16384" <<<"$info"; then
				ok=$((ok + 1))
			fi
		done
		[ "$ok" -eq 3 ] && return 0
		sleep 0.1
	done
	die "the cluster did not reach cluster_state:ok"
}

stop() {
	local dir=$1 pids=()
	for pidfile in "$dir"/*/redis.pid; do
		[ -f "$pidfile" ] && pids+=("$(cat "$pidfile")")
	done
	[ ${#pids[@]} -eq 0 ] && return 0
	kill "${pids[@]}" 2>/dev/null || true
	for _ in $(seq 50); do
		local alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive -eq 0 ] && return 0
		sleep 0.1
	done
}

case "${1:-}" in
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*) die "usage: $0 start DIR PORT1 PORT2 PORT3 | stop DIR" ;;
esac
