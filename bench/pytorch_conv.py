# PyTorch twin of bench/conv_bench.cpp: the same conv layers at batch 128, forward (no grad) and
# forward+backward (the gradients the model needs: weights and bias, plus the input except for a
# first layer), 1 and 2 threads, interleaved rounds, median. Prints one JSON object per figure.
# Run in PyTorch's best configuration here (see bench/README.md):
#   LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp MALLOC_MMAP_THRESHOLD_=33554432 \
#   MALLOC_TRIM_THRESHOLD_=1073741824 /usr/bin/python3 bench/pytorch_conv.py [rounds] [layers] [threads]
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# name, N, C, H, W, O, K, stride, pad, bias, input_grad -- as in conv_bench.cpp
CNN = [("cnn.conv1", 128, 1, 28, 28, 32, 3, 1, 0, True, False),
       ("cnn.conv2", 128, 32, 13, 13, 64, 3, 1, 0, True, True)]
RESNET = [("resnet.conv1", 128, 1, 28, 28, 32, 3, 1, 1, False, False),
          ("resnet.layer1", 128, 32, 28, 28, 32, 3, 1, 1, False, True),
          ("resnet.layer2a", 128, 32, 28, 28, 64, 3, 2, 1, False, True),
          ("resnet.layer2b", 128, 64, 14, 14, 64, 3, 1, 1, False, True),
          ("resnet.layer3a", 128, 64, 14, 14, 128, 3, 2, 1, False, True),
          ("resnet.layer3b", 128, 128, 7, 7, 128, 3, 1, 1, False, True)]


def layers(which):
    named = [l for l in CNN + RESNET if l[0] == which]
    if named:
        return named
    return (CNN if which in ("cnn", "all") else []) + (RESNET if which in ("resnet", "all") else [])


def run_layer(layer, threads, rounds):
    name, n, c, h, w, o, k, stride, pad, bias, input_grad = layer
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, c, h, w, generator=g).requires_grad_(input_grad)
    wt = (torch.randn(o, c, k, k, generator=g) * 0.1).requires_grad_(True)
    b = (torch.randn(o, generator=g) * 0.1).requires_grad_(True) if bias else None
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1
    gy = torch.randn(n, o, oh, ow, generator=g)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, b, stride=stride, padding=pad)

    def fwd_bwd():
        for t in (x, wt, b):
            if t is not None:
                t.grad = None
        F.conv2d(x, wt, b, stride=stride, padding=pad).backward(gy)

    cases = {"fwd": fwd, "fwd_bwd": fwd_bwd}
    times = {k_: [] for k_ in cases}
    for fn in cases.values():  # warm up
        fn()
        fn()
    for _ in range(rounds):
        for key, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    for key, ts in times.items():
        print(json.dumps({"bench": "pytorch_conv", "layer": name, "threads": threads, "pass": key,
                          "ms": round(statistics.median(ts), 4), "torch": torch.__version__,
                          "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)}),
              flush=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    which = sys.argv[2] if len(sys.argv) > 2 else "cnn"
    threads = [int(sys.argv[3])] if len(sys.argv) > 3 and int(sys.argv[3]) > 0 else [1, 2]
    for layer in layers(which):
        for t in threads:
            run_layer(layer, t, rounds)


if __name__ == "__main__":
    main()
