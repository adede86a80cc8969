# Thin wrapper over scripts/deps.sh, CMake, ctest and node's test runner.
#   make deps | build | run ARGS='--listen 8080' | test | test-unit | test-asan
#   make tsan (= test-tsan) | format | format-check | clean
# `make test` is what CI runs (.ci/run): the normal build, then ASan+UBSan,
# then the unit tests under ThreadSanitizer (the threaded modules' own tests).

MAKEFLAGS += --no-print-directory

BUILD_DIR := build
ASAN_DIR := build-asan
TSAN_DIR := build-tsan
JOBS ?= 2
CMAKE ?= cmake
CTEST ?= ctest
NODE ?= node
CLANG_FORMAT ?= clang-format
ARGS ?=

# Sanitizer builds keep assert() (no -DNDEBUG) and use -O1 for usable traces.
SAN_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O1 -g'
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/cmake/tsan.supp

# Node test groups run by make test (tests/<group>/*.test.mjs); an empty group is skipped.
NODE_TEST_GROUPS ?= integration cluster browser
NODE_TESTS = $(foreach g,$(NODE_TEST_GROUPS),$(wildcard tests/$(g)/*.test.mjs))
NODE_TEST_FLAGS := --test --test-concurrency=2 --test-timeout=300000
FORMAT_FILES = $(wildcard app/*.c app/*.h tests/unit/*.c tools/*.c)

.PHONY: all deps deps-test build build-asan build-tsan run test test-unit test-node \
	test-asan tsan test-tsan format format-check clean
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
	$(MAKE) test-unit-only test-node-only
	$(MAKE) build-asan
	$(MAKE) test-unit-asan-only test-node-asan-only
	$(MAKE) build-tsan
	$(MAKE) test-unit-tsan-only

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

# ------------------------------------------------------------------- style ---
format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

format-check:
	$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)
