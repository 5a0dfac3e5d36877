#!/usr/bin/env bash
# Checks the systemd units here with systemd's own parser, as a host would
# load them: `systemd-analyze verify` over a scratch root that holds the
# units in /etc/systemd/system, the given trellis binary as
# /opt/trellis/trellis (ExecStart must name an executable) and this host's
# stock units (targets the units order against). Any complaint - an unknown
# key, a bad value, a missing executable - fails the check. Then
# `systemd-analyze security --offline` rates the hardening of each role's
# unit and fails above EXPOSURE_MAX.
#   ops/systemd/verify.sh path/to/trellis
set -euo pipefail
cd "$(dirname "$0")"

bin=${1:?usage: ops/systemd/verify.sh path/to/trellis}
EXPOSURE_MAX=${EXPOSURE_MAX:-50}
command -v systemd-analyze >/dev/null || { echo "verify: systemd-analyze is missing" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/opt/trellis" "$root/etc/systemd/system" "$root/lib/systemd"
cp -r /lib/systemd/system "$root/lib/systemd/"
cp "$bin" "$root/opt/trellis/trellis"
cp trellis.service trellis-api@.service trellis-ws@.service trellis-worker@.service \
	trellis.target "$root/etc/systemd/system/"

units=(trellis.service trellis.target trellis-api@8081.service trellis-ws@8091.service
	trellis-worker@8099.service)
status=0
out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out" >&2
	echo "verify: systemd-analyze verify complained (exit $status)" >&2
	exit 1
fi
for u in trellis-api@8081.service trellis-ws@8091.service trellis-worker@8099.service; do
	status=0
	out=$(systemd-analyze security --offline=true --root="$root" --threshold="$EXPOSURE_MAX" \
		--no-pager "$u" 2>&1) || status=$?
	if [ "$status" -ne 0 ]; then
		printf '%s\n' "$out" >&2
		echo "verify: $u is exposed above $EXPOSURE_MAX" >&2
		exit 1
	fi
	printf '%s: %s\n' "$u" "$(grep -o 'Overall exposure level.*' <<<"$out")"
done
echo "verify: units ok"
