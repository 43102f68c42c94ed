#!/usr/bin/env bash
# make bench: every benchmark, one JSON object per figure on stdout. See bench/README.md.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
"$here/compare_train.sh" "$build" 3 mlp cnn gpt_char
