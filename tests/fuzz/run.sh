#!/usr/bin/env bash
# Runs the fuzz harnesses built in build/fuzz (the Makefile builds them).
#   run.sh fuzz SECONDS NAME...    fuzz each harness for SECONDS, one at a time
#   run.sh regress 0 NAME...       run each harness once over every committed
#                                  input (corpus and regressions), no fuzzing
# For harness NAME the committed inputs are tests/fuzz/corpus/NAME and
# tests/fuzz/regressions/NAME, only read; a fuzzing run adds what it finds
# to build/fuzz/corpus/NAME (kept between runs), writes crashes, leaks,
# timeouts and out-of-memory inputs to build/fuzz/crashes/NAME and its log
# to build/fuzz/logs/NAME.log. Every harness runs even after one failed;
# the exit status is 1 when any failed, and each failure is named with the
# command that reproduces it.
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=${1:?mode}
seconds=${2:?seconds}
shift 2

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
failed=()

# The committed inputs of a harness, as files (the README of regressions/ is
# an input like any other: any bytes are).
inputs() {
	find "tests/fuzz/corpus/$1" "tests/fuzz/regressions/$1" -type f 2>/dev/null | sort
}

for name in "$@"; do
	bin=build/fuzz/fuzz_$name
	if [ "$mode" = regress ]; then
		mapfile -t files < <(inputs "$name")
		if [ ${#files[@]} -eq 0 ]; then # libFuzzer given no file would fuzz
			echo "fuzz-regress: $name has no committed inputs"
			failed+=("$name")
		elif "$bin" "${files[@]}" >"build/fuzz/regress_$name.log" 2>&1; then
			echo "fuzz-regress: $name: ${#files[@]} inputs pass"
		else
			echo "fuzz-regress: $name FAILED; its log:"
			tail -n 40 "build/fuzz/regress_$name.log"
			failed+=("$name")
		fi
		continue
	fi
	dict=()
	[ -f "tests/fuzz/$name.dict" ] && dict=("-dict=tests/fuzz/$name.dict")
	crashes=build/fuzz/crashes/$name
	scratch=build/fuzz/corpus/$name
	log=build/fuzz/logs/$name.log
	mkdir -p "$crashes" "$scratch" build/fuzz/logs "tests/fuzz/regressions/$name"
	echo "fuzz: $name for ${seconds}s (log: $log)"
	# the first directory is the one libFuzzer writes new inputs to
	"$bin" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$crashes/" \
		"$scratch" "tests/fuzz/corpus/$name" "tests/fuzz/regressions/$name" >"$log" 2>&1
	rc=$?
	grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/fuzz: $name: /"
	if [ $rc -ne 0 ]; then
		artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz:|.*runtime error)' "$log" | head -n 5
		echo "fuzz: $name FAILED (exit $rc); reproduce with: $bin ${artifact:-(no artifact; see $log)}"
		failed+=("$name")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "$mode: failed: ${failed[*]}"
	exit 1
fi
