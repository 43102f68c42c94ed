#!/usr/bin/env bash
# make demo: train the reference CNN on Fashion-MNIST, report the test accuracy, keep the
# checkpoint, evaluate the saved checkpoint again from disk, then export it to ONNX, compile the
# exported graph (pass log, fused kernels, memory plan) and evaluate the ONNX model. Last, a
# distributed run: the mlp on 2 MPI ranks (data parallel) and in 1 process with the same 2 data
# shards reach the same test loss to the last digit (their weights are bitwise equal).
set -euo pipefail
build=${1:-build}
out=runs/demo
rm -rf "$out"
echo "== kiln info" >&2
"$build/kiln" info
echo "== training the cnn on Fashion-MNIST (5 epochs, Adam 1e-3, batch 128)" >&2
summary=$("$build/kiln" train examples/fashion_cnn.toml --out "$out")
echo "$summary"
echo "== evaluating the saved checkpoint $out/checkpoint.safetensors" >&2
"$build/kiln" eval "$out/checkpoint.safetensors" --data fashion-mnist:test
echo "== exporting it to ONNX ($out/cnn.onnx), compiling and evaluating the exported graph" >&2
"$build/kiln" export "$out/checkpoint.safetensors" --format onnx -o "$out/cnn.onnx"
"$build/kiln" compile "$out/cnn.onnx" --report --batch 64
"$build/kiln" eval "$out/cnn.onnx" --data fashion-mnist:test
echo "== data parallel: mlp, 200 steps, on 2 MPI ranks and in 1 process with the same 2 data shards" >&2
common=(examples/fashion_mlp.toml --set train.max_steps=200 --set threads=1 --set dist.shards=2)
"$build/kiln" launch -n 2 -- train "${common[@]}" --set dist.strategy=ddp --out "$out/ddp2" 2>/dev/null | tail -1
"$build/kiln" train "${common[@]}" --out "$out/ddp1" 2>/dev/null | tail -1
ddp2=$("$build/kiln" eval "$out/ddp2/checkpoint.safetensors" --data fashion-mnist:test)
ddp1=$("$build/kiln" eval "$out/ddp1/checkpoint.safetensors" --data fashion-mnist:test)
loss_of() { sed -E 's/.*"loss":([0-9.e+-]+).*/\1/' <<<"$1"; }
echo "2 ranks: test loss $(loss_of "$ddp2"); 1 process: test loss $(loss_of "$ddp1")"
[[ $(loss_of "$ddp2") == "$(loss_of "$ddp1")" ]] || { echo "demo: the distributed run differs" >&2; exit 1; }
acc=$(echo "$summary" | sed -E 's/.*"test_accuracy":([0-9.]+).*/\1/')
echo "test accuracy: $(awk -v a="$acc" 'BEGIN { printf "%.2f%%", 100 * a }')  (checkpoint: $out/checkpoint.safetensors, ONNX: $out/cnn.onnx)"
