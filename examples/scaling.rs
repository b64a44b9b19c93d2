//! Our side of `benches/peers/scaling.sh`: the workloads of issue 16, each timed on
//! whatever threads the process is given, printing one line per workload:
//! `<name> <median ms> <min ms>`.
//!
//! ```text
//! cargo build --release --example scaling
//! taskset -c 0-3 env RAYON_NUM_THREADS=4 MATMUL_NUM_THREADS=4 \
//!     target/release/examples/scaling sgemm mlp_small mlp_big xent adamw f_big
//! ```
//!
//! A prebuilt binary runs without cargo (the scaling table of docs/PERFORMANCE.md was
//! measured that way on a machine without a Rust toolchain). `SCALING_ROUNDS` (default
//! 7) timed calls per workload, after two untimed ones (pages, pool, caches). With
//! `BACKPROP_MATMUL_THREADING=gemm` (or `blocks`) every threaded product uses gemm's
//! own threading (or one block of C per thread) and the names get a `+gemmthreads` (or
//! `+blocks`) suffix. Workloads:
//!
//! - `sgemm`: 2048³ f32 `kernels::matmul` into a preallocated C;
//! - `mlp_small`: the `#[grad]` value and gradient of a 784-256-10 ReLU MLP with
//!   softmax cross-entropy, batch 128 (`benches/mlp_step.rs`'s `loss_grad`);
//! - `mlp_big`: the same for 1024-2048-2048-1000 at batch 512;
//! - `xent`: fused softmax + cross-entropy, value and gradient, 1024×50257;
//! - `adamw`: the fused AdamW kernel on 100M f32 parameters;
//! - `f_big`: the big MLP's plain `f` as written (ndarray's `dot`: inference), and
//!   `f_forward_big`: its `f_forward` (the generated forward, on our matmul, with tape).

// The three-layer MLP and its generated companions take eight arguments.
#![allow(clippy::too_many_arguments)]

use backprop::kernels::adamw::{self, AdamWConsts};
use backprop::kernels::matmul::{Accum, matmul};
use backprop::kernels::softmax_xent::{XentOptions, fused};
use backprop::ops;
use ndarray::{Array1, Array2};
use std::hint::black_box;
use std::time::Instant;

// Each step frees and allocates its activations and gradients again (the big MLP's are
// about 90 MB); glibc's malloc hands such blocks back to the kernel, so every step
// faults their pages in afresh. mimalloc keeps them for the next step, as PyTorch's CPU
// tuning guide advises with jemalloc or TCMalloc. Measured in docs/PERFORMANCE.md
// ("Sixteen cores and AVX-512", 2026-12-08).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A two-layer ReLU MLP's mean cross-entropy (`benches/mlp_step.rs`).
#[backprop::grad(w1, b1, w2, b2)]
fn mlp2(
    x: &Array2<f32>,
    y: &[usize],
    w1: &Array2<f32>,
    b1: &Array1<f32>,
    w2: &Array2<f32>,
    b2: &Array1<f32>,
) -> f32 {
    let h = ops::relu(&(x.dot(w1) + b1));
    let logits = h.dot(w2) + b2;
    ops::softmax_cross_entropy(&logits, y, XentOptions::default())
}

/// A three-layer ReLU MLP's mean cross-entropy.
#[backprop::grad(w1, b1, w2, b2, w3, b3)]
fn mlp3(
    x: &Array2<f32>,
    y: &[usize],
    w1: &Array2<f32>,
    b1: &Array1<f32>,
    w2: &Array2<f32>,
    b2: &Array1<f32>,
    w3: &Array2<f32>,
    b3: &Array1<f32>,
) -> f32 {
    let h1 = ops::relu(&(x.dot(w1) + b1));
    let h2 = ops::relu(&(h1.dot(w2) + b2));
    let logits = h2.dot(w3) + b3;
    ops::softmax_cross_entropy(&logits, y, XentOptions::default())
}

/// The fill `benches/peers/scaling_torch.py` uses too.
fn filled(r: usize, c: usize, seed: usize, scale: f32) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        (((i * 31 + j * 17 + seed) % 13) as f32 / 13.0 - 0.5) * scale
    })
}

/// Median and minimum in ms of `rounds` calls, after two untimed ones.
fn time(rounds: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    f();
    let mut t: Vec<f64> = (0..rounds)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

struct Big {
    x: Array2<f32>,
    y: Vec<usize>,
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
    w3: Array2<f32>,
    b3: Array1<f32>,
}

fn big() -> Big {
    let (b, d, h, c) = (512, 1024, 2048, 1000);
    Big {
        x: filled(b, d, 1, 1.0),
        y: (0..b).map(|i| (i * 7) % c).collect(),
        w1: filled(d, h, 2, 0.05),
        b1: Array1::from_elem(h, 0.01),
        w2: filled(h, h, 3, 0.03),
        b2: Array1::from_elem(h, 0.01),
        w3: filled(h, c, 4, 0.03),
        b3: Array1::zeros(c),
    }
}

fn main() {
    let rounds: usize = std::env::var("SCALING_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .max(1);
    let suffix = match std::env::var("BACKPROP_MATMUL_THREADING").as_deref() {
        Ok("gemm") => "+gemmthreads",
        Ok("blocks") => "+blocks",
        _ => "",
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = [
        "sgemm",
        "mlp_small",
        "mlp_big",
        "xent",
        "adamw",
        "f_big",
        "f_forward_big",
    ];
    let names: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in names {
        let (med, min) = match name {
            "sgemm" => {
                let n = 2048;
                let (a, b) = (filled(n, n, 1, 1.0), filled(n, n, 2, 1.0));
                let mut c = Array2::<f32>::zeros((n, n));
                time(rounds, || {
                    matmul(c.view_mut(), a.view(), b.view(), Accum::Replace);
                    black_box(&c);
                })
            }
            "mlp_small" => {
                let (b, d, h, c) = (128, 784, 256, 10);
                let x = filled(b, d, 1, 1.0);
                let y: Vec<usize> = (0..b).map(|i| (i * 7) % c).collect();
                let (w1, b1) = (filled(d, h, 2, 0.1), Array1::from_elem(h, 0.01));
                let (w2, b2) = (filled(h, c, 3, 0.1), Array1::zeros(c));
                // Many calls per round: one step is under a millisecond.
                let reps = 20;
                let (med, min) = time(rounds, || {
                    for _ in 0..reps {
                        black_box(mlp2_grad(black_box(&x), &y, &w1, &b1, &w2, &b2));
                    }
                });
                (med / reps as f64, min / reps as f64)
            }
            "mlp_big" => {
                let p = big();
                time(rounds, || {
                    black_box(mlp3_grad(
                        black_box(&p.x),
                        &p.y,
                        &p.w1,
                        &p.b1,
                        &p.w2,
                        &p.b2,
                        &p.w3,
                        &p.b3,
                    ));
                })
            }
            "f_big" => {
                let p = big();
                time(rounds, || {
                    black_box(mlp3(
                        black_box(&p.x),
                        &p.y,
                        &p.w1,
                        &p.b1,
                        &p.w2,
                        &p.b2,
                        &p.w3,
                        &p.b3,
                    ));
                })
            }
            "f_forward_big" => {
                let p = big();
                time(rounds, || {
                    black_box(mlp3_forward(
                        black_box(&p.x),
                        &p.y,
                        &p.w1,
                        &p.b1,
                        &p.w2,
                        &p.b2,
                        &p.w3,
                        &p.b3,
                    ));
                })
            }
            "xent" => {
                let (rows, cols) = (1024, 50257);
                let logits = filled(rows, cols, 5, 4.0);
                let labels: Vec<usize> = (0..rows).map(|i| (i * 7919) % cols).collect();
                let mut grad = vec![0.0f32; rows * cols];
                time(rounds, || {
                    black_box(fused(
                        logits.as_slice().unwrap(),
                        cols,
                        &labels,
                        XentOptions::default(),
                        1.0,
                        &mut grad,
                    ));
                })
            }
            "adamw" => {
                let n = 100_000_000;
                let mut w: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
                let g: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 1e-3).collect();
                let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
                let mut t = 0;
                time(rounds, || {
                    t += 1;
                    let k = AdamWConsts::new(1e-3, 0.9, 0.999, 1e-8, 0.01, 0.0, t);
                    adamw::step(&mut w, &g, &mut m, &mut v, &k);
                    black_box(&w);
                })
            }
            other => panic!("unknown workload {other:?}; known: {all:?}"),
        };
        println!("{name}{suffix} {med:.3} {min:.3}");
    }
}
