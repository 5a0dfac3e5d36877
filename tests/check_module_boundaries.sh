#!/usr/bin/env bash
# Modules see the platform's public headers only (ARCHITECTURE.md,
# "Modules"): never mongoc, hiredis, libwebsockets, libuv or libpq, and
# none of the platform's own driver-side headers (dbpool.h, kvconn.h,
# redis.h, pg.h, http.h, ws.h). bson.h and its data API are allowed: records
# are bson_t. The programs in tools/ (tools/demo: trellis-demo) keep the
# same rules: they reach the platform as a module does, and command.h
# starts what they use.
#
#   tests/check_module_boundaries.sh [DIR...]  check each DIR (default: modules)
#   tests/check_module_boundaries.sh --self-test
#
# DIR holds one folder per module or tool (modules/crm, tools/demo).
# Two passes, each failure named as file:line or file: header chain:
#   1. the source: #include lines and identifiers of the drivers
#      (mongoc_*, redisReply, lws_*, uv_*, PQ*) in DIR's .c and .h files;
#   2. what the compiler opens: every DIR/*/*.c preprocessed with the
#      project's include path (gcc -H), so that a public header which
#      pulls in a driver header is caught too.
# The self-test writes a module that keeps the rules and, in a second
# directory, one that breaks each rule, checks both in one run and fails
# unless every break is reported: a check that cannot fail would be worse
# than none, and one that stopped after its first directory would be too.
# CC and CHECK_CFLAGS (include flags) come from the Makefile; run alone,
# the script asks pkg-config.
set -u

cd "$(dirname "$0")/.." || exit 2

CC=${CC:-gcc}
if [ -z "${CHECK_CFLAGS:-}" ]; then
	CHECK_CFLAGS="-std=c11 -D_GNU_SOURCE -Iserver -Iserver/net -Iserver/data -Iserver/events \
		-Iserver/identity -Imodules $(pkg-config --cflags \
		libwebsockets libuv libmongoc-1.0 libbson-1.0 hiredis libpq 2>/dev/null)"
fi

# An #include of one of these (as written in the source) is refused.
INCLUDE_RE='#[[:space:]]*include[[:space:]]*[<"]([^>"]*/)?(mongoc|hiredis|libwebsockets|uv|libpq|bson/bson-|dbpool\.h|kvconn\.h|redis\.h|pg\.h|http\.h|ws\.h)'
# Calls and types of the drivers, and of the platform's pool.
IDENT_RE='\b(mongoc_[a-z_]+|redis[A-Z][A-Za-z]*|freeReplyObject|lws_[a-z_]+|uv_[a-z_]+|PQ[a-z][A-Za-z]*|tr_dbpool_[a-z_]+)\b'
# A header the compiler opened for a module (path as gcc -H prints it).
# bson's own headers are what bson.h is made of, so they are not refused here.
OPENED_RE='(/mongoc/|/hiredis/|/libwebsockets\.h$|/libwebsockets/|/uv\.h$|/uv/|/libpq-fe\.h$|(^|/)server/([a-z]+/)?(dbpool|kvconn|redis|pg|http|ws)\.h$)'

# Pass 1: prints file:line: text for each hit; returns 1 if any.
check_source() {
	local dir=$1 hits
	hits=$(grep -rnE --include='*.c' --include='*.h' "$INCLUDE_RE" "$dir"
	       grep -rnE --include='*.c' --include='*.h' "$IDENT_RE" "$dir")
	[ -z "$hits" ] && return 0
	printf '%s\n' "$hits" | sort -u -t: -k1,1 -k2,2n | sed 's/^/  /'
	return 1
}

# Pass 2: prints "file: opens header (through a.h -> b.h)" for each module
# source that brings in a forbidden header; returns 1 if any.
check_opened() {
	local dir=$1 src out status=0
	for src in "$dir"/*/*.c; do
		[ -e "$src" ] || continue
		# -H prints each header opened, one dot per level of nesting.
		# shellcheck disable=SC2086
		if ! out=$($CC $CHECK_CFLAGS -I"$dir" -H -E -o /dev/null "$src" 2>&1 >/dev/null); then
			echo "  $src: does not preprocess:"
			printf '%s\n' "$out" | grep -v '^\.' | head -5 | sed 's/^/    /'
			status=1
			continue
		fi
		# Only the outermost forbidden header of a chain is named (not
		# the dozens mongoc.h opens in turn), once per module source.
		if ! printf '%s\n' "$out" | awk -v src="$src" -v re="$OPENED_RE" '
			BEGIN { inside = 0 }
			/^\.+ / {
				depth = index($0, " ") - 1
				path = substr($0, depth + 2)
				chain[depth] = path
				if (inside && depth > inside)
					next
				inside = 0
				if (path ~ re) {
					inside = depth
					if (seen[path]++)
						next
					via = ""
					for (d = 1; d < depth; d++)
						via = via (d > 1 ? " -> " : "") chain[d]
					printf "  %s: opens %s%s\n", src, path,
					       via == "" ? "" : " (through " via ")"
					bad = 1
				}
			}
			END { exit bad }'; then
			status=1
		fi
	done
	return $status
}

check() {
	local dir=$1 status=0 report
	if ! report=$(check_source "$dir"); then
		echo "module or tool code names a driver or a platform-only header:"
		printf '%s\n' "$report"
		status=1
	fi
	if ! report=$(check_opened "$dir"); then
		echo "module or tool code brings in a driver or a platform-only header:"
		printf '%s\n' "$report"
		status=1
	fi
	return $status
}

# Every DIR given, each reported on its own; returns 1 if any broke a rule.
check_all() {
	local dir status=0
	for dir in "$@"; do
		check "$dir" || status=1
	done
	return $status
}

# A fake module that keeps the rules, then a fake tool that breaks every
# rule once, checked in one run as `make boundaries` checks modules and
# tools; each break must be reported.
self_test() {
	local tmp report status=0 expect
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/trellis-boundaries.XXXXXX") || return 2
	mkdir -p "$tmp/modules/fake" "$tmp/tools/fake"
	cat >"$tmp/modules/fake/clean.c" <<-'EOF'
		#include <bson/bson.h>
		#include "db.h"
		int fake_clean(void);
		int fake_clean(void) { return 0; }
	EOF
	cat >"$tmp/tools/fake/fake.h" <<-'EOF'
		#include <uv.h>
	EOF
	cat >"$tmp/tools/fake/broken.c" <<-'EOF'
		#include "dbpool.h"
		#include <hiredis/hiredis.h>
		#include "fake.h"
		int fake_broken(void);
		int fake_broken(void) { redisReply *r = 0; return r != 0; }
	EOF
	report=$(check_all "$tmp/modules" "$tmp/tools" 2>&1)
	for expect in "tools/fake/broken.c:1:" "tools/fake/broken.c:2:" "tools/fake/broken.c:5:" \
		"tools/fake/fake.h:1:" "tools/fake/broken.c: opens server/data/dbpool.h" \
		"/uv.h (through $tmp/tools/fake/fake.h)"; do
		if ! grep -qF -- "$expect" <<<"$report"; then
			echo "self-test: the check did not report $expect; it said:"
			printf '%s\n' "$report"
			status=1
		fi
	done
	if grep -qF "clean.c" <<<"$report"; then
		echo "self-test: the check refused a module that keeps the rules:"
		printf '%s\n' "$report"
		status=1
	fi
	rm -r -- "$tmp"
	return $status
}

if [ "${1:-}" = "--self-test" ]; then
	self_test && echo "module boundaries: the check reports every break of the self-test"
	exit $?
fi
[ $# -gt 0 ] || set -- modules
if check_all "$@"; then
	echo "module boundaries: $* include only the platform's public headers"
	exit 0
fi
echo "(modules and tools use db.h, kv.h, events.h, jobs.h and the other public headers; see ARCHITECTURE.md)"
exit 1
