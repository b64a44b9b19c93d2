//! Second derivatives of every scalar rule (`runtime/src/rules/second.rs`) and of the
//! runtime's scalar functions (their `tangent_forward`), each against central
//! differences of its first derivative, as ChainRulesTestUtils' `test_frule` does: the
//! rule table's pullback at `d = 1` is the first derivative `J`, so `∂J/∂readₖ` is
//! checked by differencing the table's own rule.
#![allow(clippy::float_cmp)]

use backprop::__private::{self as p, second};

/// Central difference of `j` in its argument `k` at `at`.
fn fd(j: &dyn Fn(&[f64]) -> f64, at: &[f64], k: usize) -> f64 {
    let h = 1e-6 * at[k].abs().max(1.0);
    let (mut a, mut b) = (at.to_vec(), at.to_vec());
    a[k] += h;
    b[k] -= h;
    (j(&a) - j(&b)) / (2.0 * h)
}

#[track_caller]
fn close(got: f64, expected: f64, what: &str) {
    assert!(
        (got - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: got {got:e}, expected {expected:e}"
    );
}

/// `second!(rule, [reads..])`: at the point `reads`, each declared `∂J/∂readₖ` against
/// the differences of `J = rule(reads.., 1)`, and what the tangent program's reverse
/// pass calls, `dK(reads.., t, d) = d·t·∂J/∂readₖ`.
macro_rules! second {
    ($rule:ident, [$($read:expr),+]) => {{
        let at = [$($read),+];
        let j = |r: &[f64]| second!(@call $rule, r, 1.0, $($read),+);
        let partials = second::$rule::partials($($read),+);
        for k in 0..at.len() {
            close(partials[k], fd(&j, &at, k), concat!(stringify!($rule), " ∂J"));
        }
        // What the tangent program's reverse pass calls: `dK(reads.., t, d)`.
        let (t, d2) = (-0.45, 1.9);
        let dk: Vec<f64> = second!(@dk $rule, t, d2, $($read),+);
        for k in 0..at.len() {
            close(dk[k], d2 * t * partials[k], concat!(stringify!($rule), " dK"));
        }
    }};
    (@dk $rule:ident, $t:expr, $d:expr, $a:expr) => { vec![second::$rule::d0($a, $t, $d)] };
    (@dk $rule:ident, $t:expr, $d:expr, $a:expr, $b:expr) => {
        vec![second::$rule::d0($a, $b, $t, $d), second::$rule::d1($a, $b, $t, $d)]
    };
    (@dk $rule:ident, $t:expr, $d:expr, $a:expr, $b:expr, $c:expr) => {
        vec![
            second::$rule::d0($a, $b, $c, $t, $d),
            second::$rule::d1($a, $b, $c, $t, $d),
            second::$rule::d2($a, $b, $c, $t, $d),
        ]
    };
    (@call $rule:ident, $r:expr, $d:expr, $a:expr) => { p::$rule($r[0], $d) };
    (@call $rule:ident, $r:expr, $d:expr, $a:expr, $b:expr) => { p::$rule($r[0], $r[1], $d) };
    (@call $rule:ident, $r:expr, $d:expr, $a:expr, $b:expr, $c:expr) => { p::$rule($r[0], $r[1], $r[2], $d) };
}

#[test]
fn arithmetic() {
    second!(mul_vjp_lhs, [0.8]);
    second!(mul_vjp_rhs, [-1.7]);
    second!(div_vjp_lhs, [1.3]);
    second!(div_vjp_rhs, [1.3, -0.4]);
}

#[test]
fn exponentials_and_logarithms() {
    second!(exp_vjp, [2.1]);
    second!(exp2_vjp, [2.1]);
    second!(exp_m1_vjp, [0.4]);
    second!(ln_vjp, [0.6]);
    second!(ln_1p_vjp, [0.6]);
    second!(log2_vjp, [1.6]);
    second!(log10_vjp, [1.6]);
    second!(log_vjp_x, [1.6, 3.0]);
    second!(log_vjp_base, [3.0, 0.42]);
}

#[test]
fn powers() {
    second!(sqrt_vjp, [1.4]);
    second!(cbrt_vjp, [-1.4]);
    second!(powf_vjp_x, [1.4, 2.5]);
    second!(powf_vjp_x, [0.7, -1.5]);
    second!(powf_vjp_p, [1.4, 2.3]);
    second!(recip_vjp, [-0.8]);
    // powi's exponent is an integer: one float read.
    for n in [-3, 0, 1, 2, 5] {
        let x = 1.3;
        let j = |r: &[f64]| p::powi_vjp(r[0], n, 1.0);
        close(second::powi_vjp::partial(x, n), fd(&j, &[x], 0), "powi ∂J");
        close(
            second::powi_vjp::d0(x, n, 0.3, 2.0),
            0.6 * second::powi_vjp::partial(x, n),
            "powi d0",
        );
    }
}

#[test]
fn piecewise_linear_away_from_kinks() {
    second!(abs_vjp, [-0.8]);
    second!(max_vjp_a, [0.3, -0.2]);
    second!(max_vjp_b, [0.3, -0.2]);
    second!(min_vjp_a, [0.3, -0.2]);
    second!(min_vjp_b, [0.3, -0.2]);
    second!(clamp_vjp_x, [0.3, -1.0, 1.0]);
    second!(clamp_vjp_lo, [-1.3, -1.0]);
    second!(clamp_vjp_hi, [1.3, 1.0]);
}

#[test]
fn hypot_and_atan2() {
    second!(hypot_vjp_a, [0.6, 0.6f64.hypot(-1.1)]);
    second!(hypot_vjp_b, [-1.1, 0.6f64.hypot(-1.1)]);
    second!(atan2_vjp_y, [0.6, -1.1]);
    second!(atan2_vjp_x, [0.6, -1.1]);
}

#[test]
fn trigonometric_and_hyperbolic() {
    second!(sin_vjp, [0.9]);
    second!(cos_vjp, [0.9]);
    second!(tan_vjp, [0.9f64.tan()]);
    second!(asin_vjp, [0.45]);
    second!(acos_vjp, [-0.45]);
    second!(atan_vjp, [1.7]);
    second!(sinh_vjp, [0.9]);
    second!(cosh_vjp, [-0.9]);
    second!(tanh_vjp, [0.9f64.tanh()]);
    second!(erf_vjp, [0.8]);
    second!(erfc_vjp, [-0.8]);
}

/// The runtime's functions: `tangent_forward(x, t)`'s tape gives `f''(x)·t·dd` for `x`
/// and `f'(x)·dd` for `t`; `f'` is the companion's `jvp` along 1, differenced for `f''`.
#[test]
fn runtime_functions() {
    use backprop::{erf, erfc, gelu, relu, sigmoid, silu, softplus};
    macro_rules! unary {
        ($f:ident, $x:expr) => {{
            let x: f64 = $x;
            let first = |r: &[f64]| $f::jvp(r[0], (Some(1.0),)).1;
            let (t, dd) = (0.6, -1.4);
            let (t_y, tape) = $f::tangent_forward(x, t);
            close(t_y, first(&[x]) * t, concat!(stringify!($f), " tangent"));
            let (d_x, d_t) = p::Pullback::backward(tape, dd);
            close(
                d_x,
                fd(&first, &[x], 0) * t * dd,
                concat!(stringify!($f), " f''"),
            );
            close(d_t, first(&[x]) * dd, concat!(stringify!($f), " f'"));
        }};
    }
    for x in [-2.5, -0.3, 0.4, 1.7] {
        unary!(sigmoid, x);
        unary!(softplus, x);
        unary!(gelu, x);
        unary!(silu, x);
        unary!(erf, x);
        unary!(erfc, x);
        unary!(relu, x);
    }
    // leaky ReLU: the mixed second derivative, 1 where x ≤ 0.
    for (x, mixed) in [(-0.5, 1.0), (0.8, 0.0)] {
        let (t_x, t_s, dd) = (0.3, -0.7, 2.0);
        let (_, tape) = backprop::leaky_relu::tangent_forward(x, 0.1, t_x, t_s);
        let (d_x, d_slope, d_tx, d_ts) = p::Pullback::backward(tape, dd);
        assert_eq!((d_x, d_slope), (dd * t_s * mixed, dd * t_x * mixed));
        let jx = if x > 0.0 { 1.0 } else { 0.1 };
        let js = if x > 0.0 { 0.0 } else { x };
        assert_eq!((d_tx, d_ts), (dd * jx, dd * js));
    }
}

/// `logsumexp`'s Hessian is `diag(p) − ppᵀ` with `p = softmax(x)`.
#[test]
fn logsumexp_hessian() {
    let x = [0.3, -1.2, 2.0];
    let s: f64 = x.iter().map(|v: &f64| v.exp()).sum();
    let prob: Vec<f64> = x.iter().map(|v| v.exp() / s).collect();
    for k in 0..3 {
        let mut t = [0.0; 3];
        t[k] = 1.0;
        let (t_y, tape) = backprop::logsumexp::tangent_forward(&x, &t);
        close(t_y, prob[k], "logsumexp tangent");
        let (d_x, d_t) = p::Pullback::backward(tape, 1.0);
        for j in 0..3 {
            let h = if j == k {
                prob[j] - prob[j] * prob[k]
            } else {
                -prob[j] * prob[k]
            };
            close(d_x[j], h, "logsumexp H");
            close(d_t[j], prob[j], "logsumexp ∂t");
        }
    }
}

/// Every rule of the table is checked above.
#[test]
fn every_rule_has_its_second_derivative_checked_here() {
    let table = include_str!("../../derive/src/rule_table.in");
    let this = include_str!("second_order.rs");
    let mut missing = Vec::new();
    for line in table.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("d_") else {
            continue;
        };
        let Some((_, rule)) = rest.split_once(" = ") else {
            continue;
        };
        let Some((name, _)) = rule.split_once('(') else {
            continue;
        };
        let checked = this.contains(&format!("second!({name},"))
            || this.contains(&format!("second::{name}::partial"));
        if !checked {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "rules without a second-derivative check: {missing:?}"
    );
}
