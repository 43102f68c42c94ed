# Kiln's front door. Each target does its own set-up: installs missing Debian packages
# (scripts/setup.sh), configures with CMake + Ninja, builds, then runs.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DKILN_WERROR=ON

.PHONY: all setup configure build demo test bench sanitize clean

all: build

setup:
	@scripts/setup.sh

configure: setup
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	@ninja -C $(BUILD) -j $(JOBS)

# Train the CNN on Fashion-MNIST, report test accuracy, save the checkpoint.
demo: build
	@scripts/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	@bench/run_all.sh $(BUILD)

# The unit tests under AddressSanitizer and UndefinedBehaviorSanitizer (a separate build dir).
sanitize: setup
	@test -f build-asan/build.ninja || cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON
	@ninja -C build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest -j $(JOBS) --output-on-failure -L unit

clean:
	rm -rf $(BUILD)
