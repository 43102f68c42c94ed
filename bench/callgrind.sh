#!/usr/bin/env bash
# Noise-free regression figure: instructions executed (callgrind's Ir) by 3 training steps of the
# mlp and cnn models at batch 16 on 1 thread (bench/callgrind_step.cpp), one JSON line per model.
# Only callgrind_measured_steps() is counted (--toggle-collect), so start-up and warm-up are not.
# KILN_ISA=avx2 keeps the count independent of AVX-512 being present; tuning is off.
# Usage: bench/callgrind.sh [build dir] [model ...]      (default: build mlp cnn)
#        KILN_CALLGRIND_KEEP=dir keeps the callgrind.out.<model> files there for callgrind_annotate.
set -euo pipefail
build=${1:-build}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp cnn)
steps=3
exe="$build/bench/callgrind_step"
[ -x "$exe" ] || { echo "callgrind.sh: $exe not built (ninja -C $build callgrind_step)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

outdir=${KILN_CALLGRIND_KEEP:-$(mktemp -d)}
mkdir -p "$outdir"
[ -n "${KILN_CALLGRIND_KEEP:-}" ] || trap 'rm -rf "$outdir"' EXIT

for model in "${models[@]}"; do
  out="$outdir/callgrind.out.$model"
  start=$(date +%s.%N)
  # --smc-check=all-non-file: oneDNN (if reached) generates code at run time.
  KILN_ISA=avx2 KILN_AUTOTUNE=off OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect=callgrind_measured_steps \
    --smc-check=all-non-file "$exe" "$model" "$steps" >"$outdir/stdout.$model" 2>"$outdir/log.$model" || {
    echo "callgrind.sh: valgrind failed for $model:" >&2
    tail -20 "$outdir/log.$model" >&2
    exit 1
  }
  end=$(date +%s.%N)
  # "summary:" (older callgrind) or "totals:" holds the event counts; the first event is Ir.
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
  [ -n "$ir" ] || { echo "callgrind.sh: no totals in $out" >&2; exit 1; }
  printf '{"bench": "callgrind", "model": "%s", "batch": 16, "steps": %d, "threads": 1, "isa": "avx2", "instructions": %s, "valgrind_s": %.1f}\n' \
    "$model" "$steps" "$ir" "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')"
done
