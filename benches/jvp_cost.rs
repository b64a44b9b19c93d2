//! Forward mode's cost (issue 18): `f_jvp` against `f` and `f_grad` of the same function,
//! in paired rounds (each round times the three back to back, and the ratios are taken
//! within a round: this machine drifts ±20% between rounds). Target: `f_jvp` within 2×
//! of `f`.
//!
//! - `gmm`: ADBench's GMM at d = 10, K = 25, n = 1000 over slices (a tangent pass).
//! - `lstm`: ADBench's LSTM at l = 2, b = 14, c = 1024 over slices (a tangent pass).
//! - `mlp`: the main job's 784-256-128-10 MLP at batch 128, f32, over ndarray (a tangent
//!   pass over arrays: `t_a·b + a·t_b` per product, ReLU's and cross-entropy's `jvp`).
//!
//! Run: `cargo bench --bench jvp_cost` (`-- 21` for 21 rounds; 11 by default).

use backprop_tests::adbench::{gmm_input, gmm_objective, gmm_objective_grad, gmm_objective_jvp};
use backprop_tests::adbench::{
    lstm_input, lstm_objective, lstm_objective_grad, lstm_objective_jvp,
};
use backprop_tests::mlp::{mlp_loss, mlp_loss_grad, mlp_loss_jvp};
use std::hint::black_box;

#[path = "support/mlp_case.rs"]
mod mlp_case;
#[path = "support/paired.rs"]
mod paired;
use mlp_case::mlp_case;
use paired::{direction, median, per_call, rounds};

/// `rounds` paired rounds of f, f_jvp and f_grad: the median time of each and the
/// median of the per-round ratios.
fn paired(
    name: &str,
    rounds: usize,
    f: &mut dyn FnMut(),
    jvp: &mut dyn FnMut(),
    grad: &mut dyn FnMut(),
) {
    let (mut tf, mut tj, mut tg, mut rj, mut rg) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let a = per_call(f);
        let b = per_call(jvp);
        let c = per_call(grad);
        tf.push(a);
        tj.push(b);
        tg.push(c);
        rj.push(b / a);
        rg.push(c / a);
    }
    println!(
        "{name:5} f {:9.3} ms   f_jvp {:9.3} ms   f_grad {:9.3} ms   f_jvp/f {:.2}×   f_grad/f {:.2}×   f_jvp/f_grad {:.2}",
        1e3 * median(tf),
        1e3 * median(tj),
        1e3 * median(tg),
        median(rj.clone()),
        median(rg.clone()),
        median(rj.iter().zip(&rg).map(|(j, g)| j / g).collect()),
    );
}

fn main() {
    let rounds = rounds(11);
    println!("{rounds} paired rounds; medians");

    let p = gmm_input(10, 25, 1000, 1.0, 0);
    let (ta, tm, ti) = (
        direction(p.alphas.len()),
        direction(p.means.len()),
        direction(p.icf.len()),
    );
    paired(
        "gmm",
        rounds,
        &mut || {
            black_box(gmm_objective(
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
            black_box(gmm_objective_jvp(
                black_box(&p.alphas),
                &p.means,
                &p.icf,
                &p.x,
                p.d,
                p.k,
                p.gamma,
                p.m,
                &ta,
                &tm,
                &ti,
            ));
        },
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
    );

    let p = lstm_input(2, 14, 1024, 0);
    let (tm, te) = (
        direction(p.main_params.len()),
        direction(p.extra_params.len()),
    );
    paired(
        "lstm",
        rounds,
        &mut || {
            black_box(lstm_objective(
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
            black_box(lstm_objective_jvp(
                black_box(&p.main_params),
                &p.extra_params,
                &p.state,
                &p.sequence,
                p.l,
                p.b,
                p.c,
                &tm,
                &te,
            ));
        },
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
    );

    let (x, labels, (w1, b1, w2, b2, w3, b3), (t1, u1, t2, u2, t3, u3)) = mlp_case();
    paired(
        "mlp",
        rounds,
        &mut || {
            black_box(mlp_loss(x.view(), &labels, &w1, &b1, &w2, &b2, &w3, &b3));
        },
        &mut || {
            black_box(mlp_loss_jvp(
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
    );
}
