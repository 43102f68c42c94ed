#!/usr/bin/python3
"""PyTorch's half of bench/attention_bench.cpp: causal self-attention at gpt_char's shape (batch
32, 4 heads of 32, contiguous q/k/v), forward and forward+backward, as
nn.MultiheadAttention computes it in torch 1.13 (no fused scaled_dot_product_attention there):
q k^T * scale, masked_fill, softmax, @ v. Prints the same JSON lines (impl "pytorch").

Best configuration (see bench/README.md):
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp MALLOC_MMAP_THRESHOLD_=33554432 \
  MALLOC_TRIM_THRESHOLD_=1073741824 /usr/bin/python3 bench/attention_torch.py [T ...]
"""
import json
import math
import sys
import time

import torch


def attention(q, k, v, mask):
    s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    s = s.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def median_ms(iters, fn):
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def bench(B, H, T, D, iters):
    torch.manual_seed(1)
    # q, k, v (B, H, T, D) contiguous leaves: torch's best case. (As permuted views of (B, T, H, D)
    # memory, the layout Kiln's bench uses, torch 1.13's matmul is 5-20x slower here.)
    q, k, v = (torch.randn(B, H, T, D).requires_grad_(True) for _ in range(3))
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    gout = torch.randn(B, H, T, D)

    def fwd():
        with torch.no_grad():
            attention(q, k, v, mask)

    def fwd_bwd():
        attention(q, k, v, mask).backward(gout)
        q.grad = k.grad = v.grad = None

    fwd_flops = 2.0 * B * H * (T * (T + 1) / 2.0) * (2.0 * D)
    for name, fn, flops in (("fwd", fwd, fwd_flops), ("fwd_bwd", fwd_bwd, 3.5 * fwd_flops)):
        ms = median_ms(iters, fn)
        print(json.dumps({"bench": "attention", "impl": "pytorch", "figure": name, "B": B, "H": H, "T": T, "D": D,
                          "ms": round(ms, 3), "gflops": round(flops / ms * 1e-6, 1),
                          "saved_for_backward_mb": round(B * H * T * T * 4 / 2**20, 2),
                          "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


def main():
    torch.set_num_threads(2)
    Ts = [int(a) for a in sys.argv[1:]] or [128, 512, 1024]
    for T in Ts:
        bench(32, 4, T, 32, 30 if T <= 128 else 8 if T <= 512 else 4)


if __name__ == "__main__":
    main()
