#!/usr/bin/env bash
# Distributed training on real Fashion-MNIST: test accuracy, wall time and gradient bytes per
# step for each strategy, one run after another (never two at once: the machine has 2 cores).
# Each configuration trains examples/fashion_cnn.toml (5 epochs, Adam 1e-3, batch 128).
# Usage: bench/dist_convergence.sh [build-dir] [names...]   (default: all)
# Prints one JSON object per run.
set -euo pipefail
build=${1:-build}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cfg="$here/examples/fashion_cnn.toml"
kiln="$build/kiln"

declare -A runs=(
  [one_rank]="$kiln train $cfg --set threads=2"
  [ddp2]="$kiln launch -n 2 -- train $cfg --set threads=1 --set dist.strategy=ddp"
  [ddp2_topk1pct]="$kiln launch -n 2 -- train $cfg --set threads=1 --set dist.strategy=ddp --set dist.compression=topk --set dist.topk_ratio=0.01"
  [ddp2_topk1pct_warmup]="$kiln launch -n 2 -- train $cfg --set threads=1 --set dist.strategy=ddp --set dist.compression=topk --set dist.topk_ratio=0.01 --set dist.topk_warmup_steps=469"
  [ps_bsp]="$kiln launch -n 3 -- train $cfg --set threads=1 --set dist.strategy=ps --set dist.ps_mode=bsp"
  [ps_asp]="$kiln launch -n 3 -- train $cfg --set threads=1 --set dist.strategy=ps --set dist.ps_mode=asp"
  [ps_ssp2]="$kiln launch -n 3 -- train $cfg --set threads=1 --set dist.strategy=ps --set dist.ps_mode=ssp --set dist.staleness=2"
  [fedavg4_iid]="$kiln launch -n 4 -- train $cfg --set threads=1 --set dist.strategy=fedavg --set dist.rounds=20 --set dist.partition=iid"
  [fedavg4_noniid]="$kiln launch -n 4 -- train $cfg --set threads=1 --set dist.strategy=fedavg --set dist.rounds=20 --set dist.partition=noniid"
  [ddp2_int8]="$kiln launch -n 2 -- train $cfg --set threads=1 --set dist.strategy=ddp --set dist.compression=int8"
)
order=(one_rank ddp2 ddp2_topk1pct ddp2_topk1pct_warmup ddp2_int8 ps_bsp ps_asp ps_ssp2 fedavg4_iid fedavg4_noniid)
(($#)) && order=("$@")
for name in "${order[@]}"; do
  [[ -n ${runs[$name]:-} ]] || { echo "dist_convergence: unknown run '$name'" >&2; exit 2; }
  start=$(date +%s.%N)
  line=$(${runs[$name]} --out "$out/$name" 2>"$out/$name.log" | tail -1) || { cat "$out/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 - "$name" "$line" "$start" "$end" "$out/$name/metrics.jsonl" <<'PY'
import json, sys
name, line, start, end = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
row = {"run": name, "test_accuracy": line["test_accuracy"], "wall_s": round(end - start, 1),
       "bytes_per_step_rank0": line.get("bytes_sent_per_step_rank0", 0), "epochs": line["epochs"], "steps": line["steps"]}
lines = [json.loads(l) for l in open(sys.argv[5])]
rounds = [l for l in lines if "round" in l]
if rounds:
    row["accuracy_per_round"] = [r["test_accuracy"] for r in rounds]
for l in lines:
    if "staleness_histogram" in l:
        row["updates"] = l["updates"]
        row["staleness_histogram"] = l["staleness_histogram"]
        row["mean_staleness"] = l["mean_staleness"]
print(json.dumps(row))
PY
done
