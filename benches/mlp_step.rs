//! One training step (forward + backward, no optimizer) of a 784→256→10 ReLU MLP with
//! softmax cross-entropy at batch 128, f32: composed from `backprop::ops` (allocating,
//! as generated code would call them, including the unused ∂L/∂X) against the peer
//! `kernels`: the same step hand-written on our kernels with preallocated buffers and
//! no ∂L/∂X. The gap is what the op API costs over the kernels.
//!
//! Measured 2026-11-29 15:09 UTC (interleaved min of 50, shared machine, load 2.4):
//! ops 1.02 ms, kernels 0.64 ms. Most of the gap is the ∂L/∂X product the op API cannot
//! skip (a third of the flops); the macro's activity analysis removes it. The rest is
//! allocation and separate bias/ReLU passes.
//!
//! Also `grad` (the same loss written as a `#[grad]` function, its generated
//! value-and-gradient) against `forward` (that function alone: the inference path), the
//! ratio issue 4 targets (≤ 2.5×; the ideal is 2.0 since X needs no gradient).
//!
//! ```text
//! cargo bench --bench mlp_step -- --warm-up-time 1 --measurement-time 3
//! ```

use backprop::kernels::matmul::{Accum, matmul};
use backprop::kernels::softmax_xent::{XentOptions, fused};
use backprop::ops;
use criterion::{Criterion, Throughput, criterion_group};
use ndarray::{Array1, Array2, Axis};
use std::hint::black_box;
use std::time::Duration;

/// The step as a user writes it: `#[grad]` differentiates the weights only.
#[backprop::grad(w1, b1, w2, b2)]
fn loss(
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

const B: usize = 128;
const D: usize = 784;
const H: usize = 256;
const C: usize = 10;

fn filled(r: usize, c: usize, seed: usize, scale: f32) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        (((i * 31 + j * 17 + seed) % 13) as f32 / 13.0 - 0.5) * scale
    })
}

struct Params {
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
}

/// Through the ops, one pullback per line, as `#[grad]` would emit it.
fn step_ops(p: &Params, x: &Array2<f32>, y: &[usize]) -> (f32, [Array2<f32>; 2], [Array1<f32>; 2]) {
    let xw1 = ops::matmul(x, &p.w1);
    let h = ops::add(&xw1, &p.b1);
    let a = ops::relu(&h);
    let aw2 = ops::matmul(&a, &p.w2);
    let z = ops::add(&aw2, &p.b2);
    let l = ops::softmax_cross_entropy(&z, y, XentOptions::default());
    let d_z = ops::softmax_cross_entropy_vjp(&z, y, XentOptions::default(), 1.0);
    let (d_aw2, d_b2) = ops::add_vjp(&aw2.raw_dim(), &p.b2.raw_dim(), &d_z);
    let (d_a, d_w2) = ops::matmul_vjp(&a, &p.w2, &d_aw2);
    let d_h = ops::relu_vjp(&a, &d_a);
    let (d_xw1, d_b1) = ops::add_vjp(&xw1.raw_dim(), &p.b1.raw_dim(), &d_h);
    let (_d_x, d_w1) = ops::matmul_vjp(x, &p.w1, &d_xw1);
    (l, [d_w1, d_w2], [d_b1, d_b2])
}

/// Preallocated buffers for the hand-written step.
struct Buffers {
    a: Array2<f32>,
    z: Array2<f32>,
    g: Array2<f32>,
    d_a: Array2<f32>,
    d_w1: Array2<f32>,
    d_w2: Array2<f32>,
    d_b1: Array1<f32>,
    d_b2: Array1<f32>,
}

/// The same step on the kernels: bias+ReLU fused into one loop, no ∂L/∂X, no allocation.
fn step_kernels(p: &Params, x: &Array2<f32>, y: &[usize], s: &mut Buffers) -> f32 {
    matmul(s.a.view_mut(), x.view(), p.w1.view(), Accum::Replace);
    for mut row in s.a.rows_mut() {
        row.zip_mut_with(&p.b1, |v, &b| *v = (*v + b).max(0.0));
    }
    matmul(s.z.view_mut(), s.a.view(), p.w2.view(), Accum::Replace);
    for mut row in s.z.rows_mut() {
        row += &p.b2;
    }
    let l = fused(
        s.z.as_slice().unwrap(),
        C,
        y,
        XentOptions::default(),
        1.0,
        s.g.as_slice_mut().unwrap(),
    );
    matmul(s.d_w2.view_mut(), s.a.t(), s.g.view(), Accum::Replace);
    s.d_b2.assign(&s.g.sum_axis(Axis(0)));
    matmul(s.d_a.view_mut(), s.g.view(), p.w2.t(), Accum::Replace);
    s.d_a.zip_mut_with(&s.a, |d, &a| {
        if a <= 0.0 {
            *d = 0.0
        }
    });
    matmul(s.d_w1.view_mut(), x.t(), s.d_a.view(), Accum::Replace);
    s.d_b1.assign(&s.d_a.sum_axis(Axis(0)));
    l
}

fn bench(c: &mut Criterion) {
    let x = filled(B, D, 1, 1.0);
    let y: Vec<usize> = (0..B).map(|i| (i * 7) % C).collect();
    let p = Params {
        w1: filled(D, H, 2, 0.1),
        b1: Array1::from_elem(H, 0.01),
        w2: filled(H, C, 3, 0.1),
        b2: Array1::zeros(C),
    };
    let mut s = Buffers {
        a: Array2::zeros((B, H)),
        z: Array2::zeros((B, C)),
        g: Array2::zeros((B, C)),
        d_a: Array2::zeros((B, H)),
        d_w1: Array2::zeros((D, H)),
        d_w2: Array2::zeros((H, C)),
        d_b1: Array1::zeros(H),
        d_b2: Array1::zeros(C),
    };
    // The generated gradient equals the hand-written one.
    let (lg, gg) = loss_grad(&x, &y, &p.w1, &p.b1, &p.w2, &p.b2);
    // Both paths compute the same gradient.
    let (l, dw, db) = step_ops(&p, &x, &y);
    let l2 = step_kernels(&p, &x, &y, &mut s);
    assert!((l - l2).abs() < 1e-5 && (lg - l2).abs() < 1e-5);
    assert!(
        gg.w1
            .iter()
            .zip(s.d_w1.iter())
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
    assert!(
        dw[0]
            .iter()
            .zip(s.d_w1.iter())
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
    assert!(
        db[1]
            .iter()
            .zip(s.d_b2.iter())
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );

    let mut g = c.benchmark_group("mlp_step/f32/128x784x256x10");
    // Useful flops: forward 2·B·(D·H + H·C), backward twice that minus the skipped ∂L/∂X.
    let flops = 2 * B * (D * H + H * C) * 3 - 2 * B * D * H;
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function("ops", |b| b.iter(|| step_ops(&p, black_box(&x), &y)));
    g.bench_function("grad", |b| {
        b.iter(|| loss_grad(black_box(&x), &y, &p.w1, &p.b1, &p.w2, &p.b2))
    });
    g.bench_function("forward", |b| {
        b.iter(|| loss(black_box(&x), &y, &p.w1, &p.b1, &p.w2, &p.b2))
    });
    g.bench_function("kernels", |b| {
        b.iter(|| step_kernels(&p, black_box(&x), &y, &mut s))
    });
    g.finish();

    // Interleaved minimum of 50 each (the machine is shared; see docs/PERFORMANCE.md).
    let mut best = [f64::INFINITY; 4];
    for _ in 0..50 {
        for (i, slot) in best.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            match i {
                0 => drop(black_box(step_ops(&p, black_box(&x), &y))),
                1 => drop(black_box(step_kernels(&p, black_box(&x), &y, &mut s))),
                2 => drop(black_box(loss_grad(
                    black_box(&x),
                    &y,
                    &p.w1,
                    &p.b1,
                    &p.w2,
                    &p.b2,
                ))),
                _ => drop(black_box(loss(
                    black_box(&x),
                    &y,
                    &p.w1,
                    &p.b1,
                    &p.w2,
                    &p.b2,
                ))),
            }
            *slot = slot.min(t.elapsed().as_secs_f64());
        }
    }
    eprintln!(
        "min-of-50 mlp_step: ops {:.3} ms, kernels {:.3} ms, #[grad] {:.3} ms, forward {:.3} ms; #[grad] / forward = {:.2}",
        best[0] * 1e3,
        best[1] * 1e3,
        best[2] * 1e3,
        best[3] * 1e3,
        best[2] / best[3]
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}
/// `MLP_STEP_MEDIAN=N`: skip criterion, time `N` calls of the generated
/// value-and-gradient one by one and print their median, the same statistic
/// `benches/peers/jax_mlp_step.py` prints for JAX. `benches/peers/compare_mlp_step.sh`
/// alternates the two to measure the ratio on a machine whose speed drifts.
fn main() {
    if let Ok(n) = std::env::var("MLP_STEP_MEDIAN") {
        let n: usize = n
            .parse()
            .expect("MLP_STEP_MEDIAN is a count of timed calls");
        let x = filled(B, D, 1, 1.0);
        let y: Vec<usize> = (0..B).map(|i| (i * 7) % C).collect();
        let (w1, b1) = (filled(D, H, 2, 0.1), Array1::from_elem(H, 0.01));
        let (w2, b2) = (filled(H, C, 3, 0.1), Array1::zeros(C));
        let run = || drop(black_box(loss_grad(black_box(&x), &y, &w1, &b1, &w2, &b2)));
        // Warm-up for half a second, as criterion does: thread pool, allocator, caches.
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() < 0.5 {
            run();
        }
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let t = std::time::Instant::now();
                run();
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "backprop value_and_grad: median {:.3} ms, min {:.3} ms",
            times[n / 2] * 1e3,
            times[0] * 1e3
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
