"""Our fused transformer ops against PyTorch eager, forward + backward, paired finely.

Both sides stay up as servers (`TRANSFORMER_OPS_SERVE=1` on the `transformer_ops` bench
binary, `torch_transformer_ops.py --serve`), as in `compare_adamw.py`. For each op and
shape, each round asks one side, then the other, for a burst of calls (the order
alternating from round to round) and divides the two burst medians; the figure is the
median of those per-round ratios, ours / PyTorch (below 1: ours is faster). PyTorch runs
with 2 threads, ours on rayon's default pool (2 threads on this machine).

`softmax_causal` is compared with PyTorch's `masked_fill(-inf)` + `softmax` (GPT-2 and
nanoGPT's form) and, as `softmax_causal_add`, with `softmax(scores + additive mask)`.

Also prints the tape bytes of each op next to the bytes PyTorch's autograd saves, and
attention's at B=1, H=4, head size 32, T=256 and T=1024.

    python3 benches/peers/compare_transformer_ops.py [rounds] [op ...]    # 11 rounds

`$TRANSFORMER_OPS_BIN` replaces our bench binary (e.g. one built from an older commit).
The PyTorch interpreter is `$TORCH_PYTHON`, else `target/peers-torch/bin/python` (made
as `run_torch.sh` makes it when missing).
"""
import datetime
import os
import statistics
import subprocess
import sys

from bench_binary import ROOT, bench_binary

VENV = os.path.join(ROOT, "target", "peers-torch")
# (op on our side, op on PyTorch's side); calls per burst at (small, large).
PAIRS = (
    ("layer_norm", "layer_norm", (100, 30)),
    ("attention", "attention", (10, 3)),
    ("embedding", "embedding", (200, 50)),
    ("softmax_causal", "softmax_causal", (30, 5)),
    ("softmax_causal", "softmax_causal_add", (30, 5)),
)
SHAPES = ("small", "large")


def torch_python():
    py = os.environ.get("TORCH_PYTHON") or os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", "torch"], check=True)
    return py


def ask(proc, request):
    proc.stdin.write(request + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    only = set(sys.argv[2:])
    ours = subprocess.Popen([os.environ.get("TRANSFORMER_OPS_BIN") or bench_binary("transformer_ops")], cwd=ROOT,
                            env={**os.environ, "TRANSFORMER_OPS_SERVE": "1"},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    torch = subprocess.Popen([torch_python(), "-W", "ignore",
                              os.path.join(ROOT, "benches", "peers", "torch_transformer_ops.py"), "--serve"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    start = datetime.datetime.now(datetime.timezone.utc)
    print(f"start {start:%Y-%m-%d %H:%M} UTC, load {loadavg()}, {rounds} rounds")
    summary = []
    for ours_op, torch_op, reps in PAIRS:
        if only and ours_op not in only and torch_op not in only:
            continue
        for shape, n in zip(SHAPES, reps):
            a, b = f"time {ours_op} {shape} {n}", f"time {torch_op} {shape} {n}"
            ask(ours, a)  # warm-up: allocate, fault in, spin up the thread pools
            ask(torch, b)
            o_t, t_t, ratios = [], [], []
            for r in range(rounds):
                if r % 2 == 0:
                    o = ask(ours, a)
                    t = ask(torch, b)
                else:
                    t = ask(torch, b)
                    o = ask(ours, a)
                o_t.append(o)
                t_t.append(t)
                ratios.append(o / t)
            med = statistics.median(ratios)
            line = (f"{ours_op:15} vs torch {torch_op:19} {shape:5}: ours {statistics.median(o_t):10.1f} µs, "
                    f"torch {statistics.median(t_t):10.1f} µs, ours/torch median {med:.3f} "
                    f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {rounds} rounds, load {loadavg()}")
            print(line, flush=True)
            summary.append(line)
    print("tape bytes (ours) / autograd saved-tensor bytes (PyTorch, numel × 4 over every saved tensor):")
    for ours_op, torch_op, _ in PAIRS:
        if ours_op == torch_op and (not only or ours_op in only):
            for shape in SHAPES:
                print(f"  {ours_op:15} {shape:5}: {int(ask(ours, f'bytes {ours_op} {shape}')):>10} / "
                      f"{int(ask(torch, f'bytes {torch_op} {shape}')):>10}")
    for t in (256, 1024):
        print(f"  attention B=1 H=4 T={t} d=32: {int(ask(ours, f'attn_bytes {t}')):>10} / "
              f"{int(ask(torch, f'attn_bytes {t}')):>10}")
    end = datetime.datetime.now(datetime.timezone.utc)
    print(f"end {end:%H:%M} UTC, load {loadavg()}")
    ours.stdin.close()
    torch.stdin.close()
    ours.wait()
    torch.wait()


if __name__ == "__main__":
    main()
