#!/usr/bin/env bash
# Kiln eager vs Kiln compiled (ONNX graph) vs ONNX Runtime 1.30 (onnxruntime-node, CPU) inference
# latency on the same exported .onnx files: first checks that Kiln and ORT agree on each model's
# outputs, then times every (model, batch, threads) cell in interleaved rounds and prints a table
# of the medians of each engine's p50. Holds the build lock throughout; runs one benchmark at a time.
# Usage: bench/compare_ort.sh [build-dir] [rounds] [model ...]     (defaults: build 3 mlp cnn gpt_char)
# Needs: cd bench/ort && npm install --ignore-scripts
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(mlp cnn gpt_char)
here=$(cd "$(dirname "$0")" && pwd)
kiln=$(cd "$build" && pwd)/kiln
ort_dir=$here/ort
[[ -x $kiln ]] || { echo "compare_ort: $kiln not built" >&2; exit 1; }
[[ -d $ort_dir/node_modules/onnxruntime-node ]] || {
  echo "compare_ort: onnxruntime-node missing: cd bench/ort && npm install --ignore-scripts" >&2; exit 1; }

# No build (and, by convention, no other benchmark) runs on this 2-core machine while we measure.
# KILN_BENCH_LOCKED=1 when the caller already holds /tmp/kiln.build.lock (flock would deadlock).
if [[ ${KILN_BENCH_LOCKED:-0} != 1 ]]; then
  exec 9>/tmp/kiln.build.lock
  flock 9
fi

work=$(mktemp -d /tmp/kiln_compare_ort.XXXXXX)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p50_of() { sed -E 's/.*"latency_ms_p50": ?([0-9.e+-]+).*/\1/'; }

echo "{\"date\":\"$(date -u +%F)\",\"commit\":\"$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)\",\"cpu\":\"$(lscpu | sed -nE 's/^Model name: +//p' | head -1)\",\"cores\":$(nproc),\"ort\":\"$(cd "$ort_dir" && node -p "require('onnxruntime-node').env.versions.node")\",\"rounds\":$rounds}"

# Export, then check agreement at batch 2 (tokens uniform in [0, 65) for gpt_char's vocabulary).
for m in "${models[@]}"; do
  "$kiln" export --model "$m" -o "$work/$m.onnx" >/dev/null
  hi=1; [[ $m == gpt_char ]] && hi=65
  node "$ort_dir/ort_run.js" "$work/$m.onnx" --make-inputs "$work/$m.in" --batch 2 --int-high $hi >/dev/null
  "$kiln" run "$work/$m.onnx" --input "input=$work/$m.in/input.npy" --output-dir "$work/$m.kiln" >/dev/null
  node "$ort_dir/ort_run.js" "$work/$m.onnx" --input "input=$work/$m.in/input.npy" --output-dir "$work/$m.ort" \
    --compare "$work/$m.kiln" --tol 1e-4 | sed "s/^{/{\"check\":\"$m batch 2 kiln run vs onnxruntime\",/"
done

rows=()
for m in "${models[@]}"; do
  batches=(1 64); [[ $m == gpt_char ]] && batches=(1 8 64)
  for b in "${batches[@]}"; do
    for t in 1 2; do
      # About 0.3-1.5 s of timed work per run.
      steps=300; warmup=30
      [[ $b -gt 8 && $m == cnn ]] && { steps=100; warmup=10; }
      [[ $m == gpt_char ]] && { steps=$(( b > 1 ? 30 : 100 )); warmup=$(( b > 1 ? 5 : 10 )); }
      [[ $m == gpt_char && $b -gt 8 ]] && { steps=8; warmup=2; }
      common=(--batch "$b" --threads "$t" --steps "$steps" --warmup "$warmup")
      e=(); c=(); o=()
      for ((r = 0; r < rounds; r++)); do
        e+=("$("$kiln" bench infer --model "$m" --engine eager "${common[@]}" | p50_of)")
        c+=("$("$kiln" bench infer "$work/$m.onnx" "${common[@]}" | p50_of)")
        o+=("$(node "$ort_dir/ort_bench.js" "$work/$m.onnx" "${common[@]}" | p50_of)")
      done
      em=$(printf '%s\n' "${e[@]}" | median)
      cm=$(printf '%s\n' "${c[@]}" | median)
      om=$(printf '%s\n' "${o[@]}" | median)
      row=$(awk -v m="$m" -v b="$b" -v t="$t" -v e="$em" -v c="$cm" -v o="$om" -v r="$rounds" 'BEGIN {
        printf "{\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"rounds\":%d,\"eager_p50_ms\":%.4f,\"compiled_p50_ms\":%.4f,\"ort_p50_ms\":%.4f,\"compiled_speedup\":%.3f,\"ort_over_compiled\":%.3f}", m, b, t, r, e, c, o, e / c, o / c }')
      echo "$row"
      rows+=("$row")
    done
  done
done

# Markdown table: speed-up = eager / compiled latency; ORT / compiled > 1 means Kiln is faster.
echo
echo "| model | batch | threads | Kiln eager p50 | Kiln compiled p50 | ORT p50 | compiled speed-up vs eager | ORT / Kiln compiled latency |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  # shellcheck disable=SC2016  # a JS template literal, not a shell expansion
  node -e 'const r = JSON.parse(process.argv[1]); const f = (x) => x.toPrecision(3) + " ms";
    console.log(`| ${r.model} | ${r.batch} | ${r.threads} | ${f(r.eager_p50_ms)} | ${f(r.compiled_p50_ms)} | ` +
                `${f(r.ort_p50_ms)} | ${r.compiled_speedup.toFixed(2)}x | **${r.ort_over_compiled.toFixed(2)}** |`)' "$row"
done
