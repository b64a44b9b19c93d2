//! `f` against `f_grad` against a gradient written by hand, on a straight-line loss of
//! 49 operations. Targets (issue 2): `f_grad` within 3× of `f`, within 1.2× of the
//! hand-written gradient. `f_jvp` (forward mode, issue 18): within 2× of `f`.
//!
//! Run: `cargo bench --bench grad_overhead`

use backprop::grad;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// L = Σₖ tanh(a·cₖ + b)², k = 1..10, cₖ = k/10: 3 ops per term, 10 squares, 9 sums.
#[grad]
fn loss(a: f64, b: f64) -> f64 {
    let t1 = (a * 0.1 + b).tanh();
    let t2 = (a * 0.2 + b).tanh();
    let t3 = (a * 0.3 + b).tanh();
    let t4 = (a * 0.4 + b).tanh();
    let t5 = (a * 0.5 + b).tanh();
    let t6 = (a * 0.6 + b).tanh();
    let t7 = (a * 0.7 + b).tanh();
    let t8 = (a * 0.8 + b).tanh();
    let t9 = (a * 0.9 + b).tanh();
    let t10 = (a * 1.0 + b).tanh();
    t1 * t1
        + t2 * t2
        + t3 * t3
        + t4 * t4
        + t5 * t5
        + t6 * t6
        + t7 * t7
        + t8 * t8
        + t9 * t9
        + t10 * t10
}

/// The same gradient by hand: ∂L/∂zₖ = 2tₖ(1 − tₖ²), ∂L/∂a = Σ ∂L/∂zₖ·cₖ, ∂L/∂b = Σ ∂L/∂zₖ.
#[inline(never)]
fn loss_by_hand(a: f64, b: f64) -> (f64, f64, f64) {
    let (mut l, mut da, mut db) = (0.0, 0.0, 0.0);
    for k in 1..=10 {
        let c = k as f64 / 10.0;
        let t = (a * c + b).tanh();
        l += t * t;
        let dz = 2.0 * t * (1.0 - t * t);
        da += dz * c;
        db += dz;
    }
    (l, da, db)
}

fn bench(c: &mut Criterion) {
    let (l, g) = loss_grad(0.3, -0.2);
    let (lh, da, db) = loss_by_hand(0.3, -0.2);
    assert!((l - lh).abs() < 1e-12 && (g.a - da).abs() < 1e-12 && (g.b - db).abs() < 1e-12);

    let mut group = c.benchmark_group("grad_overhead_49_ops");
    group.bench_function("f", |bch| {
        bch.iter(|| loss(black_box(0.3), black_box(-0.2)))
    });
    group.bench_function("f_grad", |bch| {
        bch.iter(|| loss_grad(black_box(0.3), black_box(-0.2)))
    });
    group.bench_function("f_jvp", |bch| {
        bch.iter(|| {
            loss_jvp(
                black_box(0.3),
                black_box(-0.2),
                black_box(1.0),
                black_box(0.5),
            )
        })
    });
    group.bench_function("hand_written", |bch| {
        bch.iter(|| loss_by_hand(black_box(0.3), black_box(-0.2)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
