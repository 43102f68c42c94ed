#!/usr/bin/env bash
# Kiln vs PyTorch eager inference latency, side by side in one run (alternating rounds, medians
# of each side's p50): `kiln bench infer` against bench/pytorch_train.py --infer, same model,
# batch and thread count, PyTorch in its best configuration (see compare_train.sh).
# Usage: bench/compare_infer.sh [build-dir] [rounds] [model:batch:threads ...]
# Default cases: cnn at batch 1 / 1 thread (the issue's latency target) and batch 64 / 2 threads.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(cnn:1:1 cnn:64:2 mlp:64:2 gpt_char:1:1)
here=$(cd "$(dirname "$0")" && pwd)
torch_env=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp MALLOC_MMAP_THRESHOLD_=33554432
           MALLOC_TRIM_THRESHOLD_=1073741824)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p50_of() { sed -E 's/.*"latency_ms_p50": ?([0-9.e+-]+).*/\1/'; }

for c in "${cases[@]}"; do
  IFS=: read -r m b t <<<"$c"
  steps=300; [[ $b -gt 8 ]] && steps=40; [[ $m == gpt_char ]] && steps=40
  k=(); p=()
  for ((r = 0; r < rounds; r++)); do
    k+=("$("$build/kiln" bench infer --model "$m" --batch "$b" --threads "$t" --steps $steps | p50_of)")
    p+=("$("${torch_env[@]}" OMP_NUM_THREADS="$t" /usr/bin/python3 "$here/pytorch_train.py" --infer --model "$m" \
          --batch "$b" --threads "$t" --steps $steps | p50_of)")
  done
  km=$(printf '%s\n' "${k[@]}" | median)
  pm=$(printf '%s\n' "${p[@]}" | median)
  awk -v m="$m" -v b="$b" -v t="$t" -v k="$km" -v p="$pm" -v r="$rounds" 'BEGIN {
    printf "{\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"rounds\":%d,\"kiln_p50_ms\":%.4f,\"pytorch_p50_ms\":%.4f,\"latency_ratio\":%.3f}\n", m, b, t, r, k, p, k / p }'
done
