#!/usr/bin/env bash
# Convolution layers, Kiln vs oneDNN vs PyTorch: runs bench/conv_bench (Kiln's algorithms and
# oneDNN's primitives, interleaved) and bench/pytorch_conv.py (PyTorch in its best configuration
# here), then prints per layer and thread count the forward+backward times and the ratios
# (> 1: Kiln is faster). Raw JSON lines are kept in the output directory.
# Usage: bench/conv_compare.sh [build_dir=build] [rounds=25] [layers=cnn|resnet|all|<layer>] [threads=0 (1 and 2)]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-25}
LAYERS=${3:-cnn}
THREADS=${4:-0}
OUT=${KILN_BENCH_OUT:-$(mktemp -d /tmp/kiln_conv_compare.XXXXXX)}
mkdir -p "$OUT"

"$BUILD/bench/conv_bench" "$ROUNDS" "$LAYERS" "$THREADS" >"$OUT/kiln.jsonl"
env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp MALLOC_MMAP_THRESHOLD_=33554432 \
  MALLOC_TRIM_THRESHOLD_=1073741824 /usr/bin/python3 bench/pytorch_conv.py "$ROUNDS" "$LAYERS" "$THREADS" \
  >"$OUT/torch.jsonl"

/usr/bin/python3 - "$OUT/kiln.jsonl" "$OUT/torch.jsonl" <<'EOF'
import json, sys
kiln, torch = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "impl" in r:
        kiln.setdefault((r["layer"], r["threads"]), {}).setdefault(r["impl"], {})[r["pass"]] = r["ms"]
for line in open(sys.argv[2]):
    r = json.loads(line)
    torch.setdefault((r["layer"], r["threads"]), {})[r["pass"]] = r["ms"]
print("fwd+bwd = forward + the backward passes the model needs (no input gradient for a first layer);")
print("oneDNN 'any' = its blocked layouts, reorders from/to NCHW excluded. Ratios > 1: Kiln faster.")
hdr = f"{'layer':16} {'thr':>3} {'kiln algos (fwd/bwd_d/bwd_w)':32} {'kiln ms':>8} {'dnnl nchw':>9} {'dnnl any':>9} {'torch':>8} {'vs nchw':>7} {'vs any':>7} {'vs torch':>8} {'fwd vs torch':>12}"
print(hdr)
for (layer, t), impls in kiln.items():
    auto = impls.get("kiln.auto", {})
    k = sum(auto.values())
    nchw = sum(impls.get("onednn.nchw", {}).values()) or float("nan")
    anyl = sum(impls.get("onednn.any", {}).values()) or float("nan")
    tr = torch.get((layer, t), {})
    tfb = tr.get("fwd_bwd", float("nan"))
    tf = tr.get("fwd", float("nan"))
    # Which concrete algorithm auto matched: the one whose time per pass is closest.
    picks = []
    for p in ("fwd", "bwd_data", "bwd_weights"):
        if p not in auto:
            picks.append("-")
            continue
        best = min((abs(v.get(p, 1e9) - auto[p]), name) for name, v in impls.items()
                   if name.startswith("kiln.") and name != "kiln.auto")
        picks.append(best[1][5:])
    print(f"{layer:16} {t:>3} {'/'.join(picks):32} {k:8.3f} {nchw:9.3f} {anyl:9.3f} {tfb:8.3f} "
          f"{nchw / k:7.2f} {anyl / k:7.2f} {tfb / k:8.2f} {tf / auto.get('fwd', float('nan')):12.2f}")
EOF
echo "raw figures: $OUT"
