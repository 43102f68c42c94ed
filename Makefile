# Kiln's front door. Each target does its own set-up: installs missing Debian packages
# (scripts/setup.sh), configures with CMake + Ninja, builds, then runs.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DKILN_WERROR=ON

.PHONY: all setup configure build demo test bench clean

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

clean:
	rm -rf $(BUILD)
