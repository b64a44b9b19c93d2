"""The character-level GPT of examples/gpt.rs in PyTorch (eager, CPU, f32), the peer of
issue #17: the same model (pre-norm GPT-2 blocks, exact GELU, tied head, biases), the same
initial weights and batches (read from the directory `gpt --dump-init DIR` writes), the
same recipe (AdamW with no decay on 1-D buffers, wte and wpe; warmup + cosine; clipping
at global norm 1.0 computed as backprop::clip does), so the loss curves can be compared
step by step.

    target/release/examples/gpt --steps 200 --dump-init out/gpt-peer --out out/gpt-peer
    python benches/peers/torch_gpt.py out/gpt-peer [--steps N] [--threads 2] [--csv FILE]

Prints one line per step (step, loss, grad norm, lr) to the CSV and the per-step time.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ix = json.load(open(os.path.join(args.dir, "index.json")))
    flat = np.fromfile(os.path.join(args.dir, "init.f32"), dtype="<f4")
    params = {}
    for p in ix["params"]:
        n = int(np.prod(p["shape"])) if p["shape"] else 1
        a = flat[p["offset"]: p["offset"] + n].reshape(p["shape"])
        params[p["name"]] = torch.tensor(a.copy(), requires_grad=True)
    B, T, V = ix["batch"], ix["block_size"], ix["vocab"]
    L, H, C = ix["n_layer"], ix["n_head"], ix["n_embd"]
    steps = ix["steps"] - ix["first_step"]
    if args.steps is not None:
        steps = min(steps, args.steps)
    batches = np.fromfile(os.path.join(args.dir, "batches.u32"), dtype="<u4").astype(np.int64)
    batches = batches.reshape(-1, 2, B, T)
    eps = ix["ln_eps"]
    P = params

    def loss_fn(x, y):
        h = P["wte"][x] + P["wpe"][:T]
        for i in range(L):
            b = lambda n: P[f"blocks.{i}.{n}"]
            a = F.layer_norm(h, (C,), b("ln1_g"), b("ln1_b"), eps)
            qkv = a @ b("w_qkv") + b("b_qkv")
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, H, C // H).transpose(1, 2)
            k = k.view(B, T, H, C // H).transpose(1, 2)
            v = v.view(B, T, H, C // H).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o = o.transpose(1, 2).contiguous().view(B, T, C)
            h = h + (o @ b("w_proj") + b("b_proj"))
            m = F.layer_norm(h, (C,), b("ln2_g"), b("ln2_b"), eps)
            m = F.gelu(m @ b("w_fc") + b("b_fc"))
            h = h + (m @ b("w_out") + b("b_out"))
        h = F.layer_norm(h, (C,), P["lnf_g"], P["lnf_b"], eps)
        head = P["wte"].t() if ix["tied"] else P["lm_head"]
        logits = h @ head
        return F.cross_entropy(logits.view(-1, V), y.view(-1))

    decay = [p for n, p in P.items() if p.dim() >= 2 and n not in ("wte", "wpe") and p.numel() > 0]
    no_decay = [p for n, p in P.items() if not (p.dim() >= 2 and n not in ("wte", "wpe")) and p.numel() > 0]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": ix["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=ix["lr"],
        betas=(ix["beta1"], ix["beta2"]),
        eps=ix["eps"],
        foreach=True,
    )

    def lr_at(step):
        peak, floor, warm, total = ix["lr"], ix["min_lr"], ix["warmup"], ix["steps"]
        if step < warm:
            return peak * step / warm
        if step > total:
            return floor
        if total <= warm:
            return peak
        p = (step - warm) / (total - warm)
        w = 0.5 * (1.0 + math.cos(math.pi * p))
        return peak * w + floor * (1.0 - w)

    allp = [p for p in P.values() if p.numel() > 0]
    out = open(args.csv, "w") if args.csv else None
    if out:
        out.write("step,loss,grad_norm,lr\n")
    times = []
    for s in range(steps):
        step = ix["first_step"] + s
        x = torch.from_numpy(batches[s, 0])
        y = torch.from_numpy(batches[s, 1])
        t0 = time.perf_counter()
        for p in allp:
            p.grad = None
        loss = loss_fn(x, y)
        loss.backward()
        with torch.no_grad():
            norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in allp))
            if norm > ix["clip"]:
                scale = ix["clip"] / norm
                for p in allp:
                    p.grad.mul_(scale)
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        times.append(time.perf_counter() - t0)
        if out:
            out.write(f"{step},{loss.item()},{norm},{lr}\n")
    ms = np.array(times[3:] if len(times) > 6 else times) * 1e3
    tok = B * T
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads: {steps} steps, "
        f"median {np.median(ms):.1f} ms/step, mean {ms.mean():.1f} ms/step, "
        f"{tok / (ms.mean() / 1e3):.0f} tokens/s; last loss {loss.item():.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
