//! Second order (issue 18, part 2): `f_hvp(args.., v..)` returns `f`'s value, its
//! gradient and the Hessian-vector product `∇²f · v`, by the reverse pass of the tangent
//! program. Each function is checked against a Hessian derived by hand where one is
//! short, and against central differences of the gradient along `v`.
#![allow(clippy::needless_range_loop, clippy::float_cmp, clippy::useless_vec)]

use crate::support::close;
use backprop::grad;

#[grad]
fn sin_product(a: f64, b: f64) -> f64 {
    (a * b).sin() + a.exp() / b
}

#[test]
fn scalar_hessian_by_hand() {
    let (a, b) = (0.3, 0.7);
    let (va, vb) = (1.5, -0.5);
    let (value, g, hv) = sin_product_hvp(a, b, va, vb);
    assert_eq!(value, sin_product(a, b));
    let (_, g_ref) = sin_product_grad(a, b);
    assert_eq!(g, g_ref);
    // f = sin(ab) + eᵃ/b
    let (s, c) = ((a * b).sin(), (a * b).cos());
    let h_aa = -b * b * s + a.exp() / b;
    let h_ab = c - a * b * s - a.exp() / (b * b);
    let h_bb = -a * a * s + 2.0 * a.exp() / (b * b * b);
    close(hv.a, h_aa * va + h_ab * vb, 1e-14, "(Hv)_a");
    close(hv.b, h_ab * va + h_bb * vb, 1e-14, "(Hv)_b");
}

#[grad]
fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        s += 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2);
    }
    s
}

#[test]
fn rosenbrock_hessian_exactly() {
    let x = [0.5, -1.5, 2.0, 0.3];
    let n = x.len();
    for k in 0..n {
        let mut v = vec![0.0; n];
        v[k] = 1.0;
        let (_, _, hv) = rosenbrock_hvp(&x, &v);
        for j in 0..n {
            // ∂²/∂xⱼ∂xₖ of Σ 100(xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)²
            let mut h = 0.0;
            if j == k {
                if j + 1 < n {
                    h += 1200.0 * x[j] * x[j] - 400.0 * x[j + 1] + 2.0;
                }
                if j > 0 {
                    h += 200.0;
                }
            } else if j + 1 == k || k + 1 == j {
                h = -400.0 * x[j.min(k)];
            }
            assert_eq!(hv.x[j], h, "H[{j}][{k}]");
        }
    }
}

/// Central differences of the gradient along `v`: (∇f(x + hv) − ∇f(x − hv)) / 2h.
fn fd_of_gradient(g: &dyn Fn(&[f64]) -> Vec<f64>, x: &[f64], v: &[f64]) -> Vec<f64> {
    let h = 1e-5;
    let a: Vec<f64> = x.iter().zip(v).map(|(x, v)| x + h * v).collect();
    let b: Vec<f64> = x.iter().zip(v).map(|(x, v)| x - h * v).collect();
    g(&a)
        .iter()
        .zip(g(&b))
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

const X: [f64; 5] = [0.5, -1.5, 2.0, 0.3, 1.1];
const V: [f64; 5] = [1.0, 0.5, -2.0, 0.25, -0.75];
const U: [f64; 5] = [-0.3, 1.2, 0.4, -1.0, 0.6];

/// Checks `f_hvp` at `X` along `V`: its value is `f`'s, its gradient `f_grad`'s, its
/// `H·v` the central differences of the gradient, and `uᵀ(H v) = vᵀ(H u)` (the Hessian
/// is symmetric; the two products come from different tangent programs' runs).
macro_rules! hvp_along {
    ($test:ident, $f:ident, $fh:ident, $fg:ident) => {
        #[test]
        fn $test() {
            let (value, g, hv) = $fh(&X, &V);
            assert_eq!(value.to_bits(), $f(&X).to_bits(), "f_hvp's value is f's");
            let (_, g_ref) = $fg(&X);
            for (a, b) in g.x.iter().zip(&g_ref.x) {
                assert!(
                    (a - b).abs() <= 1e-13 * b.abs().max(1.0),
                    "gradient {a} vs {b}"
                );
            }
            let fd = fd_of_gradient(&|x| $fg(x).1.x, &X, &V);
            for (k, (a, b)) in hv.x.iter().zip(&fd).enumerate() {
                close(*a, *b, 1e-6, &format!("(Hv)[{k}] vs differences"));
            }
            let (_, _, hu) = $fh(&X, &U);
            close(dot(&U, &hv.x), dot(&V, &hu.x), 1e-12, "uᵀHv = vᵀHu");
        }
    };
}

hvp_along!(
    rosenbrock_along,
    rosenbrock,
    rosenbrock_hvp,
    rosenbrock_grad
);

/// Branches in a loop, a local buffer written and read back.
#[grad]
fn gated(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    for i in 0..x.len() {
        h[i] = if x[i] > 0.0 {
            x[i] * x[i].ln_1p()
        } else {
            (x[i] / (1.0 + x[i] * x[i])).atan()
        };
    }
    let mut acc = 1.0;
    for v in &h {
        acc *= 1.0 + v.tanh();
    }
    acc
}
hvp_along!(gated_along, gated, gated_hvp, gated_grad);

/// `while`, `break`, `continue` and an early `return` (all rewritten into flags).
#[grad]
fn jumps(x: &[f64]) -> f64 {
    let mut s = 0.0;
    let mut i = 0;
    while i < x.len() {
        i += 1;
        if x[i - 1] < -1.0 {
            continue;
        }
        s += x[i - 1].sin() * s + x[i - 1];
        if s > 100.0 {
            return s;
        }
    }
    for k in (0..x.len()).rev() {
        if k == 1 {
            break;
        }
        s = s * 0.5 + x[k].powf(2.5).sqrt();
    }
    s
}
hvp_along!(jumps_along, jumps, jumps_hvp, jumps_grad);

/// Buffers built with `push`, copied with `to_vec`, viewed with `&x[a..]`, and a
/// constant buffer that a write makes vary.
#[grad]
fn buffers(x: &[f64]) -> f64 {
    let mut ys = Vec::new();
    for v in x {
        ys.push(v * 2.0 - 1.0);
    }
    let mut z = ys.to_vec();
    z[0] = z[1] * z[2];
    let tail = &z[2..];
    let mut w = vec![1.0, 2.0, 3.0];
    w[1] = tail[0].exp();
    tail.iter().map(|v| v * v * v).sum::<f64>() + w[1] * w[0] / (1.0 + z[0] * z[0])
}
hvp_along!(buffers_along, buffers, buffers_hvp, buffers_grad);

/// Softmax and cross-entropy over a row of logits, as scalar code.
#[grad]
fn softmax_xent(z: &[f64], label: usize) -> f64 {
    let mut m = z[0];
    for v in z {
        m = m.max(*v);
    }
    let mut s = 0.0;
    for v in z {
        s += (v - m).exp();
    }
    s.ln() + m - z[label]
}

/// The Hessian of softmax + cross-entropy is `diag(p) − ppᵀ`, whatever the label.
#[test]
fn softmax_xent_hessian_is_diag_p_minus_ppt() {
    let z: [f64; 4] = [0.3, -1.2, 2.0, 0.7];
    let s: f64 = z.iter().map(|v| v.exp()).sum();
    let p: Vec<f64> = z.iter().map(|v| v.exp() / s).collect();
    for label in [0, 2] {
        for k in 0..z.len() {
            let mut v = [0.0; 4];
            v[k] = 1.0;
            let (value, g, hv) = softmax_xent_hvp(&z, label, &v);
            close(value, s.ln() - z[label], 1e-15, "value");
            close(g.z[k], p[k] - f64::from(k == label), 1e-15, "gradient");
            for j in 0..z.len() {
                let h = if j == k {
                    p[j] - p[j] * p[k]
                } else {
                    -p[j] * p[k]
                };
                close(hv.z[j], h, 1e-15, &format!("H[{j}][{k}]"));
            }
        }
    }
}

/// A struct of parameters: the direction is a struct of the same type, and so are the
/// gradient and `H·v`.
#[derive(Clone, Debug, backprop::Differentiable)]
struct Poly {
    coef: Vec<f64>,
    shift: f64,
}

#[grad]
fn poly(p: &Poly, x: f64) -> f64 {
    let mut y = 0.0;
    for c in p.coef.iter().rev() {
        y = y * (x - p.shift) + c;
    }
    (y * p.shift).sin()
}

#[test]
fn struct_direction() {
    let p = Poly {
        coef: vec![0.5, -1.0, 0.25],
        shift: 0.3,
    };
    let vp = Poly {
        coef: vec![1.0, 0.5, -0.5],
        shift: -2.0,
    };
    let (x, vx) = (0.7, 0.4);
    let (value, g, hv) = poly_hvp(&p, x, &vp, vx);
    assert_eq!(value, poly(&p, x));
    let (_, g_ref) = poly_grad(&p, x);
    assert_eq!(g.x, g_ref.x);
    assert_eq!(g.p.coef, g_ref.p.coef);
    // Central differences of the gradient along (vp, vx).
    let h = 1e-5;
    let shifted = |s: f64| {
        let q = Poly {
            coef: p
                .coef
                .iter()
                .zip(&vp.coef)
                .map(|(c, v)| c + s * v)
                .collect(),
            shift: p.shift + s * vp.shift,
        };
        poly_grad(&q, x + s * vx).1
    };
    let (gp, gm) = (shifted(h), shifted(-h));
    close(hv.x, (gp.x - gm.x) / (2.0 * h), 1e-6, "(Hv)_x");
    close(
        hv.p.shift,
        (gp.p.shift - gm.p.shift) / (2.0 * h),
        1e-6,
        "(Hv)_shift",
    );
    for k in 0..3 {
        close(
            hv.p.coef[k],
            (gp.p.coef[k] - gm.p.coef[k]) / (2.0 * h),
            1e-6,
            "(Hv)_coef",
        );
    }
}

#[grad]
fn norm_sq(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a * a.cos()).sum()
}

#[grad]
fn scaled(x: f64, k: usize, s: f64) -> f64 {
    (x * s).sin() * k as f64
}

/// Calls: another `#[grad]` function on a local buffer, on a view and on a constant
/// buffer; one taking a size; the runtime's activations and `logsumexp`.
#[grad]
fn calls(x: &[f64]) -> f64 {
    let h: Vec<f64> = x.iter().map(|v| v.tanh()).collect();
    let c = [1.0, 2.0];
    let a = norm_sq(&h) + norm_sq(&h[1..3]) * backprop::sigmoid(x[0]) + norm_sq(&c) * x[4];
    let b = scaled(x[1], 3, 0.5) + scaled(0.25, 2, x[2]) + backprop::softplus(x[3] * x[0]);
    let g = backprop::gelu(x[2]) * backprop::silu(x[1]) + backprop::leaky_relu(x[3], 0.1);
    a + b * g + backprop::logsumexp(&h) * backprop::erf(x[4])
}
hvp_along!(calls_along, calls, calls_hvp, calls_grad);

/// `gradcheck!(.., order = 2)`: `H·v` against differences of the gradient along random
/// directions, and `uᵀHv = vᵀHu`.
#[test]
fn gradcheck_order_two() {
    let x = vec![0.5, -1.5, 2.0, 0.3, 1.1];
    let report = backprop::gradcheck!(calls(x = &x), order = 2);
    assert!(report.passed(), "{report}");
    assert_eq!(report.args.len(), 1);
    assert_eq!(report.pairs.len(), 3);
    let report = backprop::gradcheck!(sin_product(a = 0.3, b = 0.7), order = 2);
    assert!(report.passed(), "{report}");
    let report = backprop::gradcheck!(scaled(x = 0.4, k = const 3, s = 1.2), order = 2);
    assert!(report.passed(), "{report}");
    // The report says what an order-2 check compares.
    let text = report.to_string();
    assert!(text.contains("H·v") && text.contains("symmetry"), "{text}");
    assert!(!text.contains("VJP pair"), "{text}");
}

#[grad]
fn sines_f32(x: &[f32], a: f32) -> f32 {
    let mut s = 0.0f32;
    for i in 0..x.len() {
        s += (x[i] * a).sin();
    }
    s * a
}

/// An `f32` function is checked with `f32`'s tolerances at order 2 too: its symmetry
/// `uᵀ(H v) = vᵀ(H u)` holds to f32's round-off (about 1e-7 here), not to 1e-9.
#[test]
fn gradcheck_order_two_in_f32() {
    let x = vec![0.3f32, 0.5, -0.2];
    let report = backprop::gradcheck!(sines_f32(x = &x, a = 0.8f32), order = 2);
    assert!(report.passed(), "{report}");
    assert_eq!(report.order, 2);
    assert_eq!(report.options.symmetry_rtol, 1e-5);
}

/// A wrong Hessian-vector product fails the check, naming the argument.
#[test]
fn gradcheck_order_two_fails_on_a_wrong_product() {
    let at: &[(&str, Vec<f64>)] = &[("x", vec![0.5, -1.5, 2.0])];
    let grad = |p: &[Vec<f64>]| vec![rosenbrock_grad(&p[0]).1.x];
    let wrong = |p: &[Vec<f64>], v: &[Vec<f64>]| {
        let (value, g, hv) = rosenbrock_hvp(&p[0], &v[0]);
        let mut hv = hv.x;
        hv[1] *= 1.001;
        (value, vec![g.x], vec![hv])
    };
    let report = backprop::gradcheck::check_second_order(at, grad, wrong, Default::default());
    assert!(!report.passed());
    assert!(!report.args[0].passed, "{report}");
    let right = |p: &[Vec<f64>], v: &[Vec<f64>]| {
        let (value, g, hv) = rosenbrock_hvp(&p[0], &v[0]);
        (value, vec![g.x], vec![hv.x])
    };
    let report = backprop::gradcheck::check_second_order(at, grad, right, Default::default());
    assert!(report.passed(), "{report}");
}

#[backprop::custom_vjp(softplus_vjp)]
fn softplus_rule(x: f64) -> f64 {
    x.exp().ln_1p()
}
fn softplus_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
    (d * backprop::sigmoid(x),)
}

#[grad]
fn through_custom_rule(x: f64) -> f64 {
    softplus_rule(x) * x
}

/// A hand-written rule declares no second derivative: `f_hvp` says so, it does not
/// guess (its gradient and `f_jvp` still work).
#[test]
#[should_panic(
    expected = "`softplus_rule` is a `#[custom_vjp]` rule, which declares no second derivative"
)]
fn custom_rule_has_no_second_derivative() {
    let (_, g) = through_custom_rule_grad(0.5);
    assert!(g.x.is_finite());
    let _ = through_custom_rule_hvp(0.5, 1.0);
}

/// `2x`, with a hand-written pullback and no second derivative.
#[backprop::custom_vjp(doubled_vjp)]
fn doubled(x: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    x * 2.0
}

fn doubled_vjp(
    _x: &ndarray::Array2<f64>,
    _y: ndarray::Array2<f64>,
    d: ndarray::Array2<f64>,
) -> (ndarray::Array2<f64>,) {
    (d * 2.0,)
}

#[grad]
fn array_code(x: &ndarray::Array2<f64>) -> f64 {
    doubled(x).mapv(|v| v * v).sum()
}

/// ndarray code through a `#[custom_vjp]` rule (which declares no second derivative):
/// its `f_hvp` panics naming the rule.
#[test]
#[should_panic(
    expected = "`doubled` is a `#[custom_vjp]` rule, which declares no second derivative"
)]
fn array_code_through_a_custom_rule_says_it_has_no_hvp() {
    let x = ndarray::array![[1.0, 2.0], [0.5, -1.0]];
    let _ = array_code_hvp(&x, &x);
}

/// A loop whose carried value leaves each iteration as a constant: its tangent's exit is
/// a constant zero (this once sent the activity analysis of the tangent program into a
/// loop that never ended).
#[grad]
fn constant_exit(x: &[f64]) -> f64 {
    let mut s = x[0] * x[1];
    let t = 0.25;
    for _ in 0..3 {
        s = t;
    }
    s * x[2] + x[0] * x[0] * x[1]
}

#[test]
fn loop_with_a_constant_exit() {
    let (value, g, hv) = constant_exit_hvp(&[1.0, 2.0, 3.0], &[1.0, 0.0, 0.0]);
    assert_eq!(value, 0.75 + 2.0);
    assert_eq!(g.x, vec![4.0, 1.0, 0.25]);
    // H e₀ = (2x₁, 2x₀, 0).
    assert_eq!(hv.x, vec![4.0, 2.0, 0.0]);
}

// ---------------------------------------------------------------- directions' shapes

/// A direction of another length than its argument panics naming both, as `f_jvp`'s
/// tangent does (a tryout got a 3-element gradient for a 2-element `x`, or an index out
/// of bounds inside the tangent program).
#[test]
#[should_panic(expected = "hvp: the direction `v_x` has 3 elements, its argument `x` 2")]
fn a_longer_buffer_direction_panics() {
    let _ = rosenbrock_hvp(&[1.0, 1.0], &[1.0, 0.0, 0.0]);
}

#[test]
#[should_panic(expected = "hvp: the direction `v_x` has 1 elements, its argument `x` 2")]
fn a_shorter_buffer_direction_panics() {
    let _ = rosenbrock_hvp(&[1.0, 1.0], &[1.0]);
}

#[test]
#[should_panic(expected = "hvp: the direction `v_p` does not have the shape of its argument `p`")]
fn a_struct_direction_of_another_shape_panics() {
    let p = Poly {
        coef: vec![1.0, 2.0, 3.0],
        shift: 0.5,
    };
    let v = Poly {
        coef: vec![1.0, 0.0],
        shift: 0.0,
    };
    let _ = poly_hvp(&p, 0.3, &v, 0.0);
}

#[grad]
fn power(x: f64, p: f64) -> f64 {
    x.powf(p)
}

#[grad]
fn power_of_one(x: f64) -> f64 {
    x.powf(1.0)
}

/// At a zero base the Hessian of `xᵖ` is its limit, symmetric and finite: for `p = 2`,
/// `∂²/∂x² = 2`, `∂²/∂x∂p = x(1 + 2 ln x) → 0`, `∂²/∂p² = x² ln² x → 0`; for `p = 1`,
/// `∂²/∂x² = 0`. Both gave NaN (`0 · ∞`, `0 · (−∞)`) before.
#[test]
fn power_at_a_zero_base() {
    let h = backprop::hessian(&[0.0, 2.0], |x, v| {
        let hv = power_hvp(x[0], x[1], v[0], v[1]).2;
        vec![hv.x, hv.p]
    });
    assert_eq!(h, ndarray::array![[2.0, 0.0], [0.0, 0.0]]);
    assert_eq!(power_of_one_hvp(0.0, 1.0).2.x, 0.0);
    // Away from 0 the same rules match the hand Hessian.
    let (x, p) = (0.7_f64, 2.5_f64);
    let hv = power_hvp(x, p, 1.0, 0.0).2;
    let dxx = p * (p - 1.0) * x.powf(p - 2.0);
    let dxp = x.powf(p - 1.0) * (1.0 + p * x.ln());
    assert!((hv.x - dxx).abs() < 1e-12 && (hv.p - dxp).abs() < 1e-12);
}
