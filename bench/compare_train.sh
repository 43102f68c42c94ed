#!/usr/bin/env bash
# Kiln vs PyTorch training throughput on the reference models, side by side in one run:
# same models, batch (128 images / 32x128 tokens), 2 threads, synthetic data, Adam. Runs are
# alternated (Kiln, PyTorch, Kiln, PyTorch, ...) so drift on this shared machine hits both, and
# the median of each side's rates gives the ratio. PyTorch runs in its best configuration here:
# OpenMP OpenBLAS sharing torch's thread pool and glibc malloc thresholds raised.
# Usage: bench/compare_train.sh [build-dir] [rounds] [models...]
# Prints one JSON object per model: kiln_rate, pytorch_rate, ratio.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(mlp cnn gpt_char)
here=$(cd "$(dirname "$0")" && pwd)

if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "compare_train: installing python3-torch and libopenblas0-openmp (benchmark only)" >&2
  apt-get install -y -qq python3-torch libopenblas0-openmp >/dev/null
fi
torch_env=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp MALLOC_MMAP_THRESHOLD_=33554432
           MALLOC_TRIM_THRESHOLD_=1073741824 OMP_NUM_THREADS=2)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rate_of() { sed -E 's/.*"rate": ?([0-9.e+]+).*/\1/'; }

for m in "${models[@]}"; do
  steps=30; [[ $m == cnn ]] && steps=15; [[ $m == gpt_char ]] && steps=8
  k_rates=(); t_rates=()
  for ((r = 0; r < rounds; r++)); do
    k_rates+=("$("$build/kiln" bench train --model "$m" --threads 2 --steps $steps | rate_of)")
    t_rates+=("$("${torch_env[@]}" /usr/bin/python3 "$here/pytorch_train.py" --model "$m" --threads 2 --steps $steps | rate_of)")
  done
  k=$(printf '%s\n' "${k_rates[@]}" | median)
  t=$(printf '%s\n' "${t_rates[@]}" | median)
  awk -v m="$m" -v k="$k" -v t="$t" -v r="$rounds" 'BEGIN {
    printf "{\"model\":\"%s\",\"rounds\":%d,\"kiln_rate\":%.1f,\"pytorch_rate\":%.1f,\"ratio\":%.3f}\n", m, r, k, t, k / t }'
done
