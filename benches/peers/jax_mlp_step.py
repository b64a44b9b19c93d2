"""One 784-256-10 MLP training step (forward + backward, batch 128, f32) in jitted JAX,
the peer of `benches/mlp_step.rs`. Prints the median of timed runs in ms.

Run through `benches/peers/run_jax.sh`, which makes a virtual environment with JAX (CPU)
from PyPI. Threads: XLA uses every core by default; the shell script runs it once with
both cores and once pinned to one (taskset) so it can be compared with ours either way.
"""
import statistics
import time

import jax
import jax.numpy as jnp

B, D, H, C = 128, 784, 256, 10


def filled(r, c, seed, scale):
    i = jnp.arange(r)[:, None]
    j = jnp.arange(c)[None, :]
    return ((((i * 31 + j * 17 + seed) % 13) / 13.0 - 0.5) * scale).astype(jnp.float32)


def loss(params, x, y):
    w1, b1, w2, b2 = params
    h = jax.nn.relu(x @ w1 + b1)
    logits = h @ w2 + b2
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def main():
    x = filled(B, D, 1, 1.0)
    y = (jnp.arange(B) * 7) % C
    params = (filled(D, H, 2, 0.1), jnp.full((H,), 0.01, jnp.float32), filled(H, C, 3, 0.1), jnp.zeros((C,), jnp.float32))
    step = jax.jit(jax.value_and_grad(loss))
    fwd = jax.jit(loss)
    for f in (step, fwd):
        jax.block_until_ready(f(params, x, y))
    for name, f in (("value_and_grad", step), ("forward", fwd)):
        times = []
        for _ in range(300):
            t = time.perf_counter()
            jax.block_until_ready(f(params, x, y))
            times.append(time.perf_counter() - t)
        print(f"jax {name}: median {statistics.median(times) * 1e3:.3f} ms, min {min(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
