# The two commands of the README, and the usual others. Everything builds with CMake.
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20

.PHONY: all build deps demo check test test-asan fuzz bench install format format-check clean

all: build

deps:
	./scripts/install-deps

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCICADA_WERROR=ON
	cmake --build $(BUILD) -j $(JOBS)

# A real load test, headless for about 20 seconds, with Locust-style statistics.
demo: deps build
	./examples/quickstart/run-demo $(BUILD)/cicada

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same tests under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCICADA_SANITIZE=ON -DCICADA_WERROR=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# Every parser we write, fuzzed for FUZZ_SECONDS each (clang, libFuzzer, ASan + UBSan),
# starting from the seeds in tests/fuzz/corpus/<name>.
fuzz:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCICADA_FUZZ=ON -DBUILD_TESTING=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/tests/fuzz/fuzz_*; do \
	    name=$${f##*/fuzz_}; work=$$(mktemp -d); \
	    echo "fuzz $$name for $(FUZZ_SECONDS) s"; \
	    if ! $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	            -artifact_prefix=$(FUZZ_BUILD)/ $$work \
	            tests/fuzz/corpus/$$name > $$work/log 2>&1; then \
	        tail -n 40 $$work/log; rm -rf $$work; \
	        echo "the input that failed is in $(FUZZ_BUILD)/"; exit 1; \
	    fi; \
	    grep "stat::number_of_executed_units" $$work/log; rm -rf $$work; \
	done

# Installs what is missing, builds, and runs every test: the fuzzers, the sanitizer build,
# then the release build, whose CTest summary is the last line.
check: deps format-check
	$(MAKE) fuzz
	$(MAKE) test-asan
	$(MAKE) test

bench: build
	./scripts/install-deps bench
	./bench/run $(BUILD)/cicada

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
