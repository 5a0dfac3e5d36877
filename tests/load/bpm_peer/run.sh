#!/usr/bin/env bash
# Peer side of the BPM benchmark: Flowable's embedded process engine on an
# H2 file database, driven by BpmPeer (see src/main/java/trellis/bench/bpm).
#
#   bash tests/load/bpm_peer/run.sh [--threads C] [--seconds S] [--warmup W]
#   bash tests/load/bpm_peer/run.sh --inbox N
#
# Arguments go to the driver unchanged; without --db the database lives in
# build/bench/bpm_peer/h2/ and is started empty on every run (--keep-db
# reuses it). The jar is built once with Maven into build/bench/bpm_peer/
# and rebuilt only when pom.xml or a source file is newer than it
# (BPM_PEER_REBUILD=1 forces a rebuild). Result: one JSON line on stdout.
#
# Environment: JAVA (default: java on PATH), MVN (default: mvn on PATH),
# BPM_PEER_JAVA_OPTS (default: -Xms1g -Xmx4g).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$root/build/bench/bpm_peer"
jar="$out/target/bpm-peer.jar"
java_bin="${JAVA:-java}"
mvn_bin="${MVN:-mvn}"

die() {
    echo "bpm_peer: $*" >&2
    exit 1
}

command -v "$java_bin" >/dev/null 2>&1 \
    || die "Java not found ('$java_bin'); install a JDK 17 or newer, or set JAVA=/path/to/java"
java_major="$("$java_bin" -XshowSettings:properties -version 2>&1 \
    | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
case "$java_major" in
    1.*|'') die "could not read the Java version of '$java_bin' (need 17 or newer)" ;;
esac
[ "$java_major" -ge 17 ] 2>/dev/null \
    || die "Java $java_major found ('$java_bin'); 17 or newer is needed"

needs_build=0
if [ "${BPM_PEER_REBUILD:-0}" = 1 ] || [ ! -f "$jar" ] || [ ! -d "$out/target/lib" ]; then
    needs_build=1
elif [ -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -print -quit)" ]; then
    needs_build=1
fi

if [ "$needs_build" = 1 ]; then
    command -v "$mvn_bin" >/dev/null 2>&1 \
        || die "Maven not found ('$mvn_bin'); install Maven 3.6+ (e.g. apt-get install maven), or set MVN=/path/to/mvn"
    mkdir -p "$out"
    log="$out/mvn.log"
    echo "bpm_peer: building $jar (Maven log: $log)" >&2
    rm -rf "$out/target/lib"
    if ! JAVA_HOME="${JAVA_HOME:-}" "$mvn_bin" -q -B -ntp -f "$here/pom.xml" \
            -Dbpm.out="$out" -Dstyle.color=never package >"$log" 2>&1; then
        echo "bpm_peer: Maven build failed; last lines of $log:" >&2
        tail -n 25 "$log" | sed 's/\x1b\[[0-9;]*m//g' >&2
        if grep -q -E 'Could not (resolve|transfer|find artifact)|could not be resolved|Non-resolvable|Failed to read artifact descriptor|offline mode' "$log"; then
            die "Maven could not get the artifacts (org.flowable:flowable-engine, com.h2database:h2, plugins) - is the Maven repository reachable?"
        fi
        die "Maven build failed"
    fi
    [ -f "$jar" ] || die "Maven finished but $jar is missing"
fi

args=("$@")
has_db=0
for a in "${args[@]}"; do
    case "$a" in --db|--db=*) has_db=1 ;; esac
done
if [ "$has_db" = 0 ]; then
    args+=(--db "$out/h2")
fi

# shellcheck disable=SC2086
exec "$java_bin" ${BPM_PEER_JAVA_OPTS:--Xms1g -Xmx4g} -jar "$jar" "${args[@]}"
