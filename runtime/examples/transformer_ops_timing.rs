//! Forward + backward timings of the fused transformer ops at nanoGPT's CPU "baby"
//! shape (B=12, T=64, C=128, H=4, head size 32) and at B=8, T=256, C=384, H=6, in f32;
//! and attention's tape bytes at T=256 and T=1024.
//!
//! `cargo run --release -p backprop --example transformer_ops_timing`
//! (figures in docs/PERFORMANCE.md; against PyTorch eager: `benches/peers/compare_transformer_ops.py`).

use backprop::Pullback;
use backprop::ops;
use ndarray::{Array1, Array2, Array3, Array4};
use std::time::Instant;

/// Median over `reps` runs of `f`, in microseconds, after 3 warm-up runs.
fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[reps / 2]
}

fn filled<D: ndarray::Dimension, Sh: ndarray::ShapeBuilder<Dim = D>>(
    sh: Sh,
    seed: u32,
) -> ndarray::Array<f32, D> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    ndarray::Array::from_shape_simple_fn(sh, || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) * 2.0 - 1.0
    })
}

fn run(b: usize, t: usize, c: usize, h: usize, reps: usize) {
    let hd = c / h;
    println!("B={b} T={t} C={c} H={h} (head size {hd}), f32, forward+backward, median of {reps}:");
    let x: Array3<f32> = filled((b, t, c), 1);
    let (g, beta) = (Array1::<f32>::ones(c), Array1::<f32>::zeros(c));
    let dy: Array3<f32> = filled((b, t, c), 2);
    let us = median_us(reps, || {
        let (y, tape) = ops::layer_norm::forward(&x, &g, &beta, 1e-5);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(dy.clone()));
    });
    println!("  layer_norm [B,T,C]           {us:9.1} µs");
    let us = median_us(reps, || {
        let (y, tape) = ops::rms_norm::forward(&x, &g, 1e-5);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(dy.clone()));
    });
    println!("  rms_norm [B,T,C]             {us:9.1} µs");
    let table: Array2<f32> = filled((65, c), 3);
    let ids = Array2::from_shape_fn((b, t), |(i, j)| (i * 31 + j * 7) % 65);
    let us = median_us(reps, || {
        let (y, tape) = ops::embedding::forward(&table, &ids);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(dy.clone()));
    });
    println!("  embedding V=65 [B,T]→[B,T,C] {us:9.1} µs");
    let s: Array4<f32> = filled((b, h, t, t), 4);
    let ds: Array4<f32> = filled((b, h, t, t), 5);
    let mask = Array2::from_shape_fn((t, t), |(i, j)| j <= i);
    let us = median_us(reps, || {
        let (y, tape) = ops::softmax_masked::forward(&s, &mask);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(ds.clone()));
    });
    println!("  softmax_masked [B,H,T,T]     {us:9.1} µs");
    let us = median_us(reps, || {
        let (y, tape) = ops::softmax_causal::forward(&s);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(ds.clone()));
    });
    println!("  softmax_causal [B,H,T,T]     {us:9.1} µs");
    let q: Array4<f32> = filled((b, h, t, hd), 6);
    let k: Array4<f32> = filled((b, h, t, hd), 7);
    let v: Array4<f32> = filled((b, h, t, hd), 8);
    let d_o: Array4<f32> = filled((b, h, t, hd), 9);
    let us = median_us(reps, || {
        let (y, tape) = ops::attention::forward(&q, &k, &v, true);
        std::hint::black_box(&y);
        std::hint::black_box(tape.backward(d_o.clone()));
    });
    println!("  attention causal [B,H,T,hd]  {us:9.1} µs");
    let us = median_us(reps, || {
        std::hint::black_box(ops::attention(&q, &k, &v, true));
    });
    println!("    (forward only)             {us:9.1} µs");
}

fn main() {
    run(12, 64, 128, 4, 51);
    run(8, 256, 384, 6, 11);
    for t in [256, 1024] {
        let x = Array4::<f32>::zeros((1, 4, t, 32));
        let (_, tape) = ops::attention::forward(&x, &x, &x, true);
        println!(
            "attention tape, B=1 H=4 T={t} d=32 f32: {} bytes (the T×T probabilities would be {})",
            tape.bytes(),
            4 * t * t * 4
        );
    }
}
