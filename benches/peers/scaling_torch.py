"""PyTorch's side of `benches/peers/scaling.sh` (issue 16): the workloads of
`examples/scaling.rs`, on the threads given by `taskset` and `torch.set_num_threads(n)`,
one line per workload: `<name> <median ms> <min ms>`.

    python3 benches/peers/scaling_torch.py THREADS [WORKLOAD ...]

`SCALING_ROUNDS` (default 7) timed calls per workload after two untimed ones, as ours.
The MLP steps are eager forward + `torch.autograd.grad` with respect to the weights;
`f_big` is the big MLP's forward under `torch.no_grad()`; `adamw` is
`torch.optim.AdamW(fused=True)` on 100M f32 parameters.
"""
import os
import statistics
import sys
import time

import torch


def filled(r, c, seed, scale):
    i = torch.arange(r)[:, None]
    j = torch.arange(c)[None, :]
    return ((((i * 31 + j * 17 + seed) % 13) / 13.0 - 0.5) * scale).to(torch.float32)


def timed(rounds, f):
    f()
    f()
    t = []
    for _ in range(rounds):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t), min(t)


def mlp(dims, batch, scales):
    x = filled(batch, dims[0], 1, 1.0)
    y = (torch.arange(batch) * 7) % dims[-1]
    params = []
    for i, (d, h) in enumerate(zip(dims, dims[1:])):
        w = filled(d, h, 2 + i, scales[i]).requires_grad_()
        b = torch.full((h,), 0.01 if i + 2 < len(dims) else 0.0).requires_grad_()
        params += [w, b]
    return x, y, params


def mlp_loss(x, y, params):
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i + 1 < n:
            h = torch.relu(h)
    return torch.nn.functional.cross_entropy(h, y)


def main():
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    rounds = max(1, int(os.environ.get("SCALING_ROUNDS", "7")))
    names = sys.argv[2:] or ["sgemm", "mlp_small", "mlp_big", "xent", "adamw", "f_big"]
    for name in names:
        if name == "sgemm":
            n = 2048
            a, b = filled(n, n, 1, 1.0), filled(n, n, 2, 1.0)
            c = torch.empty(n, n)
            med, mn = timed(rounds, lambda: torch.matmul(a, b, out=c))
        elif name in ("mlp_small", "mlp_big", "f_big"):
            if name == "mlp_small":
                x, y, params = mlp([784, 256, 10], 128, [0.1, 0.1])
            else:
                x, y, params = mlp([1024, 2048, 2048, 1000], 512, [0.05, 0.03, 0.03])
            if name == "f_big":
                def run():
                    with torch.no_grad():
                        mlp_loss(x, y, params)
            else:
                def run():
                    loss = mlp_loss(x, y, params)
                    torch.autograd.grad(loss, params)
            reps = 20 if name == "mlp_small" else 1
            med, mn = timed(rounds, lambda: [run() for _ in range(reps)])
            med, mn = med / reps, mn / reps
        elif name == "xent":
            rows, cols = 1024, 50257
            logits = filled(rows, cols, 5, 4.0).requires_grad_()
            labels = (torch.arange(rows) * 7919) % cols

            def run():
                loss = torch.nn.functional.cross_entropy(logits, labels)
                torch.autograd.grad(loss, logits)
            med, mn = timed(rounds, run)
        elif name == "adamw":
            n = 100_000_000
            w = torch.nn.Parameter(((torch.arange(n) % 13).float() - 6.0) * 0.01)
            w.grad = ((torch.arange(n) % 7).float() - 3.0) * 1e-3
            opt = torch.optim.AdamW([w], lr=1e-3, weight_decay=0.01, fused=True)
            med, mn = timed(rounds, opt.step)
        else:
            raise SystemExit(f"unknown workload {name!r}")
        print(f"{name} {med:.3f} {mn:.3f}", flush=True)


if __name__ == "__main__":
    main()
