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
