//! User-declared rules: `#[custom_vjp]` gives a function its pullback by hand, and
//! `#[grad]` code calls it like any other function with a rule.

use backprop::{custom_vjp, grad, gradcheck};

/// ln(1 + eˣ) computed naively (overflows to ∞ for x > 709), with a pullback that is
/// stable everywhere: d/dx = σ(x).
#[custom_vjp(log1pexp_vjp)]
fn log1pexp(x: f64) -> f64 {
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

fn log1pexp_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
    (d * backprop::sigmoid(x),)
}

#[grad]
fn uses_custom_rule(x: f64, w: f64) -> f64 {
    let z = w * x;
    log1pexp(z) * 2.0
}

#[test]
fn a_custom_rule_composes_with_grad() {
    // d/dw = 2σ(wx)·x, d/dx = 2σ(wx)·w.
    let (x, w) = (0.7, -1.3);
    let (_, g) = uses_custom_rule_grad(x, w);
    let s = backprop::sigmoid(w * x);
    assert!((g.w - 2.0 * s * x).abs() < 1e-15);
    assert!((g.x - 2.0 * s * w).abs() < 1e-15);
    gradcheck!(uses_custom_rule(x = 0.4, w = 2.0)).assert();
    // Far out, where a naive derivative of the naive formula would overflow: exactly 2x.
    assert_eq!(uses_custom_rule_grad(1000.0, 1.0).1.w, 2000.0);
}

/// A rule with two arguments and a deliberately hand-written (faster) gradient.
#[custom_vjp(dist_vjp)]
fn dist(a: f64, b: f64) -> f64 {
    (a * a + b * b).sqrt()
}

fn dist_vjp(a: f64, b: f64, y: f64, d: f64) -> (f64, f64) {
    if y == 0.0 {
        (0.0, 0.0)
    } else {
        (d * a / y, d * b / y)
    }
}

#[grad]
fn through_dist(x: f64) -> f64 {
    dist(x, 2.0 * x) + x
}

#[test]
fn a_two_argument_custom_rule() {
    // dist(x, 2x) = √5·|x|; d/dx = √5 + 1 for x > 0.
    let (_, g) = through_dist_grad(1.5);
    assert!((g.x - (5f64.sqrt() + 1.0)).abs() < 1e-15);
}

/// log Σ exp(x_i), stable, over a slice; its gradient softmax(x) given by hand.
#[custom_vjp(logsumexp_vjp)]
fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// A slice argument's cotangent is a `Vec` of its length.
fn logsumexp_vjp(x: &[f64], y: f64, d: f64) -> (Vec<f64>,) {
    (x.iter().map(|v| d * (v - y).exp()).collect(),)
}

#[grad]
fn cross_entropy(z: &[f64], label: usize) -> f64 {
    logsumexp(z) - z[label]
}

#[test]
fn a_custom_rule_over_a_slice() {
    let z = [1.0, 2.0, 3.0];
    let (v, g) = cross_entropy_grad(&z, 2);
    let s: f64 = z.iter().map(|v| v.exp()).sum();
    assert!((v - (s.ln() - 3.0)).abs() < 1e-14);
    // softmax − onehot.
    for (k, zk) in z.iter().enumerate() {
        let want = zk.exp() / s - f64::from(k == 2);
        assert!((g.z[k] - want).abs() < 1e-15, "{k}: {} vs {want}", g.z[k]);
    }
    gradcheck!(cross_entropy(z = &vec![0.3, -1.2, 2.2, 0.0], label = const 1)).assert();
}

/// ‖A‖²_F / n over an ndarray argument, with a data argument whose slot is `Inactive`.
#[custom_vjp(frobenius_vjp)]
fn frobenius(a: &ndarray::Array2<f64>, n: usize) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>() / n as f64
}

fn frobenius_vjp(
    a: &ndarray::Array2<f64>,
    n: usize,
    _y: f64,
    d: f64,
) -> (ndarray::Array2<f64>, backprop::Inactive) {
    (a * (2.0 * d / n as f64), backprop::Inactive)
}

#[grad]
fn regularised(w: &ndarray::Array2<f64>, lambda: f64) -> f64 {
    lambda * frobenius(w, 4)
}

#[test]
fn a_custom_rule_over_an_array_with_a_data_argument() {
    let w = ndarray::array![[1.0, 2.0], [3.0, -1.0]];
    let (v, g) = regularised_grad(&w, 0.5);
    assert_eq!(v, 0.5 * 15.0 / 4.0);
    assert_eq!(g.w, &w * 0.25);
    assert_eq!(g.lambda, 15.0 / 4.0);
}

// ---- a custom rule on a local buffer --------------------------------------------------

#[backprop::custom_vjp(cubes_vjp)]
fn cubes(v: &[f64]) -> f64 {
    v.iter().map(|t| t * t * t).sum()
}
fn cubes_vjp(v: &[f64], _y: f64, d: f64) -> (Vec<f64>,) {
    (v.iter().map(|t| 3.0 * t * t * d).collect(),)
}

/// A custom rule called on a local buffer that is written afterwards, and in a loop.
#[grad]
fn custom_on_local(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let a = cubes(&h);
    h[0] = a * h[1];
    let mut s = a;
    for t in 0..h.len() {
        s += cubes(&h[t..]) * 0.1;
        h[t] = s * 0.5;
    }
    s + h[0]
}
probe!(
    p_custom_on_local,
    custom_on_local,
    custom_on_local_grad,
    vec![0.5, -0.8, 0.6]
);
