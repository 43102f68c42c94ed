#!/usr/bin/env bash
# make bench: every benchmark, one JSON object per figure on stdout. See bench/README.md.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
"$here/compare_train.sh" "$build" 3 mlp cnn gpt_char
"$build/bench/peak_flops"
"$build/bench/gemm_bench" --threads 1,2
if command -v valgrind >/dev/null; then "$here/callgrind.sh" "$build" mlp cnn; fi
