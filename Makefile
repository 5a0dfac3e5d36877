# Trellis - build, run and test.
#
#   make build   the server (build/trellis), the tools beside it (build/trellis-demo) and
#                the console it serves (build/console: the JS SDK and the web console)
#   make run     install what is missing, build, start FerretDB + Redis + the server
#   make test    install what is missing, check module boundaries, build with ASan/UBSan,
#                unit tests, the fuzz regressions, integration tests
#   make tsan    the concurrency tests against a ThreadSanitizer build (build/tsan/trellis)
#   make bench   benchmarks (tests/load/), numbers printed and written to build/bench/
#   make soak    SOAK_MINUTES (30) of mixed traffic; RSS, fds and threads must stay flat
#   make fuzz    each libFuzzer harness (tests/fuzz/) for FUZZ_SECONDS (300) with clang
#   make fuzz-regress  each harness once over its committed corpus and regressions (in make test)
#
# Everything the targets need is installed by ops/deps.sh (idempotent).

CC      ?= gcc
PKGS    := libwebsockets libuv libmongoc-1.0 libbson-1.0 libjwt hiredis libsodium libcurl libpq
WARN    := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow
CSTD    := -std=c11 -D_GNU_SOURCE
# server/ by concern: net (HTTP, WebSocket, routing, responses, OpenAPI),
# data (database, registers, resources, Redis), events (events, jobs),
# identity (tokens, sessions, permissions); the process and shared
# utilities at its root. Every folder is on the include path.
SERVER_DIRS := server server/net server/data server/events server/identity
INCS    := $(addprefix -I,$(SERVER_DIRS)) -Imodules
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

SRCS     := $(foreach d,$(SERVER_DIRS),$(wildcard $(d)/*.c)) $(wildcard modules/*/*.c)
LIB_SRCS := $(filter-out server/main.c,$(SRCS))
HDRS     := $(foreach d,$(SERVER_DIRS),$(wildcard $(d)/*.h)) $(wildcard modules/*/*.h)
# tools/: programs of their own beside the server, linked with its library
# objects; trellis-demo (tools/demo) writes the demo data.
DEMO_SRCS := $(wildcard tools/demo/*.c)
DEMO_HDRS := $(wildcard tools/demo/*.h)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
LOAD_SRCS := $(wildcard tests/load/*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_HDRS := $(wildcard tests/fuzz/*.h)
# every C file of the tree: what `make fmt` rewrites is what `make fmt-check` checks
FMT_SRCS  := $(SRCS) $(HDRS) $(DEMO_SRCS) $(DEMO_HDRS) $(UNIT_SRCS) $(LOAD_SRCS) $(FUZZ_SRCS) \
	     $(FUZZ_HDRS)

REL_CFLAGS  := $(CSTD) $(WARN) -O2 -g $(INCS)
ASAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined $(INCS)

# ThreadSanitizer cannot be combined with ASan, so it is a build of its own.
# -fPIE -pie as gcc documents for -fsanitize=thread (Debian's gcc builds PIE
# anyway; said here so that the build does not depend on it).
TSAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=thread -fPIE $(INCS)

REL_OBJS  := $(SRCS:%.c=build/obj/%.o)
REL_LIB_OBJS := $(LIB_SRCS:%.c=build/obj/%.o)
ASAN_OBJS := $(SRCS:%.c=build/asan/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/asan/unit/%)
TSAN_OBJS := $(SRCS:%.c=build/tsan/obj/%.o)
TSAN_LIB_OBJS := $(LIB_SRCS:%.c=build/tsan/obj/%.o)
REL_DEMO_OBJS  := $(DEMO_SRCS:%.c=build/obj/%.o)
ASAN_DEMO_OBJS := $(DEMO_SRCS:%.c=build/asan/obj/%.o)
TSAN_DEMO_OBJS := $(DEMO_SRCS:%.c=build/tsan/obj/%.o)

# Fuzzing (README.md, "Fuzzing"): libFuzzer needs clang. The library
# objects are compiled with coverage instrumentation (fuzzer-no-link) and
# the same sanitizers as the ASan build, into build/fuzz/obj; each harness
# links them as a unit test does (its "// unit-under-test:" file left out)
# with libFuzzer's main. Same warnings as gcc, no extra flags.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=undefined $(INCS)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= $(FUZZ_NAMES)

VENV    := .venv
PYTHON  := $(VENV)/bin/python

.PHONY: all deps build build-asan build-tsan run test unit integration test-redis-cluster tsan bench soak fmt \
	fmt-check clean migrate boundaries console console-test build-fuzz fuzz fuzz-regress

all: build

deps:
	@bash ops/deps.sh

build: build/trellis build/trellis-demo console
build-asan: build/asan/trellis build/asan/trellis-demo build/asan/load_crm
build-tsan: build/tsan/trellis build/tsan/trellis-demo

build/trellis: $(REL_OBJS)
	$(CC) -o $@ $^ $(PKG_LIBS)

# The bench's data loader: the server's data layer, without its main.
build/load_crm: tests/load/load_crm.c $(REL_LIB_OBJS) $(HDRS)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(REL_LIB_OBJS) $(PKG_LIBS)

# The same loader for the console's browser test of 10,000 leads.
build/asan/load_crm: tests/load/load_crm.c $(ASAN_LIB_OBJS) $(HDRS)
	$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(ASAN_LIB_OBJS) -fsanitize=address,undefined \
	  $(PKG_LIBS)

# The bench's ledger loader: journal entries through the ERP module's own
# erp_ledger_post (tests/load/load_erp.c says why not through HTTP).
build/load_erp: tests/load/load_erp.c $(REL_LIB_OBJS) $(HDRS)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(REL_LIB_OBJS) $(PKG_LIBS)

# The bench's BPM inbox loader: copies of an instance the API started and
# of its task, through the data layer's import (tests/load/load_bpm.c).
build/load_bpm: tests/load/load_bpm.c $(REL_LIB_OBJS) $(HDRS)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(REL_LIB_OBJS) $(PKG_LIBS)

build/asan/trellis: $(ASAN_OBJS)
	$(CC) -fsanitize=address,undefined -o $@ $^ $(PKG_LIBS)

build/tsan/trellis: $(TSAN_OBJS)
	$(CC) -fsanitize=thread -pie -o $@ $^ $(PKG_LIBS)

# Each tool beside each server binary: its own objects and the server's
# without server/main.c.
build/trellis-demo: $(REL_DEMO_OBJS) $(REL_LIB_OBJS)
	$(CC) -o $@ $^ $(PKG_LIBS)

build/asan/trellis-demo: $(ASAN_DEMO_OBJS) $(ASAN_LIB_OBJS)
	$(CC) -fsanitize=address,undefined -o $@ $^ $(PKG_LIBS)

build/tsan/trellis-demo: $(TSAN_DEMO_OBJS) $(TSAN_LIB_OBJS)
	$(CC) -fsanitize=thread -pie -o $@ $^ $(PKG_LIBS)

$(REL_DEMO_OBJS) $(ASAN_DEMO_OBJS) $(TSAN_DEMO_OBJS): $(DEMO_HDRS)

build/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

build/asan/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

build/tsan/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

# Unit tests may #include the .c file under test to reach its statics, so
# each test links the library objects except the one it includes (listed in
# the test's first line as "// unit-under-test: server/x.c"); a tool's
# files are included the same way (test_demo_erp_plan.c).
build/asan/unit/%: tests/unit/%.c $(ASAN_LIB_OBJS) $(HDRS) $(DEMO_SRCS) $(DEMO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	  $(filter-out $(patsubst %.c,build/asan/obj/%.o,$(shell sed -n '1s|^// unit-under-test: ||p' $<)),$(ASAN_LIB_OBJS)) \
	  -fsanitize=address,undefined $(PKG_LIBS) $(shell pkg-config --libs cmocka)

build/fuzz/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS) $(HDRS) $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(filter-out $(patsubst %.c,build/fuzz/obj/%.o,$(shell sed -n '1s|^// unit-under-test: ||p' $<)),$(FUZZ_LIB_OBJS)) \
	  $(PKG_LIBS)

# (the objects named here too, so that make keeps them between builds)
build-fuzz: $(FUZZ_LIB_OBJS) $(FUZZ_BINS)

# Each harness for FUZZ_SECONDS, one after the other: the committed corpus
# (tests/fuzz/corpus/<name>) and regressions are read, what the run finds
# goes to build/fuzz/corpus/<name>, crashes to build/fuzz/crashes/<name>.
# Fails when any harness found one, naming it and its reproducer.
fuzz:
	@bash ops/deps.sh fuzz
	@$(MAKE) --no-print-directory build-fuzz
	@bash tests/fuzz/run.sh fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Each harness once over every committed input, no fuzzing: seconds.
fuzz-regress: build-fuzz
	@bash tests/fuzz/run.sh regress 0 $(FUZZ_NAMES)

# The console (modules/console): the SDK and the web console bundled into
# build/console, which the server serves at /sdk/ and /app/. Its types come
# from the OpenAPI document CONSOLE_TRELLIS prints (`trellis openapi`).
CONSOLE_TRELLIS ?= build/trellis
CONSOLE_SRCS := $(shell find modules/console/sdk/src modules/console/sdk/test modules/console/app \
		  -type f -not -path '*/generated/*' 2>/dev/null) \
		modules/console/build.mjs $(wildcard modules/console/tsconfig*.json) \
		modules/console/package-lock.json
console: build/console/sizes.json

build/console/sizes.json: $(CONSOLE_TRELLIS) $(CONSOLE_SRCS)
	@test -d modules/console/node_modules || { echo "console: run make deps first"; exit 1; }
	cd modules/console && ASAN_OPTIONS=detect_leaks=0 TRELLIS_BIN=$(CURDIR)/$(CONSOLE_TRELLIS) \
	  node build.mjs --tests

# The SDK's unit tests (node's test runner, fakes for fetch and WebSocket).
console-test: console
	node --test build/console/test/

run: deps build
	@bash ops/run.sh

migrate: build
	@build/trellis migrate

# Runs every unit binary, then fails if any failed (one failure does not hide the rest).
unit: $(UNIT_BINS)
	@failed=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || failed=1; done; exit $$failed

integration: build-asan
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# Modules, and the tools beside the server, include only the platform's
# public headers and call no driver (ARCHITECTURE.md, "Modules"); the
# self-test proves the check can fail.
boundaries:
	@CC="$(CC)" CHECK_CFLAGS="$(CSTD) $(INCS) $(PKG_CFLAGS)" bash tests/check_module_boundaries.sh --self-test
	@CC="$(CC)" CHECK_CFLAGS="$(CSTD) $(INCS) $(PKG_CFLAGS)" bash tests/check_module_boundaries.sh modules tools

test:
	@bash ops/deps.sh test
	@$(MAKE) --no-print-directory boundaries
	@$(MAKE) --no-print-directory build-asan
	@$(MAKE) --no-print-directory console CONSOLE_TRELLIS=build/asan/trellis
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-regress
	@$(MAKE) --no-print-directory console-test CONSOLE_TRELLIS=build/asan/trellis
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory test-redis-cluster

# The live-events, resume, queue and session suites again, against a local
# Redis Cluster of three masters (tests/redis/cluster.sh) with the server in
# redis_mode=cluster: tenants' keys, streams, shard channels and queue
# partitions land on different nodes. Tests that start or stop a Redis of
# their own skip themselves there.
REDIS_CLUSTER_TESTS ?= tests/integration/test_events_live.py tests/integration/test_ws_protocol.py \
		       tests/integration/test_changes_feed.py tests/integration/test_events_faults.py \
		       tests/integration/test_jobs_webhooks.py tests/integration/test_webhooks_ordered.py \
		       tests/integration/test_identity_auth.py tests/integration/test_crm_live.py \
		       tests/integration/test_redis_cluster_jobs.py

test-redis-cluster: build-asan
	TRELLIS_IT_REDIS_CLUSTER=1 $(PYTHON) -m pytest -q -p no:cacheprovider $(REDIS_CLUSTER_TESTS)

# The tests where threads and processes meet, against the ThreadSanitizer
# build: three servers racing on one database, jobs on worker threads, events
# through Redis faults (TSAN_TESTS=tests/integration runs them all, ~7 min).
# A report fails the run: the tests read every server log for
# "ThreadSanitizer", and a process that reported exits 66 instead of 0.
# halt_on_error=0 lets one run show every race, not only the first.
# tests/tsan.supp lists what TSan cannot judge in the uninstrumented
# libraries, and why.
#
# gcc 12's TSan maps its shadow memory at fixed addresses; on kernels that
# randomise mmap with more bits (vm.mmap_rnd_bits > 28) it stops at start with
# "unexpected memory mapping". The recipe tries the binary once and, only
# then, runs the tests with ASLR off (setarch -R) for that process tree.
TSAN_TESTS ?= tests/integration/test_exact_writes.py tests/integration/test_erp_exact.py \
	      tests/integration/test_erp_faults.py tests/integration/test_erp_planning.py \
	      tests/integration/test_bpm_exact.py tests/integration/test_bpm_sagas.py \
	      tests/integration/test_events_faults.py \
	      tests/integration/test_events_live.py tests/integration/test_jobs_webhooks.py \
	      tests/integration/test_webhooks_ordered.py tests/integration/test_crm_convert_faults.py \
	      tests/integration/test_rolling_restart.py
TSAN_RUN_OPTIONS := suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0 exitcode=66 \
		    second_deadlock_stack=1

tsan: deps
	@$(MAKE) --no-print-directory build-tsan
	@noaslr=""; \
	if build/tsan/trellis config-example 2>&1 >/dev/null | grep -q 'unexpected memory mapping'; then \
		echo "tsan: TSan cannot map its memory under this kernel's ASLR; running with setarch -R"; \
		noaslr="setarch $$(uname -m) -R"; \
	fi; \
	echo "TRELLIS_BIN=build/tsan/trellis $${noaslr:+$$noaslr }pytest $(TSAN_TESTS)"; \
	TRELLIS_BIN=$(CURDIR)/build/tsan/trellis TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" \
	  $$noaslr $(PYTHON) -m pytest -q -p no:cacheprovider $(TSAN_TESTS)

bench: deps build build/load_crm build/load_erp build/load_bpm
	@bash tests/load/bench.sh

# The soak (tests/load/soak.sh, README "Soak"): its pass/fail rules are
# tested on made-up series first, then the run judges itself by them.
SOAK_MINUTES ?= 30
soak: deps build
	@$(PYTHON) -m pytest -q -p no:cacheprovider tests/load/test_soak_analysis.py
	@SOAK_MINUTES=$(SOAK_MINUTES) bash tests/load/soak.sh

fmt:
	clang-format -i $(FMT_SRCS)

fmt-check:
	clang-format --dry-run --Werror $(FMT_SRCS)

clean:
	rm -rf build
