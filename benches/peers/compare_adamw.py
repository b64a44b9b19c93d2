"""Our AdamW step against PyTorch's fused CPU AdamW, paired finely.

This VM's memory bandwidth drifts (at 100M parameters the same loop takes 30 ms in
one second and 50 ms a few seconds later), so medians taken in separate runs compare
the machine, not the code. Here both sides stay up as servers (`ADAMW_SERVE=1` on the
`optim` bench binary, `torch_adamw.py --serve`) and are asked in turn for short bursts
of steps, the order alternating; each round's ratio divides two bursts a fraction of a
second apart. Prints every round and the median ratio per size, for our whole
optimizer call (`AdamW::step`: shape checks, the non-finite scan of g, the kernel) and
for the same call handed a proof that the gradients are finite (`step_finite`, what a
loop that clips first runs), and for the bare fused kernel (the same work as PyTorch's
fused step, which checks nothing).

    python3 benches/peers/compare_adamw.py [rounds]      # 15 by default
"""
import os
import statistics
import subprocess
import sys

from bench_binary import ROOT, bench_binary
VENV = os.path.join(ROOT, "target", "peers-torch")
SIZES = ((1_000_000, 100), (100_000_000, 5))


def venv_python():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", "torch"], check=True)
    return py


def ask(proc, request):
    proc.stdin.write(request + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    ours = subprocess.Popen([bench_binary("optim")], cwd=ROOT, env={**os.environ, "ADAMW_SERVE": "1"},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    torch = subprocess.Popen([venv_python(), "-W", "ignore", os.path.join(ROOT, "benches", "peers", "torch_adamw.py"), "--serve"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for n, reps in SIZES:  # warm-up: allocate, fault in, spin up the thread pools
        for what in ("step", "finite", "kernel"):
            ask(ours, f"{n} {reps} {what}")
        ask(torch, f"{n} {reps}")
    for n, reps in SIZES:
        step_r, finite_r, kernel_r = [], [], []
        for r in range(rounds):
            if r % 2 == 0:
                t = ask(torch, f"{n} {reps}")
                s = ask(ours, f"{n} {reps} step")
                f = ask(ours, f"{n} {reps} finite")
                k = ask(ours, f"{n} {reps} kernel")
            else:
                k = ask(ours, f"{n} {reps} kernel")
                f = ask(ours, f"{n} {reps} finite")
                s = ask(ours, f"{n} {reps} step")
                t = ask(torch, f"{n} {reps}")
            step_r.append(s / t)
            finite_r.append(f / t)
            kernel_r.append(k / t)
            print(f"n={n} round {r + 1}: torch fused {t:.3f} ms, AdamW::step {s:.3f} ms ({s / t:.3f}), "
                  f"step_finite {f:.3f} ms ({f / t:.3f}), kernel {k:.3f} ms ({k / t:.3f})")
        for name, v in (("AdamW::step / torch fused", step_r), ("AdamW::step_finite / torch fused", finite_r),
                        ("kernel / torch fused", kernel_r)):
            print(f"n={n}: {name}: median {statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f}) over {rounds} rounds")
    ours.stdin.close()
    torch.stdin.close()
    ours.wait()
    torch.wait()


if __name__ == "__main__":
    main()
