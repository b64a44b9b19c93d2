//! Two ADBench objectives (Srajer, Hodan & Fitzgibbon 2018) written as plain loops over
//! slices (`src/adbench.rs`), each timed alone and as its `#[grad]` value + gradient in
//! the same run. Target (issue): the gradient within 3× of the objective. Each also
//! times `f_jvp` (forward mode, one tangent for every differentiated value): target
//! within 2× of the objective (issue 18).
//!
//! - `gmm_d10_k25_n1000`: ADBench's GMM at d = 10, K = 25, n = 1000 (gradient with
//!   respect to alphas, means and icf: 25 + 250 + 1375 = 1650 values).
//! - `lstm_l2_b14_c1024`: ADBench's LSTM at l = 2 layers, b = 14, c = 1024 steps
//!   (gradient with respect to main_params and extra_params: 224 + 42 values).
//!
//! Run: `cargo bench --bench adbench -- --warm-up-time 1 --measurement-time 5`

use backprop_tests::adbench::{gmm_input, gmm_objective, gmm_objective_grad, gmm_objective_jvp};
use backprop_tests::adbench::{
    lstm_input, lstm_objective, lstm_objective_grad, lstm_objective_jvp,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn gmm(c: &mut Criterion) {
    let p = gmm_input(10, 25, 1000, 1.0, 0);
    let mut group = c.benchmark_group("gmm_d10_k25_n1000");
    group.bench_function("objective", |bch| {
        bch.iter(|| {
            gmm_objective(
                black_box(&p.alphas),
                black_box(&p.means),
                black_box(&p.icf),
                black_box(&p.x),
                p.d,
                p.k,
                p.gamma,
                p.m,
            )
        })
    });
    group.bench_function("grad", |bch| {
        bch.iter(|| {
            gmm_objective_grad(
                black_box(&p.alphas),
                black_box(&p.means),
                black_box(&p.icf),
                black_box(&p.x),
                p.d,
                p.k,
                p.gamma,
                p.m,
            )
        })
    });
    let tangent = |n: usize| -> Vec<f64> { (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect() };
    let (ta, tm, ti) = (
        tangent(p.alphas.len()),
        tangent(p.means.len()),
        tangent(p.icf.len()),
    );
    group.bench_function("jvp", |bch| {
        bch.iter(|| {
            gmm_objective_jvp(
                black_box(&p.alphas),
                black_box(&p.means),
                black_box(&p.icf),
                black_box(&p.x),
                p.d,
                p.k,
                p.gamma,
                p.m,
                black_box(&ta),
                black_box(&tm),
                black_box(&ti),
            )
        })
    });
    group.finish();
}

fn lstm(c: &mut Criterion) {
    let p = lstm_input(2, 14, 1024, 0);
    let mut group = c.benchmark_group("lstm_l2_b14_c1024");
    group.bench_function("objective", |bch| {
        bch.iter(|| {
            lstm_objective(
                black_box(&p.main_params),
                black_box(&p.extra_params),
                black_box(&p.state),
                black_box(&p.sequence),
                p.l,
                p.b,
                p.c,
            )
        })
    });
    group.bench_function("grad", |bch| {
        bch.iter(|| {
            lstm_objective_grad(
                black_box(&p.main_params),
                black_box(&p.extra_params),
                black_box(&p.state),
                black_box(&p.sequence),
                p.l,
                p.b,
                p.c,
            )
        })
    });
    let tangent = |n: usize| -> Vec<f64> { (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect() };
    let (tm, te) = (tangent(p.main_params.len()), tangent(p.extra_params.len()));
    group.bench_function("jvp", |bch| {
        bch.iter(|| {
            lstm_objective_jvp(
                black_box(&p.main_params),
                black_box(&p.extra_params),
                black_box(&p.state),
                black_box(&p.sequence),
                p.l,
                p.b,
                p.c,
                black_box(&tm),
                black_box(&te),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, gmm, lstm);
criterion_main!(benches);
