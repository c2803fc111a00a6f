# The two commands of the README, and the usual others. Everything builds with CMake.
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all build deps demo check test test-asan bench install format format-check clean

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

# Installs what is missing, builds, and runs every test: sanitizers first, then the release
# build, whose CTest summary is the last line.
check: deps format-check
	$(MAKE) test-asan
	$(MAKE) test

bench: deps build
	./bench/run $(BUILD)/cicada

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
