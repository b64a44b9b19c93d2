//! Influence functions (Koh & Liang 2017) on the digits: which training images a test
//! prediction leans on, from one conjugate-gradient solve on `#[grad]`'s Hessian-vector
//! products (`src/influence.rs`). Trains a 64-16-10 tanh MLP to its optimum (AdamW,
//! then Newton-CG), picks the hardest of the first 50 validation images, solves
//! `(H + μI) s = ∇L_test`, predicts how much removing each training image would change
//! that test loss, and checks the largest predictions by retraining without the image.
//!
//! Run: `cargo run --release --example influence`; figures in `out/influence/`.

use backprop_tests::influence::{
    Split, TinyMlp, influence, mlp_objective, mlp_objective_grad, mlp_objective_hvp,
    removal_effect, reweight_effect, split, train,
};
use backprop_tests::plot::{Series, lines};
use std::path::Path;
use std::time::Instant;

fn main() {
    let (n, hidden, lambda, mu) = (400, 16, 1e-2, 0.0);
    let all = split(n, 50);
    let p0 = TinyMlp::new(all.d, hidden, 10, 3);
    let (grad_ms, hvp_ms_) = costs(&p0, &all, lambda);
    println!(
        "one f_grad of the objective: {grad_ms:.2} ms, one f_hvp: {hvp_ms_:.2} ms ({:.2}×)",
        hvp_ms_ / grad_ms
    );
    let start = Instant::now();
    let weights = vec![1.0 / n as f64; n];
    let (p, norm) = train(p0, &all.x, &all.y, all.d, &weights, lambda, 400, 1e-10);
    println!(
        "64-{hidden}-10 tanh MLP, {} parameters, {n} training images, λ = {lambda}: optimum with ‖∇‖ = {norm:.1e} ({:.1} s)",
        p.flat().len(),
        start.elapsed().as_secs_f64()
    );
    // The hardest of the first 50 validation images.
    let loss_of = |k: usize| {
        mlp_objective(
            &p,
            &all.x_test[k * all.d..(k + 1) * all.d],
            &all.y_test[k..k + 1],
            all.d,
            &[1.0],
            0.0,
        )
    };
    let hardest = (0..all.y_test.len())
        .max_by(|&a, &b| loss_of(a).total_cmp(&loss_of(b)))
        .expect("a validation image");
    let s = Split {
        x_test: all.x_test[hardest * all.d..(hardest + 1) * all.d].to_vec(),
        y_test: vec![all.y_test[hardest]],
        ..all
    };
    println!(
        "test image {hardest}: label {}, loss {:.4}",
        s.y_test[0],
        loss_of(hardest)
    );
    let start = Instant::now();
    let inf = influence(&p, &s, lambda, mu);
    println!(
        "CG on HVPs: relative residual {:.1e} after {} products ({:.2} s)",
        inf.residuals.last().copied().unwrap_or(f64::NAN),
        inf.residuals.len(),
        start.elapsed().as_secs_f64(),
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| inf.predicted[b].abs().total_cmp(&inf.predicted[a].abs()));
    println!(
        "{:>5}  {:>5}  {:>12}  {:>12}",
        "image", "label", "predicted Δ", "retrained Δ"
    );
    let mut predicted = Vec::new();
    let mut actual = Vec::new();
    for (rank, &i) in order.iter().take(8).enumerate() {
        let effect = removal_effect(&p, &s, lambda, i);
        println!(
            "{i:>5}  {:>5}  {:>12.4e}  {:>12.4e}",
            s.y[i], inf.predicted[i], effect
        );
        predicted.push((rank as f64 + 1.0, inf.predicted[i]));
        actual.push((rank as f64 + 1.0, effect));
    }
    // To first order the prediction is exact: a small change of one image's weight.
    let (top, eps) = (order[0], 1e-3 / n as f64);
    let first_order = -eps * n as f64 * inf.predicted[top];
    let retrained = reweight_effect(&p, &s, lambda, top, eps);
    println!(
        "image {top} up-weighted by ε = 1e-3/n: predicted Δ {first_order:.6e}, retrained Δ {retrained:.6e} (ratio {:.4})",
        retrained / first_order
    );
    let dir = Path::new("out/influence");
    std::fs::create_dir_all(dir).expect("out/influence");
    let residuals: Vec<(f64, f64)> = inf
        .residuals
        .iter()
        .enumerate()
        .map(|(k, r)| (k as f64 + 1.0, *r))
        .collect();
    lines(
        &dir.join("cg_residual.png"),
        "CG on f_hvp: (H + μI) s = ∇L_test",
        "Hessian-vector products",
        "relative residual",
        &[Series {
            label: "‖r‖ / ‖b‖",
            points: residuals,
        }],
        true,
    )
    .expect("plot");
    lines(
        &dir.join("removal.png"),
        "Removing a training image: test-loss change",
        "rank by |predicted|",
        "Δ test loss",
        &[
            Series {
                label: "influence function",
                points: predicted,
            },
            Series {
                label: "retrained without it",
                points: actual,
            },
        ],
        false,
    )
    .expect("plot");
    println!("figures: out/influence/cg_residual.png, out/influence/removal.png");
}

/// Milliseconds per `f_grad` and per `f_hvp` of the training objective, medians of 7
/// paired rounds.
fn costs(p: &TinyMlp, s: &Split, lambda: f64) -> (f64, f64) {
    let weights = vec![1.0 / s.y.len() as f64; s.y.len()];
    let mut rounds: Vec<(f64, f64)> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let _ = mlp_objective_grad(p, &s.x, &s.y, s.d, &weights, lambda);
            let grad = start.elapsed().as_secs_f64() * 1e3;
            let start = Instant::now();
            let _ = mlp_objective_hvp(p, &s.x, &s.y, s.d, &weights, lambda, p);
            (grad, start.elapsed().as_secs_f64() * 1e3)
        })
        .collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut g: Vec<f64> = rounds.iter().map(|r| r.0).collect();
    let mut h: Vec<f64> = rounds.drain(..).map(|r| r.1).collect();
    (median(&mut g), median(&mut h))
}
