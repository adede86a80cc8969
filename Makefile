# Thin wrapper over scripts/deps.sh, CMake, ctest and node's test runner.
#   make deps | build | run ARGS='--listen 8080' | test | test-unit | test-asan | test-container
#   make tsan (= test-tsan) | format | format-check | clean
#   make fuzz FUZZ_SECONDS=300 FUZZ_TARGETS=auth,rest FUZZ_FLAGS='-fork=2' | fuzz-smoke
#   (clang, from make deps-test)
#   make bench BENCH_ARGS='--quick' (bench/run.mjs: before, after and Socket.IO side by side)
# `make test` is what CI runs (.ci/run): the normal build, then ASan+UBSan,
# then the unit tests under ThreadSanitizer (the threaded modules' own tests).
# After the normal unit tests it also runs each fuzz target briefly (fuzz-smoke).

MAKEFLAGS += --no-print-directory

BUILD_DIR := build
ASAN_DIR := build-asan
TSAN_DIR := build-tsan
FUZZ_DIR := build-fuzz
JOBS ?= 2
CMAKE ?= cmake
CTEST ?= ctest
NODE ?= node
CLANG_FORMAT ?= clang-format
CLANG ?= clang
CONTAINER_CHECK ?= $(CURDIR)/../shared/tools/container-check
ARGS ?=
BENCH_ARGS ?=

# Sanitizer builds keep assert() (no -DNDEBUG) and use -O1 for usable traces.
SAN_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O1 -g'
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/cmake/tsan.supp

# Node test groups run by make test (tests/<group>/*.test.mjs); an empty group is skipped.
NODE_TEST_GROUPS ?= integration cluster browser
NODE_TESTS = $(foreach g,$(NODE_TEST_GROUPS),$(wildcard tests/$(g)/*.test.mjs))
NODE_TEST_FLAGS := --test --test-concurrency=2 --test-timeout=300000
FORMAT_FILES = $(wildcard app/*.c app/*.h tests/unit/*.c tests/fuzz/*.c tools/*.c)

# libFuzzer targets, one per parser of outside input (tests/fuzz/fuzz_<name>.c),
# built straight with clang (libFuzzer is clang's; Debian's libclang-rt-14-dev
# has it), each linking only the modules it needs (FUZZ_SRC_<name>):
#   wsframe  RFC 6455 frame decoder (wsframe.c)
#   frame    a client text frame's JSON to its type and fields (proto_frame_parse)
#   rest     REST room/message paths (api_path.c) and the search query (search_query.c)
#   config   turbochat.conf, .env and REDIS_URL (config.c, which it includes)
#   auth     token verification, also of validly signed fuzzed claims (auth.c)
#   broker   Valkey channel events and stream entries to a chat_msg (broker_decode.c)
# The seeds in tests/fuzz/corpus/<name> are read-only: runs work on copies in
# $(FUZZ_DIR). FUZZ_TARGETS=a,b picks targets; FUZZ_FLAGS adds libFuzzer options.
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 12
FUZZ_FLAGS ?=
FUZZ_ALL := wsframe frame rest config auth broker
FUZZ_TARGETS ?= $(FUZZ_ALL)
comma := ,
FUZZ_LIST = $(subst $(comma), ,$(FUZZ_TARGETS))
FUZZ_SRC_wsframe := app/wsframe.c app/util.c
FUZZ_SRC_frame := app/proto.c app/util.c
FUZZ_SRC_rest := app/api_path.c app/search_query.c app/proto.c app/util.c
FUZZ_SRC_config := app/auth.c app/proto.c app/util.c app/log.c
FUZZ_SRC_auth := app/auth.c app/proto.c app/util.c
FUZZ_SRC_broker := app/broker_decode.c app/proto.c app/util.c
FUZZ_LIBS := -lcjson -lcrypto -lm
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -Wall -Wextra -Wstrict-prototypes -Werror -Iapp
FUZZ_ARGS = -max_len=4096 -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$(1)- \
	$(FUZZ_FLAGS)
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=64 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps deps-test build build-asan build-tsan run test test-unit test-node test-container \
	test-asan tsan test-tsan fuzz fuzz-smoke bench format format-check clean
# Targets here are steps in order; parallelism lives inside cmake --build -j$(JOBS).
.NOTPARALLEL:

all: build

deps:
	scripts/deps.sh

deps-test:
	scripts/deps.sh --test

# $(call cmake_build,DIR,EXTRA CMAKE ARGS)
define cmake_build
	$(CMAKE) -S . -B $(1) $(2)
	$(CMAKE) --build $(1) -j$(JOBS)
endef

# $(call node_tests,BUILD DIR,ENV): integration, cluster and browser tests against
# DIR/turbochat, each test group skipped while it has no files.
define node_tests
	@if [ -z "$(strip $(NODE_TESTS))" ]; then \
		echo "node tests: no *.test.mjs in $(NODE_TEST_GROUPS:%=tests/%/) yet, skipped"; \
	else \
		echo "TURBOCHAT_BIN=$(CURDIR)/$(1)/turbochat $(NODE) $(NODE_TEST_FLAGS) $(NODE_TESTS)"; \
		$(2) TURBOCHAT_BIN=$(CURDIR)/$(1)/turbochat TURBOCHAT_SOURCE_DIR=$(CURDIR) \
			$(NODE) $(NODE_TEST_FLAGS) $(NODE_TESTS); \
	fi
endef

build:
	$(call cmake_build,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=RelWithDebInfo)

build-asan:
	$(call cmake_build,$(ASAN_DIR),$(SAN_FLAGS) -DTURBOCHAT_ASAN=ON)

build-tsan:
	$(call cmake_build,$(TSAN_DIR),$(SAN_FLAGS) -DTURBOCHAT_TSAN=ON)

run: deps build
	./$(BUILD_DIR)/turbochat $(ARGS)

# ------------------------------------------------------------------- tests ---
test: deps-test format-check
	$(MAKE) build
	$(MAKE) test-unit-only
	$(MAKE) fuzz-smoke
	$(MAKE) test-node-only
	$(MAKE) build-asan
	$(MAKE) test-unit-asan-only test-node-asan-only
	$(MAKE) build-tsan
	$(MAKE) test-unit-tsan-only
	$(MAKE) test-container

# The image of the Dockerfile, built and run by container-check where that tool
# is present (../shared/tools, or CONTAINER_CHECK=PATH): tests/container/probe.mjs
# chats through it, checks it runs as non-root and that a stop drains with 1001.
test-container:
	@if [ -x "$(CONTAINER_CHECK)" ]; then \
		$(CONTAINER_CHECK) --context . --probe '$(NODE) tests/container/probe.mjs' --probe-timeout 120; \
	else \
		echo "test-container: no $(CONTAINER_CHECK) on this machine, skipped"; \
	fi

test-unit: build
	$(MAKE) test-unit-only

test-node: deps-test build
	$(MAKE) test-node-only

test-asan: deps-test build-asan
	$(MAKE) test-unit-asan-only test-node-asan-only

tsan test-tsan: deps-test build-tsan
	$(MAKE) test-unit-tsan-only
	$(call node_tests,$(TSAN_DIR),$(TSAN_ENV))

# The *-only targets run tests against an existing build.
.PHONY: test-unit-only test-node-only test-unit-asan-only test-node-asan-only test-unit-tsan-only
test-unit-only:
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure

test-node-only:
	$(call node_tests,$(BUILD_DIR))

test-unit-asan-only:
	$(ASAN_ENV) $(CTEST) --test-dir $(ASAN_DIR) --output-on-failure

test-node-asan-only:
	$(call node_tests,$(ASAN_DIR),$(ASAN_ENV))

test-unit-tsan-only:
	$(TSAN_ENV) $(CTEST) --test-dir $(TSAN_DIR) --output-on-failure

# -------------------------------------------------------------------- fuzz ---
.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRC_$$*) $(wildcard app/*.h app/*.c)
	@mkdir -p $(FUZZ_DIR)
	$(CLANG) $(FUZZ_CFLAGS) $< $(FUZZ_SRC_$*) $(FUZZ_LIBS) -o $@

# $(call fuzz_run,NAME,CORPUS DIR,SECONDS): seeds copied into the corpus, then a run.
define fuzz_run
	mkdir -p $(2)
	cp tests/fuzz/corpus/$(1)/* $(2)/
	$(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$(1) $(call FUZZ_ARGS,$(1)) -max_total_time=$(3) $(2)

endef

# A long run, FUZZ_SECONDS per target; the corpus each grows stays in
# $(FUZZ_DIR)/corpus/<name> across runs.
fuzz: $(FUZZ_LIST:%=$(FUZZ_DIR)/fuzz_%)
	$(foreach t,$(FUZZ_LIST),$(call fuzz_run,$(t),$(FUZZ_DIR)/corpus/$(t),$(FUZZ_SECONDS)))

# A short run of each target on a fresh copy of its seeds, part of make test.
fuzz-smoke: $(FUZZ_LIST:%=$(FUZZ_DIR)/fuzz_%)
	rm -rf $(FUZZ_DIR)/corpus-smoke
	$(foreach t,$(FUZZ_LIST),$(call fuzz_run,$(t),$(FUZZ_DIR)/corpus-smoke/$(t),$(FUZZ_SMOKE_SECONDS)))

# ------------------------------------------------------------------- bench ---
# The benchmark suite of bench/README.md: the commit before the event loops
# (built once into bench/.cache/), this build and the Socket.IO reference
# stack, in one run; about 5 minutes, 2 with BENCH_ARGS=--quick.
bench: deps-test build
	cd bench && npm ci --no-audit --no-fund
	cd bench/reference && npm ci --no-audit --no-fund
	$(NODE) bench/run.mjs $(BENCH_ARGS)

# ------------------------------------------------------------------- style ---
format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

format-check:
	$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
