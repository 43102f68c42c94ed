#!/usr/bin/env bash
# Fuzzes one libFuzzer target:  scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
# TARGET is fuzz/fuzz_<TARGET>.cpp (tensor_pb, npy, ...). Configures build-fuzz/ with clang, the
# kiln libraries compiled with -fsanitize=address,fuzzer-no-link so libFuzzer sees their coverage,
# builds fuzz_<TARGET> under the shared build lock, then fuzzes in one process for SECONDS
# (default 60), starting from the committed seeds in fuzz/corpus/<TARGET>/. Inputs it discovers
# go to build-fuzz/corpus/<TARGET>/ (the committed seeds stay as they are); a crash is saved in
# build-fuzz/crashes/<TARGET>/ and replayed with: build-fuzz/fuzz/fuzz_<TARGET> CRASH_FILE
set -euo pipefail

usage="usage: scripts/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]"
target=${1:?$usage}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${KILN_FUZZ_BUILD:-$root/build-fuzz}

if [[ ! -f $root/fuzz/fuzz_$target.cpp ]]; then
  echo "fuzz.sh: no target '$target'; known:" $(cd "$root/fuzz" && ls fuzz_*.cpp | sed 's/^fuzz_//; s/\.cpp$//') >&2
  exit 2
fi
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DKILN_BUILD_TESTS=OFF -DKILN_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,fuzzer-no-link -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" >/dev/null
fi
flock /tmp/kiln.build.lock ninja -C "$build" "fuzz_$target"

corpus=$build/corpus/$target
crashes=$build/crashes/$target
mkdir -p "$corpus" "$crashes"
flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
       -artifact_prefix="$crashes/")
[[ -f $root/fuzz/$target.dict ]] && flags+=(-dict="$root/fuzz/$target.dict")
# The first corpus directory receives new inputs; the seed directory is only read.
exec "$build/fuzz/fuzz_$target" "${flags[@]}" "$@" "$corpus" "$root/fuzz/corpus/$target"
