"""The MLP step of `benches/mlp_step.rs` in PyTorch (CPU, eager, 2 threads): one
784-256-10 ReLU MLP, batch 128, f32, forward + backward of the mean softmax
cross-entropy. Prints the median of 300 timed steps in ms, as `jax_mlp_step.py` does.

Run through `benches/peers/run_torch.sh`, which makes the virtual environment.
"""
import statistics
import time

import torch

B, D, H, C = 128, 784, 256, 10


def filled(r, c, seed, scale):
    i = torch.arange(r)[:, None]
    j = torch.arange(c)[None, :]
    return ((((i * 31 + j * 17 + seed) % 13) / 13.0 - 0.5) * scale).to(torch.float32)


def main():
    torch.set_num_threads(2)
    x = filled(B, D, 1, 1.0)
    y = (torch.arange(B) * 7) % C
    w1 = filled(D, H, 2, 0.1).requires_grad_()
    b1 = torch.full((H,), 0.01).requires_grad_()
    w2 = filled(H, C, 3, 0.1).requires_grad_()
    b2 = torch.zeros(C).requires_grad_()
    params = (w1, b1, w2, b2)

    def step():
        h = torch.relu(x @ w1 + b1)
        loss = torch.nn.functional.cross_entropy(h @ w2 + b2, y)
        return loss, torch.autograd.grad(loss, params)

    for _ in range(50):
        step()
    times = []
    for _ in range(300):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(f"torch value_and_grad: median {statistics.median(times) * 1e3:.3f} ms, min {min(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
