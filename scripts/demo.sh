#!/usr/bin/env bash
# make demo: train the reference CNN on Fashion-MNIST, report the test accuracy, keep the
# checkpoint, evaluate the saved checkpoint again from disk, then export it to ONNX, compile the
# exported graph (pass log, fused kernels, memory plan) and evaluate the ONNX model.
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
acc=$(echo "$summary" | sed -E 's/.*"test_accuracy":([0-9.]+).*/\1/')
echo "test accuracy: $(awk -v a="$acc" 'BEGIN { printf "%.2f%%", 100 * a }')  (checkpoint: $out/checkpoint.safetensors, ONNX: $out/cnn.onnx)"
