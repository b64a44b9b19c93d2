"""PyTorch's AdamW step on CPU (2 threads), the peer of `benches/optim.rs`.

Alone, it prints the median step time at 1M and 100M f32 parameters, fused and foreach,
with the bandwidth that implies at 28 bytes per parameter (read w, g, m, v; write w, m,
v). With `--serve` it answers timing requests from `compare_adamw.py` instead, one per
line on stdin: `<n> <reps>` -> the median in ms of `reps` fused steps on `n` parameters
(the parameter, its gradient and the optimizer state made once per `n` and kept).

Run through `benches/peers/run_torch.sh` or `compare_adamw.py`, which make the venv.
"""
import statistics
import sys
import time

import torch


def make(n, impl):
    w = torch.nn.Parameter(torch.randn(n) * 0.1)
    w.grad = torch.randn(n) * 1e-3
    kwargs = {"fused": True} if impl == "fused" else {"foreach": True}
    opt = torch.optim.AdamW([w], lr=1e-3, weight_decay=0.01, **kwargs)
    opt.step()  # state allocated and touched before timing
    return opt


def median_ms(opt, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    torch.set_num_threads(2)
    if "--serve" in sys.argv:
        ready = {}
        for line in sys.stdin:
            n, reps = (int(x) for x in line.split())
            if n not in ready:
                ready[n] = make(n, "fused")
            print(f"{median_ms(ready[n], reps):.6f}", flush=True)
        return
    for n, reps in ((1_000_000, 500), (100_000_000, 15)):
        for impl in ("fused", "foreach"):
            med = median_ms(make(n, impl), reps)
            print(f"torch adamw {impl} n={n}: median {med:.3f} ms ({28 * n / med / 1e6:.1f} GB/s)")


if __name__ == "__main__":
    main()
