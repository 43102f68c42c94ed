#!/usr/bin/env bash
# Gradient compression on a slow network: DDP with 2 ranks on two "hosts" (network namespaces
# joined by veth, scripts/multihost.sh) whose links are capped with tc tbf, training the cnn on
# Fashion-MNIST for a fixed number of steps with no compression, int8 and top-k 1%.
# Usage: bench/multihost_compression.sh [build-dir] [steps] [rates...]   (default 100 / 100mbit 1gbit)
# Prints one JSON object per run: wall seconds of `kiln train` (start-up and one test batch
# included), its seconds per step, and rank 0's bytes per step.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
steps=${2:-100}
shift $(( $# > 2 ? 2 : $# )) || true
rates=("$@")
((${#rates[@]})) || rates=(100mbit 1gbit)
here=$(cd "$(dirname "$0")/.." && pwd)
for rate in "${rates[@]}"; do
  for comp in none int8 topk; do
    line=$("$here/scripts/multihost.sh" --quiet --rate "$rate" -- \
      "$build/kiln launch -n 2 --hostfile \$KILN_HOSTFILE -- train $here/examples/fashion_cnn.toml --out /tmp/kiln_mh_$$ \
       --set dist.strategy=ddp --set threads=1 --set train.max_steps=$steps --set train.eval_batches=1 \
       --set dist.compression=$comp" 2>/dev/null | tail -1)
    rm -rf "/tmp/kiln_mh_$$"
    python3 - "$rate" "$comp" "$line" <<'PY'
import json, sys
rate, comp, line = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(json.dumps({"link": rate, "compression": comp, "steps": line["steps"], "wall_s": round(line["seconds"], 2),
                  "ms_per_step": round(1e3 * line["seconds"] / line["steps"], 1),
                  "bytes_per_step_rank0": line["bytes_sent_per_step_rank0"]}))
PY
  done
done
