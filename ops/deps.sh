#!/usr/bin/env bash
# Installs what Trellis needs and is missing, and nothing else. Safe to run
# again: every step checks first.
#   - Debian packages (build libraries, PostgreSQL 15 and redis-server, wrk and
#     nginx for benchmarks, haproxy for the rolling-restart test and the
#     scale-out benchmark)
#   - FerretDB v1.24 (the embedded MongoDB-compatible database), built from its Go module
#   - the Python test virtualenv in .venv from tests/requirements.txt
#   - the TypeScript client check's packages (tests/openapi-ts, from its lock file)
#   - the console's build packages (modules/console, from its lock file)
#   - with "test": Debian's chromium too, for the console's browser tests,
#     prometheus for its promtool, which checks and unit-tests the alert
#     rules in ops/prometheus (the server it also installs is not started
#     here), and systemd for systemd-analyze, which checks ops/systemd
#   - with "test" or "fuzz": clang and its sanitizer runtimes, for the fuzz
#     harnesses (tests/fuzz); `make run` never needs them. "fuzz" installs
#     the Debian packages only. libFuzzer is in
#     libclang-rt-14-dev, which clang-14 only recommends (through
#     libclang-common-14-dev), and recommendations are not installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION=v1.24.0
PKGS=(pkg-config libwebsockets-dev libuv1-dev libmongoc-dev libbson-dev libjwt-dev
      libhiredis-dev libsodium-dev libcmocka-dev libcurl4-openssl-dev libpq-dev postgresql-15
      redis-server wrk nginx haproxy clang-format)
# Node and npm for the TypeScript client check: Debian's packages when no
# npm is on PATH (a machine may carry another build of Node, whose own npm
# conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
# The browser tests drive Debian's chromium (playwright-core never downloads one).
[ "${1:-}" = test ] && PKGS+=(chromium fonts-dejavu-core)
# promtool (ops/prometheus: `promtool check rules`, `promtool test rules`)
# and systemd-analyze (ops/systemd/verify.sh).
[ "${1:-}" = test ] && PKGS+=(prometheus systemd)
# The runtime package is versioned: it must match Debian's clang (14 on bookworm).
case "${1:-}" in test | fuzz) PKGS+=(clang libclang-rt-14-dev) ;; esac

say() { printf 'deps: %s\n' "$*"; }

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		say "apt-get not found: install ${missing[*]} with your package manager, then run make again."
		exit 1
	fi
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	say "installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The fuzz harnesses need nothing but the packages: the rest is for the
# server, its tests and the console.
[ "${1:-}" = fuzz ] && exit 0

# Debian starts a system redis-server on 6379 (and may create a PostgreSQL
# cluster "15/main") when the packages are installed; Trellis runs its own
# instances (ops/pg.sh), so the system ones are left alone.

# FerretDB. `go install ...@v1.24.0` is the documented way, but the module
# proxy here refuses the version list that `go install` reads to check for
# deprecation, and the module zip carries no build/version/version.txt (the
# binary panics at start without it). So: download the exact version, copy
# the sources out of the read-only module cache, write the version file and
# build. The result is the same binary, in the same place go install uses.
ferretdb_bin="${TRELLIS_FERRETDB_BIN:-}"
if [ -z "$ferretdb_bin" ] && [ -z "${TRELLIS_MONGO_URI:-}" ]; then
	if ! command -v go >/dev/null 2>&1; then
		say "go not found: install Go (https://go.dev/dl) or set TRELLIS_MONGO_URI to an existing MongoDB instead."
		exit 1
	fi
	gobin="$(go env GOPATH)/bin"
	ferretdb_bin="$gobin/ferretdb"
	# read the whole answer first: grep -q stopping early would kill the writer
	# with SIGPIPE, and pipefail would take that for "not installed"
	have=$("$ferretdb_bin" --version 2>/dev/null || true)
	if ! grep -q "version: $FERRETDB_VERSION" <<<"$have"; then
		say "building FerretDB $FERRETDB_VERSION (once; about a minute)"
		work=$(mktemp -d)
		trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
		(cd "$work" && go mod init trellis-ferretdb-build >/dev/null 2>&1 &&
			go get "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" >/dev/null 2>&1 &&
			go get "github.com/FerretDB/FerretDB/cmd/ferretdb@$FERRETDB_VERSION" >/dev/null 2>&1) ||
			{ say "could not download FerretDB $FERRETDB_VERSION from the Go module proxy (or set TRELLIS_MONGO_URI to an existing MongoDB)."; exit 1; }
		src="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
		cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
		echo "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"
		mkdir -p "$gobin"
		(cd "$work/src" && go build -o "$ferretdb_bin" ./cmd/ferretdb)
		have=$("$ferretdb_bin" --version)
		grep -q "version: $FERRETDB_VERSION" <<<"$have"
	fi
fi

# Python test dependencies, pinned, in a project virtualenv.
if [ ! -x .venv/bin/python ] || ! cmp -s tests/requirements.txt .venv/.requirements; then
	say "setting up .venv from tests/requirements.txt"
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	cp tests/requirements.txt .venv/.requirements
fi

# TypeScript client check (tests/integration/test_openapi_typescript.py):
# exactly the versions in the lock file.
if [ ! -f tests/openapi-ts/node_modules/.package-lock.json ] ||
	! cmp -s tests/openapi-ts/package-lock.json tests/openapi-ts/node_modules/.lock-copy; then
	say "installing tests/openapi-ts from its lock file"
	(cd tests/openapi-ts && CI=true npm ci --no-audit --no-fund --silent)
	cp tests/openapi-ts/package-lock.json tests/openapi-ts/node_modules/.lock-copy
fi

# The console's build (modules/console/build.mjs: esbuild, TypeScript) and
# its browser tests (playwright-core, axe-core): exactly the lock file.
if [ ! -f modules/console/node_modules/.package-lock.json ] ||
	! cmp -s modules/console/package-lock.json modules/console/node_modules/.lock-copy; then
	say "installing modules/console from its lock file"
	(cd modules/console && CI=true npm ci --no-audit --no-fund --silent)
	cp modules/console/package-lock.json modules/console/node_modules/.lock-copy
fi
