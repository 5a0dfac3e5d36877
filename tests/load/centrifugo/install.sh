#!/usr/bin/env bash
# Installs Centrifugo for the WebSocket benchmark (tests/load/bench.sh) into
# $(go env GOPATH)/bin/centrifugo and prints the binary's path. Safe to run
# again: it does nothing when that binary already reports the wanted version.
#
#   CENTRIFUGO_VERSION   exact module version, default v5.4.9
#
# Why v5.4.9 and not v6: the Go module proxy reached from this project's
# machines answers 403 "This module version is not available" for every
# github.com/centrifugal/centrifugo/v6 version asked for (v6.0.0, v6.0.3,
# v6.1.0, v6.1.1, v6.2.0, v6.2.5, v6.3.0, v6.4.0, v6.5.0 were tried), while
# it serves v5.4.9, the last v5 release. Set CENTRIFUGO_VERSION=v6.x.y where
# the proxy serves v6; bench.sh writes the v6 configuration layout then.
#
# `go install module@version` is tried first. Here it fails even for an
# exact version, because it also reads the module's version list (to warn
# about deprecation) and the proxy refuses that list; then the exact version
# is downloaded into a throwaway module and built, which gives the same
# binary. Either way the version is stamped into the binary, as Centrifugo's
# own release build does, so `centrifugo version` names it.
set -euo pipefail

VERSION=${CENTRIFUGO_VERSION:-v5.4.9}
[[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
	echo "centrifugo/install.sh: CENTRIFUGO_VERSION must look like v6.1.0, got '$VERSION'" >&2
	exit 2
}
MAJOR=${VERSION%%.*}
MODULE=github.com/centrifugal/centrifugo
[[ $MAJOR == v0 || $MAJOR == v1 ]] || MODULE=$MODULE/$MAJOR
LDFLAGS="-s -w -X $MODULE/internal/build.Version=${VERSION#v}"

say() { printf 'centrifugo: %s\n' "$*" >&2; }

command -v go >/dev/null || {
	say "go not found: install Go to build Centrifugo"
	exit 1
}
GOBIN_DIR=$(go env GOPATH)/bin
BIN=$GOBIN_DIR/centrifugo

installed() { "$BIN" version 2>/dev/null | grep -q "^Centrifugo $VERSION "; }

if installed; then
	echo "$BIN"
	exit 0
fi

say "installing Centrifugo $VERSION into $GOBIN_DIR (once; a minute or two)"
mkdir -p "$GOBIN_DIR"
if GOBIN=$GOBIN_DIR go install -trimpath -ldflags "$LDFLAGS" "$MODULE@$VERSION" 2>"${TMPDIR:-/tmp}/centrifugo-install.err"; then
	:
else
	say "go install $MODULE@$VERSION failed ($(head -c 200 "${TMPDIR:-/tmp}/centrifugo-install.err" | tr '\n' ' ')); building from the downloaded module instead"
	work=$(mktemp -d)
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	(cd "$work" && go mod init trellis-centrifugo-build >/dev/null 2>&1 &&
		go get "$MODULE@$VERSION" >"$work/get.log" 2>&1) || {
		tail -n 5 "$work/get.log" >&2 || true
		say "could not download $MODULE@$VERSION from the Go module proxy"
		exit 1
	}
	(cd "$work" && go build -trimpath -ldflags "$LDFLAGS" -o "$BIN" "$MODULE")
fi
rm -f "${TMPDIR:-/tmp}/centrifugo-install.err"
installed || {
	say "$BIN does not report version $VERSION: $("$BIN" version 2>&1 | head -n 1)"
	exit 1
}
echo "$BIN"
