"""The transformer ops of `benches/transformer_ops.rs` in PyTorch eager (CPU, 2 threads),
f32, forward + backward: the forward call, then `torch.autograd.grad` with a given output
cotangent, at `small` (B=12, T=64, d=128, H=4: nanoGPT's CPU "baby" config) and `large`
(B=8, T=256, d=384, H=6).

- `layer_norm`: `F.layer_norm` over the last axis of `[B·T, d]`, with weight and bias
  (gradients for x, weight and bias);
- `attention`: `F.scaled_dot_product_attention(q, k, v, is_causal=True)` over
  `[B, H, T, d/H]` (gradients for q, k, v);
- `embedding`: `F.embedding` of `[B, T]` ids into a `[V, d]` table, V = 65 (`small`) or
  256 (`large`) (gradient for the table);
- `softmax_causal`: `scores.masked_fill(upper, -inf).softmax(-1)` over `[B, H, T, T]`,
  the mask a precomputed `[T, T]` bool (GPT-2/nanoGPT's form); `softmax_causal_add`:
  `(scores + mask).softmax(-1)` with a precomputed `[T, T]` additive mask of 0 and -inf.

Alone, it prints the median of 51 timed calls per op and shape and the bytes autograd
saves for the backward (`torch.autograd.graph.saved_tensors_hooks`, numel × element size
summed over every tensor packed; inputs saved by reference count too). With `--serve` it
answers `compare_transformer_ops.py` on stdin, one request per line, the same protocol as
the bench binary: `time <op> <small|large> <reps>` → median µs; `bytes <op> <shape>` →
saved bytes; `attn_bytes <T>` → attention's saved bytes at B=1, H=4, head size 32.

    /work/main/target/peers-torch/bin/python benches/peers/torch_transformer_ops.py
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

OPS = ("layer_norm", "attention", "embedding", "softmax_causal", "softmax_causal_add")
SHAPES = {"small": (12, 64, 128, 4, 65), "large": (8, 256, 384, 6, 256)}


def rand(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def make(op, shape):
    """Returns `run()`: one forward + backward, its results kept by the caller."""
    b, t, d, h, v = SHAPES[shape]
    hd = d // h
    if op == "layer_norm":
        x = rand(b * t, d, seed=1).requires_grad_()
        w = (1 + 0.1 * rand(d, seed=11)).requires_grad_()
        bias = (0.1 * rand(d, seed=12)).requires_grad_()
        dy = rand(b * t, d, seed=2)
        inputs = (x, w, bias)
        fwd = lambda: F.layer_norm(x, (d,), w, bias, 1e-5)
    elif op == "attention":
        q, k, vv = (rand(b, h, t, hd, seed=s).requires_grad_() for s in (6, 7, 8))
        dy = rand(b, h, t, hd, seed=9)
        inputs = (q, k, vv)
        fwd = lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=True)
    elif op == "embedding":
        table = rand(v, d, seed=3).requires_grad_()
        ids = (torch.arange(b)[:, None] * 31 + torch.arange(t)[None, :] * 7) % v
        dy = rand(b, t, d, seed=2)
        inputs = (table,)
        fwd = lambda: F.embedding(ids, table)
    elif op in ("softmax_causal", "softmax_causal_add"):
        s = rand(b, h, t, t, seed=4).requires_grad_()
        ds = rand(b, h, t, t, seed=5)
        dy = ds
        inputs = (s,)
        upper = torch.ones(t, t, dtype=torch.bool).triu(1)
        if op == "softmax_causal":
            fwd = lambda: s.masked_fill(upper, float("-inf")).softmax(-1)
        else:
            add = torch.zeros(t, t).masked_fill(upper, float("-inf"))
            fwd = lambda: (s + add).softmax(-1)
    else:
        raise SystemExit(f"op `{op}` is not one of {OPS}")

    def run():
        y = fwd()
        return y, torch.autograd.grad(y, inputs, dy)

    def saved_bytes():
        total = [0]

        def pack(x):
            total[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            y = fwd()
        del y
        return total[0]

    return run, saved_bytes


def attention_saved_bytes(t):
    q = torch.zeros(1, 4, t, 32, requires_grad=True)
    total = [0]

    def pack(x):
        total[0] += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        y = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    del y
    return total[0]


def median_us(run, reps):
    times = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times) * 1e6


def main():
    torch.set_num_threads(2)
    if "--serve" in sys.argv:
        cases = {}
        for line in sys.stdin:
            parts = line.split()
            if parts[0] == "attn_bytes":
                print(attention_saved_bytes(int(parts[1])), flush=True)
                continue
            key = (parts[1], parts[2])
            if key not in cases:
                cases[key] = make(*key)
            run, saved = cases[key]
            if parts[0] == "time":
                print(f"{median_us(run, int(parts[3])):.3f}", flush=True)
            else:
                print(saved(), flush=True)
        return
    for shape, (b, t, d, h, v) in SHAPES.items():
        print(f"{shape}: B={b} T={t} d={d} H={h} V={v}, f32, forward+backward, median of 51")
        for op in OPS:
            run, saved = make(op, shape)
            for _ in range(3):
                run()
            print(f"  {op:19} {median_us(run, 51):10.1f} µs   saved {saved()} bytes")
    for t in (256, 1024):
        print(f"attention saved tensors, B=1 H=4 T={t} d=32: {attention_saved_bytes(t)} bytes")


if __name__ == "__main__":
    main()
