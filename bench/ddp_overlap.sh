#!/usr/bin/env bash
# How much of the gradient allreduce data-parallel training hides behind backward.
# Two ranks train the cnn on Fashion-MNIST (1 thread each, batch 128 = 64 per rank), once with
# buckets reduced while backward runs (dist.overlap=true) and once only after backward ends
# (dist.overlap=false), alternated over several rounds. Each rank writes a timeline (when its
# last backward ended, when the step's reduction completed; CLOCK_MONOTONIC, shared by the
# ranks of one machine). Per step, the communication left exposed is
#   completion - (the later of the two ranks' backward ends):
# what the step waits for beyond load imbalance between ranks (one rank finishing backward
# later is not communication; it would cost the same with an infinitely fast network).
# Without overlap that is the whole allreduce, so
#   hidden = 1 - exposed(overlap) / exposed(no overlap)          (medians over steps)
# Usage: bench/ddp_overlap.sh [build-dir] [rounds] [steps] [extra kiln train args...]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
steps=${3:-200}
shift $(( $# > 3 ? 3 : $# )) || true
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for ((r = 0; r < rounds; r++)); do
  for ov in true false; do
    dir="$out/$ov.$r"
    "$build/kiln" launch -n 2 -- train "$here/examples/fashion_cnn.toml" --out "$dir" \
      --set dist.strategy=ddp --set threads=1 --set train.max_steps="$steps" --set train.eval_batches=1 \
      --set dist.overlap=$ov --set dist.timeline=true "$@" 2>/dev/null | tail -1 > "$out/summary.$ov.$r.json"
  done
done
python3 - "$out" "$rounds" <<'PY'
import csv, json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def steps(run):
    ranks = [list(csv.DictReader(open(f"{run}/ddp_timeline.rank{r}.csv"))) for r in (0, 1)]
    rows = []
    for a, b in list(zip(*ranks))[10:]:  # the first steps warm caches and the tuner
        end = max(float(a["backward_end_s"]), float(b["backward_end_s"]))
        done = max(float(a["reduced_s"]), float(b["reduced_s"]))
        skew = abs(float(a["backward_end_s"]) - float(b["backward_end_s"]))
        rows.append((done - end, skew))
    return rows
res = {}
for ov in ("true", "false"):
    rows = [x for r in range(rounds) for x in steps(f"{out}/{ov}.{r}")]
    walls = [json.load(open(f"{out}/summary.{ov}.{r}.json"))["seconds"] for r in range(rounds)]
    res[ov] = (statistics.median(x for x, _ in rows), statistics.median(s for _, s in rows), statistics.median(walls))
print(json.dumps({
    "model": "cnn", "ranks": 2, "rounds": rounds,
    "exposed_ms_no_overlap": round(1e3 * res["false"][0], 3),
    "exposed_ms_overlap": round(1e3 * res["true"][0], 3),
    "hidden_fraction": round(1 - res["true"][0] / res["false"][0], 3),
    "rank_skew_ms": round(1e3 * res["true"][1], 3),
    "wall_s_overlap": res["true"][2], "wall_s_no_overlap": res["false"][2]}))
PY
