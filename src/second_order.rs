//! Second order on the digits: Newton's method on an L2-regularised logistic regression
//! (`examples/newton.rs`), with each Newton system solved by conjugate gradients on
//! Hessian-vector products from `#[grad]`'s `f_hvp`, the Hessian never formed (Nocedal
//! & Wright, *Numerical Optimization*, 2nd ed., §7.1, "inexact Newton" with a tight
//! forcing term, and Algorithm 5.2 for CG).
//!
//! `tests/apps/second_order.rs` runs the same functions and asserts the quadratic
//! convergence the example prints.

// Index loops, as a user writes scalar code for `#[grad]`.
#![allow(clippy::needless_range_loop)]

use crate::mlp::digits;
use backprop::{grad, softplus};

/// Mean logistic loss of a linear classifier plus `½ λ ‖w‖²` (the bias, `w[d]`, is not
/// regularised), written as plain Rust over flat slices.
///
/// - `w`: `d + 1` weights, the last the bias; `x`: `n × d` inputs, row-major; `y`: `n`
///   labels in {0, 1}.
/// - `−[y ln σ(z) + (1 − y) ln(1 − σ(z))] = softplus(z) − y z` for the logit `z`.
#[grad(w)]
pub fn logistic_loss(w: &[f64], x: &[f64], y: &[f64], lambda: f64) -> f64 {
    let d = w.len() - 1;
    let mut total = 0.0;
    for i in 0..y.len() {
        let mut z = w[d];
        for j in 0..d {
            z += w[j] * x[i * d + j];
        }
        total += softplus(z) - y[i] * z;
    }
    let mut reg = 0.0;
    for j in 0..d {
        reg += w[j] * w[j];
    }
    total / y.len() as f64 + 0.5 * lambda * reg
}

/// Solves `A s = b` for a symmetric positive definite `A` given only as `a(v) = A·v`,
/// by conjugate gradients (Nocedal & Wright, Algorithm 5.2) from `s = 0`, until
/// `‖r‖ ≤ tol·‖b‖` or `max_iter` products, or a direction of non-positive curvature
/// (then `s` is what was solved before it). Returns `s` and the residual norm after each
/// product.
///
/// # Panics
/// If `a` returns a vector whose length is not `b`'s.
pub fn conjugate_gradient(
    mut a: impl FnMut(&[f64]) -> Vec<f64>,
    b: &[f64],
    tol: f64,
    max_iter: usize,
) -> (Vec<f64>, Vec<f64>) {
    let dot = |u: &[f64], v: &[f64]| -> f64 { u.iter().zip(v).map(|(a, b)| a * b).sum() };
    let mut s = vec![0.0; b.len()];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    let b_norm = rr.sqrt();
    let mut residuals = Vec::new();
    for _ in 0..max_iter {
        if rr.sqrt() <= tol * b_norm {
            break;
        }
        let ap = a(&p);
        assert_eq!(
            ap.len(),
            b.len(),
            "conjugate_gradient: A·p has {} elements, b has {}",
            ap.len(),
            b.len()
        );
        let curvature = dot(&p, &ap);
        if curvature <= 0.0 {
            // Not positive definite along `p` (a Hessian away from a minimum): stop
            // with what has been solved (Steihaug's rule; never for an SPD `A`).
            break;
        }
        let alpha = rr / curvature;
        for k in 0..s.len() {
            s[k] += alpha * p[k];
            r[k] -= alpha * ap[k];
        }
        let rr_next = dot(&r, &r);
        residuals.push(rr_next.sqrt());
        let beta = rr_next / rr;
        for k in 0..p.len() {
            p[k] = r[k] + beta * p[k];
        }
        rr = rr_next;
    }
    (s, residuals)
}

/// One Newton iterate: the loss and gradient norm at its start, and how many
/// Hessian-vector products the step's CG solve took.
#[derive(Clone, Debug)]
pub struct Iterate {
    pub loss: f64,
    pub grad_norm: f64,
    pub hvps: usize,
}

/// The two-class problem: digits `a` against `b` (labels 0 and 1), inputs flattened
/// row-major, from `mlp::digits`' training split.
pub fn two_digits(a: usize, b: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let (train, _) = digits(0.2, 7);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (row, &label) in train.images.rows().into_iter().zip(&train.labels) {
        if label == a || label == b {
            x.extend(row.iter().map(|&v| f64::from(v)));
            y.push(if label == b { 1.0 } else { 0.0 });
        }
    }
    let d = train.images.ncols();
    (x, y, d)
}

/// Newton's method from `w = 0`: at each iterate, the step `s` solves `H s = −∇f` by CG
/// on `f_hvp` products (to a relative residual of 1e-10), and `w ← w + s` (a full step:
/// the regularised loss is strictly convex and smooth). Stops when `‖∇f‖ ≤ 1e-12` or
/// after `steps` steps.
pub fn newton(
    x: &[f64],
    y: &[f64],
    d: usize,
    lambda: f64,
    steps: usize,
) -> (Vec<f64>, Vec<Iterate>) {
    let mut w = vec![0.0; d + 1];
    let mut iterates = Vec::new();
    for _ in 0..=steps {
        let (loss, g) = logistic_loss_grad(&w, x, y, lambda);
        let grad_norm = g.w.iter().map(|v| v * v).sum::<f64>().sqrt();
        if grad_norm <= 1e-12 || iterates.len() == steps {
            iterates.push(Iterate {
                loss,
                grad_norm,
                hvps: 0,
            });
            break;
        }
        let minus_g: Vec<f64> = g.w.iter().map(|v| -v).collect();
        let (step, residuals) = conjugate_gradient(
            |v| logistic_loss_hvp(&w, x, y, lambda, v).2.w,
            &minus_g,
            1e-10,
            4 * (d + 1),
        );
        iterates.push(Iterate {
            loss,
            grad_norm,
            hvps: residuals.len(),
        });
        for (w, s) in w.iter_mut().zip(&step) {
            *w += s;
        }
    }
    (w, iterates)
}
