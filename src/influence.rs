//! Influence functions on the digits (Koh & Liang 2017, "Understanding black-box
//! predictions via influence functions", after Cook & Weisberg 1982): which training
//! images a test prediction leans on, from one Hessian solve. The classifier is a small
//! tanh MLP written as plain Rust over slices, so `#[grad]` gives its `f_hvp`; the solve
//! `(H + μI) s = ∇L_test` is conjugate gradients on those products, the Hessian never
//! formed (`examples/influence.rs`).
//!
//! Removing training image `i` (weight `1/n` in the objective) moves the optimum by about
//! `(1/n) H⁻¹ ∇Lᵢ`, so the test loss changes by about `(1/n) ∇Lᵢ · s`, one gradient per
//! image after the solve. `validate` retrains without an image, from the optimum, by
//! Newton-CG, and compares.
//!
//! `tests/apps/second_order.rs` runs these functions on a small budget and asserts the
//! solve converges and the predictions match retraining.

// Index loops, as a user writes scalar code for `#[grad]`.
#![allow(clippy::needless_range_loop)]

use crate::mlp::digits;
use crate::second_order::conjugate_gradient;
use backprop::optim::{AdamW, AdamWConfig, Optimizer};
use backprop::{Differentiable, grad, logsumexp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A one-hidden-layer tanh classifier: `w1` is `h × d` and `w2` `c × h`, row-major.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct TinyMlp {
    /// Hidden weights, `h × d`.
    pub w1: Vec<f64>,
    /// Hidden biases, `h`.
    pub b1: Vec<f64>,
    /// Output weights, `c × h`.
    pub w2: Vec<f64>,
    /// Output biases, `c`.
    pub b2: Vec<f64>,
}

impl TinyMlp {
    /// Weights from N(0, 1/fan_in) (LeCun's initialisation, for tanh), biases 0.
    pub fn new(d: usize, h: usize, c: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = |fan_in: usize| {
            // Box–Muller: one standard normal from two uniforms.
            let (u, v): (f64, f64) = (rng.random(), rng.random());
            (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
                / (fan_in as f64).sqrt()
        };
        TinyMlp {
            w1: (0..h * d).map(|_| normal(d)).collect(),
            b1: vec![0.0; h],
            w2: (0..c * h).map(|_| normal(h)).collect(),
            b2: vec![0.0; c],
        }
    }

    /// The parameters as one flat vector (`w1, b1, w2, b2`), for the solver.
    pub fn flat(&self) -> Vec<f64> {
        [&self.w1[..], &self.b1, &self.w2, &self.b2].concat()
    }

    /// The same shapes, values from `v` (as `flat` lays them out).
    ///
    /// # Panics
    /// If `v` has another length.
    pub fn from_flat(&self, v: &[f64]) -> Self {
        let (a, b, c) = (self.w1.len(), self.b1.len(), self.w2.len());
        assert_eq!(
            v.len(),
            a + b + c + self.b2.len(),
            "TinyMlp::from_flat: length"
        );
        TinyMlp {
            w1: v[..a].to_vec(),
            b1: v[a..a + b].to_vec(),
            w2: v[a + b..a + b + c].to_vec(),
            b2: v[a + b + c..].to_vec(),
        }
    }
}

/// `Σᵢ wᵢ CE(softmax(W₂ tanh(W₁xᵢ + b₁) + b₂), yᵢ) + ½ λ ‖θ‖²` over the images in `x`
/// (`n × d`, row-major) with labels `labels` and weights `weights`: the mean loss for
/// `wᵢ = 1/n`, one image's loss for `w = [1]` and `λ = 0`, the objective without image
/// `i` for `wᵢ = 0`.
#[grad(p)]
pub fn mlp_objective(
    p: &TinyMlp,
    x: &[f64],
    labels: &[usize],
    d: usize,
    weights: &[f64],
    lambda: f64,
) -> f64 {
    let h = p.b1.len();
    let c = p.b2.len();
    let mut total = 0.0;
    for i in 0..labels.len() {
        let mut hidden = Vec::with_capacity(h);
        for k in 0..h {
            let mut z = p.b1[k];
            for j in 0..d {
                z += p.w1[k * d + j] * x[i * d + j];
            }
            hidden.push(z.tanh());
        }
        let mut logits = Vec::with_capacity(c);
        for m in 0..c {
            let mut z = p.b2[m];
            for k in 0..h {
                z += p.w2[m * h + k] * hidden[k];
            }
            logits.push(z);
        }
        total += weights[i] * (logsumexp(&logits) - logits[labels[i]]);
    }
    let mut reg = 0.0;
    for v in p.w1.iter() {
        reg += v * v;
    }
    for v in p.b1.iter() {
        reg += v * v;
    }
    for v in p.w2.iter() {
        reg += v * v;
    }
    for v in p.b2.iter() {
        reg += v * v;
    }
    total + 0.5 * lambda * reg
}

/// Training and test images of the digits, as flat rows and labels.
pub struct Split {
    /// `n × 64` training pixels in [0, 1], row-major.
    pub x: Vec<f64>,
    /// `n` training labels.
    pub y: Vec<usize>,
    /// Test pixels.
    pub x_test: Vec<f64>,
    /// Test labels.
    pub y_test: Vec<usize>,
    /// Pixels per image (64).
    pub d: usize,
}

/// The first `n` training images and `n_test` validation images of `mlp::digits`.
pub fn split(n: usize, n_test: usize) -> Split {
    let (train, val) = digits(0.2, 7);
    let rows = |ds: &backprop::data::Dataset, k: usize| -> (Vec<f64>, Vec<usize>) {
        let k = k.min(ds.labels.len());
        let x = ds
            .images
            .rows()
            .into_iter()
            .take(k)
            .flat_map(|r| r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
            .collect();
        (x, ds.labels[..k].to_vec())
    };
    let (x, y) = rows(&train, n);
    let (x_test, y_test) = rows(&val, n_test);
    Split {
        x,
        y,
        x_test,
        y_test,
        d: train.images.ncols(),
    }
}

/// Minimises `mlp_objective` (mean loss, `λ`) from `p`: AdamW for `adam_steps` full-batch
/// steps, then damped Newton-CG until `‖∇‖ ≤ tol`. Returns the parameters and the final
/// gradient norm.
#[allow(clippy::too_many_arguments)]
pub fn train(
    mut p: TinyMlp,
    x: &[f64],
    y: &[usize],
    d: usize,
    weights: &[f64],
    lambda: f64,
    adam_steps: usize,
    tol: f64,
) -> (TinyMlp, f64) {
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.02,
        weight_decay: 0.0,
        ..Default::default()
    });
    for step in 0..adam_steps {
        // Linear decay to a tenth, so the last steps settle.
        opt.set_lr(0.02 * (1.0 - 0.9 * step as f64 / adam_steps as f64));
        let (_, g) = mlp_objective_grad(&p, x, y, d, weights, lambda);
        opt.step(&mut p, &g.p).expect("finite gradients");
    }
    newton_polish(p, x, y, d, weights, lambda, tol)
}

/// Newton-CG from `p` (at most 20 steps; each a CG solve of `(H + μI) s = −∇` with a
/// small μ, at most 300 products, stopped early at negative curvature, then a
/// backtracking line search): quadratic near a minimum.
pub fn newton_polish(
    mut p: TinyMlp,
    x: &[f64],
    y: &[usize],
    d: usize,
    weights: &[f64],
    lambda: f64,
    tol: f64,
) -> (TinyMlp, f64) {
    let mu = 1e-5;
    let mut norm = f64::INFINITY;
    for _ in 0..20 {
        let (_, g) = mlp_objective_grad(&p, x, y, d, weights, lambda);
        let g = g.p.flat();
        norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm <= tol {
            break;
        }
        let minus_g: Vec<f64> = g.iter().map(|v| -v).collect();
        let (mut step, _) = conjugate_gradient(
            |v| damped_hvp(&p, x, y, d, weights, lambda, mu, v),
            &minus_g,
            1e-10,
            300,
        );
        if step.iter().all(|s| *s == 0.0) {
            // Negative curvature at once: a small gradient step instead.
            step = minus_g.iter().map(|g| 0.1 * g).collect();
        }
        // Backtracking (Armijo, Nocedal & Wright Algorithm 3.1): the full step near
        // the minimum, where convergence is quadratic; shorter ones until then.
        let f0 = mlp_objective(&p, x, y, d, weights, lambda);
        let slope: f64 = g.iter().zip(&step).map(|(g, s)| g * s).sum();
        let here = p.flat();
        let mut t = 1.0;
        loop {
            let next: Vec<f64> = here.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let q = p.from_flat(&next);
            if mlp_objective(&q, x, y, d, weights, lambda) <= f0 + 1e-4 * t * slope || t < 1e-6 {
                p = q;
                break;
            }
            t *= 0.5;
        }
    }
    (p, norm)
}

/// `(H + μI)·v` of the objective at `p`, `v` flat.
#[allow(clippy::too_many_arguments)]
fn damped_hvp(
    p: &TinyMlp,
    x: &[f64],
    y: &[usize],
    d: usize,
    weights: &[f64],
    lambda: f64,
    mu: f64,
    v: &[f64],
) -> Vec<f64> {
    let dir = p.from_flat(v);
    let (_, _, hv) = mlp_objective_hvp(p, x, y, d, weights, lambda, &dir);
    hv.p.flat().iter().zip(v).map(|(h, v)| h + mu * v).collect()
}

/// What `influence` found: the solve and each training image's predicted effect.
pub struct Influence {
    /// CG's relative residual after each product.
    pub residuals: Vec<f64>,
    /// Per training image, the predicted change of the test loss when it is removed,
    /// `(1/n) ∇Lᵢ · s`.
    pub predicted: Vec<f64>,
}

/// Influence of every training image on the test loss of `(x_test, y_test)` at the
/// optimum `p` of the mean objective with `λ`: one CG solve `(H + μI) s = ∇L_test` on
/// HVPs, then one gradient per image.
pub fn influence(p: &TinyMlp, s: &Split, lambda: f64, mu: f64) -> Influence {
    let n = s.y.len();
    let test_weights = vec![1.0 / s.y_test.len() as f64; s.y_test.len()];
    let (_, g_test) = mlp_objective_grad(p, &s.x_test, &s.y_test, s.d, &test_weights, 0.0);
    let b = g_test.p.flat();
    let weights = vec![1.0 / n as f64; n];
    let (solution, residuals) = conjugate_gradient(
        |v| damped_hvp(p, &s.x, &s.y, s.d, &weights, lambda, mu, v),
        &b,
        1e-10,
        4 * b.len(),
    );
    let b_norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    let predicted = (0..n)
        .map(|i| {
            let x_i = &s.x[i * s.d..(i + 1) * s.d];
            let (_, gi) = mlp_objective_grad(p, x_i, &s.y[i..i + 1], s.d, &[1.0], 0.0);
            let gi = gi.p.flat();
            gi.iter().zip(&solution).map(|(a, b)| a * b).sum::<f64>() / n as f64
        })
        .collect();
    Influence {
        residuals: residuals.iter().map(|r| r / b_norm).collect(),
        predicted,
    }
}

/// The test loss after changing training image `i`'s weight from `1/n` by `eps` and
/// retraining from `p` (Newton-CG), minus the test loss at `p`. `influence` predicts it
/// as `−eps·n` times its value for removal (`eps = −1/n`), to first order in `eps`.
pub fn reweight_effect(p: &TinyMlp, s: &Split, lambda: f64, i: usize, eps: f64) -> f64 {
    let n = s.y.len();
    let mut weights = vec![1.0 / n as f64; n];
    weights[i] += eps;
    let (q, _) = newton_polish(p.clone(), &s.x, &s.y, s.d, &weights, lambda, 1e-12);
    let test_weights = vec![1.0 / s.y_test.len() as f64; s.y_test.len()];
    let test = |p: &TinyMlp| mlp_objective(p, &s.x_test, &s.y_test, s.d, &test_weights, 0.0);
    test(&q) - test(p)
}

/// `reweight_effect` for removing image `i` (its weight `1/n` → 0).
pub fn removal_effect(p: &TinyMlp, s: &Split, lambda: f64, i: usize) -> f64 {
    reweight_effect(p, s, lambda, i, -1.0 / s.y.len() as f64)
}
