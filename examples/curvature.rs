//! Curvature of the main job's MLP (issue 18), from `#[grad]`'s Hessian-vector products of
//! ndarray code: `mlp_loss_hvp`, generated from the same `mlp_loss` (`src/mlp.rs`) the
//! README's first command trains, with nothing written by hand.
//!
//! 1. Trains the 64-128-64-10 ReLU MLP on the UCI digits as `examples/train.rs` does.
//! 2. The sharpness `λ_max(∇²L)` of the training loss at the trained weights, by power
//!    iteration on `H·v` (the lesson's stability edge: gradient descent with step `η`
//!    diverges along directions with `λ > 2/η`; Cohen et al. 2021, "Edge of Stability").
//! 3. An influence-function style solve (Koh & Liang 2017): conjugate gradients on
//!    `(H + μI) s = ∇L_test` for the hardest validation image, then the predicted change
//!    of its loss when a training image is up-weighted, `−∇L(zᵢ)·s`, for the most
//!    helpful and the most harmful training images.
//!
//! Run: `cargo run --release --example curvature`; figures in `out/curvature/`.

use backprop_tests::mlp::{
    Mlp, TrainConfig, digits, mlp_loss, mlp_loss_grad, mlp_loss_hvp, standardize, train,
};
use backprop_tests::plot::{Series, lines};
use backprop_tests::second_order::conjugate_gradient;
use ndarray::{Array1, Array2, ArrayView2, s};
use std::path::Path;
use std::time::Instant;

/// The weights as one f64 vector (`w1, b1, w2, b2, w3, b3`, row-major).
fn flat(m: &Mlp) -> Vec<f64> {
    [
        m.w1.as_slice(),
        m.b1.as_slice(),
        m.w2.as_slice(),
        m.b2.as_slice(),
        m.w3.as_slice(),
        m.b3.as_slice(),
    ]
    .into_iter()
    .flat_map(|s| s.expect("row-major").iter().map(|&v| f64::from(v)))
    .collect()
}

/// A model of `like`'s shapes holding `v` (the order of [`flat`]).
fn unflat(like: &Mlp, v: &[f64]) -> Mlp {
    assert_eq!(v.len(), flat(like).len(), "a vector of the model's size");
    let mut at = 0;
    let mut next = |n: usize| {
        let part: Vec<f32> = v[at..at + n].iter().map(|&x| x as f32).collect();
        at += n;
        part
    };
    let matrix = |a: &Array2<f32>, part: Vec<f32>| {
        Array2::from_shape_vec(a.raw_dim(), part).expect("the layer's size")
    };
    let w1 = matrix(&like.w1, next(like.w1.len()));
    let b1 = Array1::from(next(like.b1.len()));
    let w2 = matrix(&like.w2, next(like.w2.len()));
    let b2 = Array1::from(next(like.b2.len()));
    let w3 = matrix(&like.w3, next(like.w3.len()));
    let b3 = Array1::from(next(like.b3.len()));
    Mlp {
        w1,
        b1,
        w2,
        b2,
        w3,
        b3,
    }
}

/// `H·v` of the mean loss over `x`, `labels` at `m`, as a flat vector.
fn hvp(m: &Mlp, x: ArrayView2<'_, f32>, labels: &[usize], v: &[f64]) -> Vec<f64> {
    let d = unflat(m, v);
    let (_, _, hv) = mlp_loss_hvp(
        x, labels, &m.w1, &m.b1, &m.w2, &m.b2, &m.w3, &m.b3, &d.w1, &d.b1, &d.w2, &d.b2, &d.w3,
        &d.b3,
    );
    flat(&Mlp {
        w1: hv.w1,
        b1: hv.b1,
        w2: hv.w2,
        b2: hv.b2,
        w3: hv.w3,
        b3: hv.b3,
    })
}

/// `∇L` over `x`, `labels` at `m`, as a flat vector.
fn gradient(m: &Mlp, x: ArrayView2<'_, f32>, labels: &[usize]) -> Vec<f64> {
    let (_, g) = mlp_loss_grad(x, labels, &m.w1, &m.b1, &m.w2, &m.b2, &m.w3, &m.b3);
    flat(&Mlp {
        w1: g.w1,
        b1: g.b1,
        w2: g.w2,
        b2: g.b2,
        w3: g.w3,
        b3: g.b3,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() {
    let (mut tr, mut va) = digits(0.2, 0);
    standardize(&mut tr, &mut [&mut va]);
    let cfg = TrainConfig {
        progress: false,
        ..TrainConfig::default()
    };
    let report = train(&tr, &va, &cfg).expect("training converges");
    let model = report.model.clone().expect("the trained model");
    let (train_acc, val_acc) = report.final_accuracy();
    let n_params = flat(&model).len();
    println!(
        "trained the main job's MLP ({n_params} parameters): train {:.2}%, validation {:.2}%",
        100.0 * train_acc,
        100.0 * val_acc
    );

    // The Hessian of the training loss over the first 512 training images.
    let n = 512.min(tr.labels.len());
    let (x, labels) = (tr.images.slice(s![..n, ..]), &tr.labels[..n]);

    // What one HVP costs against one gradient here (medians of 9 paired rounds).
    let v0 = vec![1.0; n_params];
    let (mut tg, mut th) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let start = Instant::now();
        std::hint::black_box(gradient(&model, x, labels));
        tg.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        std::hint::black_box(hvp(&model, x, labels, &v0));
        th.push(start.elapsed().as_secs_f64());
    }
    tg.sort_by(f64::total_cmp);
    th.sort_by(f64::total_cmp);
    println!(
        "one f_grad over {n} images: {:.2} ms; one f_hvp (value, gradient, H·v): {:.2} ms ({:.2}×, both with the flattening)",
        1e3 * tg[4],
        1e3 * th[4],
        th[4] / tg[4]
    );

    // Sharpness by power iteration.
    let mut v: Vec<f64> = (0..n_params).map(|i| ((i as f64) * 0.7).sin()).collect();
    let mut lambda = 0.0;
    let mut sharpness = Vec::new();
    for k in 0..40 {
        let norm = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        let hv = hvp(&model, x, labels, &v);
        lambda = dot(&v, &hv);
        sharpness.push(((k + 1) as f64, lambda));
        v = hv;
    }
    println!(
        "sharpness λ_max(∇²L) ≈ {lambda:.3} after 40 HVPs: plain gradient descent is stable here below η = 2/λ_max = {:.3} (the run's peak lr was {})",
        2.0 / lambda,
        cfg.lr
    );

    // Influence of the training images on the hardest validation image.
    let val_loss = |k: usize| {
        f64::from(mlp_loss(
            va.images.slice(s![k..k + 1, ..]),
            &va.labels[k..k + 1],
            &model.w1,
            &model.b1,
            &model.w2,
            &model.b2,
            &model.w3,
            &model.b3,
        ))
    };
    let hardest = (0..va.labels.len())
        .max_by(|&a, &b| val_loss(a).total_cmp(&val_loss(b)))
        .expect("a validation image");
    println!(
        "hardest validation image: {hardest} (label {}), loss {:.4}",
        va.labels[hardest],
        val_loss(hardest)
    );
    let b = gradient(
        &model,
        va.images.slice(s![hardest..hardest + 1, ..]),
        &va.labels[hardest..hardest + 1],
    );
    // μ damps the directions of negative or tiny curvature (ReLU nets are not convex).
    let mu = 1e-2 * lambda;
    let start = Instant::now();
    let (solution, residuals) = conjugate_gradient(
        |p| {
            let hp = hvp(&model, x, labels, p);
            hp.iter().zip(p).map(|(h, p)| h + mu * p).collect()
        },
        &b,
        // f32 products: the residual stalls near 1e-5 relative, so ask for 1e-4.
        1e-4,
        200,
    );
    println!(
        "CG on (H + μI) s = ∇L_test, μ = {mu:.2e}: {} HVPs, relative residual {:.1e}, {:.2} s",
        residuals.len(),
        residuals.last().copied().unwrap_or(0.0),
        start.elapsed().as_secs_f64()
    );
    // Predicted change of the test loss when training image i is up-weighted by ε:
    // −ε ∇L(zᵢ)ᵀ (H + μI)⁻¹ ∇L_test.
    let mut scores: Vec<(usize, f64)> = (0..n)
        .map(|i| {
            let g = gradient(
                &model,
                tr.images.slice(s![i..i + 1, ..]),
                &tr.labels[i..i + 1],
            );
            (i, -dot(&g, &solution))
        })
        .collect();
    scores.sort_by(|a, b| a.1.total_cmp(&b.1));
    let show = |what: &str, list: &[(usize, f64)]| {
        let items: Vec<String> = list
            .iter()
            .map(|(i, s)| format!("#{i} (label {}) {s:+.3e}", tr.labels[*i]))
            .collect();
        println!("{what}: {}", items.join(", "));
    };
    show(
        "most helpful training images (up-weighting lowers the test loss)",
        &scores[..3],
    );
    show(
        "most harmful (up-weighting raises it)",
        &scores[scores.len() - 3..],
    );

    let dir = Path::new("out/curvature");
    std::fs::create_dir_all(dir).expect("an output directory");
    lines(
        &dir.join("cg_residual.png"),
        "CG on mlp_loss_hvp: (H + μI) s = ∇L_test",
        "Hessian-vector products",
        "relative residual",
        &[Series {
            label: "‖r‖ / ‖b‖",
            points: residuals
                .iter()
                .enumerate()
                .map(|(k, r)| ((k + 1) as f64, *r))
                .collect(),
        }],
        true,
    )
    .expect("plot");
    lines(
        &dir.join("sharpness.png"),
        "Power iteration on mlp_loss_hvp",
        "Hessian-vector products",
        "Rayleigh quotient vᵀHv",
        &[Series {
            label: "estimate of λ_max",
            points: sharpness,
        }],
        false,
    )
    .expect("plot");
    println!("figures: out/curvature/cg_residual.png, out/curvature/sharpness.png");
}
