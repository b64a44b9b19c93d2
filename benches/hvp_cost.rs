//! Second order's cost (issue 18): `f_hvp` (value, gradient and one Hessian-vector
//! product) against `f_grad` of the same function, in paired rounds (each round times
//! both back to back, and the ratio is taken within a round: this machine drifts ±20%
//! between rounds). Target: within about 4× of `f_grad` (JAX's forward-over-reverse is
//! typically 2–3×).
//!
//! - `gmm`: ADBench's GMM at d = 10, K = 25, n = 1000 over slices.
//! - `lstm`: ADBench's LSTM at l = 2, b = 14, c = 1024 over slices.
//! - `logreg`: `examples/newton.rs`'s logistic regression (digits 3 vs 8, 65 weights).
//! - `mlp`: `examples/influence.rs`'s 64-16-10 tanh MLP over slices (1210 parameters,
//!   400 digits).
//! - `mlp-nd`: the main job's MLP over ndarray (`src/mlp.rs`, f32, 784-256-128-10 with
//!   ReLU and the fused softmax cross-entropy, batch 128), the shape `jvp_cost` times.
//! - `gpt`: the character-level GPT of `src/gpt.rs` (f32) at nanoGPT's CPU "baby"
//!   configuration (4 layers, 4 heads, 128 wide, context 64, batch 12, 65 characters),
//!   `gpt_loss_hvp` along a second initialisation of the model.
//!
//! Run: `cargo bench --bench hvp_cost` (`-- 21` for 21 rounds; 11 by default).

use backprop_tests::adbench::{gmm_input, gmm_objective_grad, gmm_objective_hvp};
use backprop_tests::adbench::{lstm_input, lstm_objective_grad, lstm_objective_hvp};
use backprop_tests::gpt::{Gpt, GptConfig, Rng64, gpt_loss_grad, gpt_loss_hvp};
use backprop_tests::influence::{TinyMlp, mlp_objective_grad, mlp_objective_hvp, split};
use backprop_tests::mlp::{mlp_loss_grad, mlp_loss_hvp};
use backprop_tests::second_order::{logistic_loss_grad, logistic_loss_hvp, two_digits};
use std::hint::black_box;

#[path = "support/mlp_case.rs"]
mod mlp_case;
#[path = "support/paired.rs"]
mod paired;
use mlp_case::mlp_case;
use paired::{direction, median, per_call, rounds};

/// `rounds` paired rounds of f_grad and f_hvp: the median time of each and the median
/// of the per-round ratios.
fn paired(name: &str, rounds: usize, grad: &mut dyn FnMut(), hvp: &mut dyn FnMut()) {
    let (mut tg, mut th, mut r) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let a = per_call(grad);
        let b = per_call(hvp);
        tg.push(a);
        th.push(b);
        r.push(b / a);
    }
    println!(
        "{name:6} f_grad {:9.3} ms   f_hvp {:9.3} ms   f_hvp/f_grad {:.2}×",
        1e3 * median(tg),
        1e3 * median(th),
        median(r),
    );
}

fn main() {
    let rounds = rounds(11);
    println!("{rounds} paired rounds; medians");

    let p = gmm_input(10, 25, 1000, 1.0, 0);
    let (va, vm, vi) = (
        direction(p.alphas.len()),
        direction(p.means.len()),
        direction(p.icf.len()),
    );
    paired(
        "gmm",
        rounds,
        &mut || {
            black_box(gmm_objective_grad(
                black_box(&p.alphas),
                &p.means,
                &p.icf,
                &p.x,
                p.d,
                p.k,
                p.gamma,
                p.m,
            ));
        },
        &mut || {
            black_box(gmm_objective_hvp(
                black_box(&p.alphas),
                &p.means,
                &p.icf,
                &p.x,
                p.d,
                p.k,
                p.gamma,
                p.m,
                &va,
                &vm,
                &vi,
            ));
        },
    );

    let p = lstm_input(2, 14, 1024, 0);
    let (vm, ve) = (
        direction(p.main_params.len()),
        direction(p.extra_params.len()),
    );
    paired(
        "lstm",
        rounds,
        &mut || {
            black_box(lstm_objective_grad(
                black_box(&p.main_params),
                &p.extra_params,
                &p.state,
                &p.sequence,
                p.l,
                p.b,
                p.c,
            ));
        },
        &mut || {
            black_box(lstm_objective_hvp(
                black_box(&p.main_params),
                &p.extra_params,
                &p.state,
                &p.sequence,
                p.l,
                p.b,
                p.c,
                &vm,
                &ve,
            ));
        },
    );

    let (x, y, d) = two_digits(3, 8);
    let w: Vec<f64> = (0..=d).map(|k| 0.01 * (k as f64).sin()).collect();
    let v = direction(d + 1);
    paired(
        "logreg",
        rounds,
        &mut || {
            black_box(logistic_loss_grad(black_box(&w), &x, &y, 1e-3));
        },
        &mut || {
            black_box(logistic_loss_hvp(black_box(&w), &x, &y, 1e-3, &v));
        },
    );

    let data = split(400, 1);
    let p = TinyMlp::new(data.d, 16, 10, 3);
    let v = p.from_flat(&direction(p.flat().len()));
    let weights = vec![1.0 / 400.0; 400];
    paired(
        "mlp",
        rounds,
        &mut || {
            black_box(mlp_objective_grad(
                black_box(&p),
                &data.x,
                &data.y,
                data.d,
                &weights,
                1e-2,
            ));
        },
        &mut || {
            black_box(mlp_objective_hvp(
                black_box(&p),
                &data.x,
                &data.y,
                data.d,
                &weights,
                1e-2,
                &v,
            ));
        },
    );

    let (x, labels, (w1, b1, w2, b2, w3, b3), (t1, u1, t2, u2, t3, u3)) = mlp_case();
    paired(
        "mlp-nd",
        rounds,
        &mut || {
            black_box(mlp_loss_grad(
                x.view(),
                &labels,
                &w1,
                &b1,
                &w2,
                &b2,
                &w3,
                &b3,
            ));
        },
        &mut || {
            black_box(mlp_loss_hvp(
                x.view(),
                &labels,
                &w1,
                &b1,
                &w2,
                &b2,
                &w3,
                &b3,
                &t1,
                &u1,
                &t2,
                &u2,
                &t3,
                &u3,
            ));
        },
    );

    let cfg = GptConfig {
        vocab: 65,
        block_size: 64,
        n_layer: 4,
        n_head: 4,
        n_embd: 128,
        tied: true,
    };
    let (p, v) = (Gpt::<f32>::init(&cfg, 1), Gpt::<f32>::init(&cfg, 2));
    let mut r = Rng64::new(3);
    let ids = ndarray::Array2::from_shape_simple_fn((12, 64), || r.below(65));
    let targets = ndarray::Array2::from_shape_simple_fn((12, 64), || r.below(65));
    paired(
        "gpt",
        rounds,
        &mut || {
            black_box(gpt_loss_grad(black_box(&p), &ids, &targets, 4, true));
        },
        &mut || {
            black_box(gpt_loss_hvp(black_box(&p), &ids, &targets, 4, true, &v));
        },
    );
}
