#!/usr/bin/env python3
"""PyTorch twin of `kiln bench train` (and, with --infer, of `kiln bench infer`): the same
reference models, batch, thread count and synthetic data, Adam, one JSON line with the median
step time (or the inference latency percentiles). Run it in PyTorch's best
configuration on this machine (see compare_train.sh, which sets the environment)."""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))


class Block(nn.Module):
    def __init__(self, d, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GptChar(nn.Module):
    def __init__(self, vocab, context=128, d=128, layers=4, heads=4, hidden=512):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.ModuleList([Block(d, heads, hidden) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        mask = torch.triu(torch.ones(context, context, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))
        for b in self.blocks:
            x = b(x, self.mask[:t, :t])
        return self.ln(x) @ self.tok.weight.t()  # tied head


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--infer", action="store_true", help="time eval-mode forward passes under no_grad")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    text = a.model == "gpt_char"
    batch = a.batch or (1 if a.infer else 32 if text else 128)
    vocab = 65
    model = {"mlp": mlp, "cnn": cnn, "gpt_char": lambda: GptChar(vocab)}[a.model]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if text:
        x = torch.randint(0, vocab, (batch, 128))
        y = torch.randint(0, vocab, (batch, 128))
    else:
        x = torch.randn(batch, 1, 28, 28)
        y = torch.randint(0, 10, (batch,))
    if a.infer:
        return infer(a, model, x, batch, text)
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        if s >= a.warmup:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    samples = batch * 128 if text else batch
    print(json.dumps({"model": a.model, "batch": batch, "threads": a.threads, "steps": a.steps, "step_ms": med,
                      "rate": samples / (med / 1000), "unit": "tokens/s" if text else "images/s",
                      "framework": "pytorch " + torch.__version__}))


def infer(a, model, x, batch, text):
    model.eval()
    times = []
    with torch.no_grad():
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            model(x)
            dt = (time.perf_counter() - t0) * 1000
            if s >= a.warmup:
                times.append(dt)
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * (len(times) - 1) + 0.5))]
    samples = batch * 128 if text else batch
    print(json.dumps({"model": a.model, "batch": batch, "threads": a.threads, "steps": a.steps,
                      "latency_ms_p50": pct(0.5), "latency_ms_p90": pct(0.9), "latency_ms_p99": pct(0.99),
                      "rate": samples / (pct(0.5) / 1000), "unit": "tokens/s" if text else "images/s",
                      "framework": "pytorch " + torch.__version__}))


if __name__ == "__main__":
    main()
