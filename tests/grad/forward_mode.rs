//! Forward mode (issue 18, part 1): `f_jvp(args.., tangents..)` returns `f`'s value and
//! its directional derivative. Each function is checked three ways: against a value
//! derived by hand where one is short, against the gradient paired with the tangent
//! (`Σ ∂f/∂x · t_x`, which the reverse pass computes independently), and against
//! central differences along the tangent.
#![allow(clippy::needless_range_loop, clippy::float_cmp, clippy::useless_vec)]

use crate::support::close;
use backprop::{Differentiable, custom_vjp, grad, sigmoid};
use ndarray::{Array1, Array2, array};

/// Central differences of `f` along `t`: (f(x + ht) − f(x − ht)) / 2h.
fn fd_along(f: &dyn Fn(&[f64]) -> f64, x: &[f64], t: &[f64]) -> f64 {
    let h = 1e-6;
    let a: Vec<f64> = x.iter().zip(t).map(|(x, t)| x + h * t).collect();
    let b: Vec<f64> = x.iter().zip(t).map(|(x, t)| x - h * t).collect();
    (f(&a) - f(&b)) / (2.0 * h)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

const X: [f64; 5] = [0.5, -1.5, 2.0, 0.3, 1.1];
const T: [f64; 5] = [1.0, 0.5, -2.0, 0.25, -0.75];

#[grad]
fn sin_exp(a: f64, b: f64) -> f64 {
    (a * b).sin() + a.exp()
}

#[test]
fn product_and_exponential_by_hand() {
    let (a, b, ta, tb) = (0.3, 0.7, 1.5, -0.5);
    let (value, tangent) = sin_exp_jvp(a, b, ta, tb);
    assert_eq!(value, sin_exp(a, b));
    // d[sin(ab) + eᵃ] = cos(ab)(b·ta + a·tb) + eᵃ·ta
    let by_hand = (a * b).cos() * (b * ta + a * tb) + a.exp() * ta;
    close(tangent, by_hand, 1e-15, "jvp");
    // One tangent at a time gives each partial derivative.
    let (_, g) = sin_exp_grad(a, b);
    close(sin_exp_jvp(a, b, 1.0, 0.0).1, g.a, 1e-15, "∂/∂a");
    close(sin_exp_jvp(a, b, 0.0, 1.0).1, g.b, 1e-15, "∂/∂b");
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
fn rosenbrock_by_hand() {
    // f = 100(y − x²)² + (1 − x)²; df = 200(y − x²)(t_y − 2x·t_x) − 2(1 − x)·t_x.
    // At (0.5, −1) along (1, 0.5): 200·(−1.25)·(0.5 − 1) − 2·0.5·1 = 125 − 1 = 124.
    let (value, tangent) = rosenbrock_jvp(&[0.5, -1.0], &[1.0, 0.5]);
    assert_eq!(value, 156.5);
    assert_eq!(tangent, 124.0);
}

/// Checks `f_jvp` at `X` along `T` against the gradient and central differences.
macro_rules! along {
    ($test:ident, $f:ident, $fj:ident, $fg:ident) => {
        #[test]
        fn $test() {
            let (value, tangent) = $fj(&X, &T);
            assert_eq!(value.to_bits(), $f(&X).to_bits(), "f_jvp's value is f's");
            let (_, g) = $fg(&X);
            close(tangent, dot(&g.x, &T), 1e-12, "jvp vs gradient·t");
            close(
                tangent,
                fd_along(&|x| $f(x), &X, &T),
                1e-6,
                "jvp vs differences",
            );
        }
    };
}

along!(
    rosenbrock_along,
    rosenbrock,
    rosenbrock_jvp,
    rosenbrock_grad
);

/// Branches in a loop, a local buffer written and read back, a runtime activation.
#[grad]
fn gated(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    for i in 0..x.len() {
        h[i] = if x[i] > 0.0 {
            x[i] * x[i]
        } else {
            sigmoid(x[i])
        };
    }
    let mut acc = 1.0;
    for v in &h {
        acc *= 1.0 + v.tanh();
    }
    acc
}
along!(gated_along, gated, gated_jvp, gated_grad);

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
        s = s * 0.5 + x[k].powf(2.0);
    }
    s
}
along!(jumps_along, jumps, jumps_jvp, jumps_grad);

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
    tail.iter().map(|v| v * v).sum::<f64>() + w[1] * w[0]
}
along!(buffers_along, buffers, buffers_jvp, buffers_grad);

#[grad]
fn norm_sq(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum()
}

#[custom_vjp(softplus_vjp)]
fn softplus_rule(x: f64) -> f64 {
    x.exp().ln_1p()
}
fn softplus_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
    (d * sigmoid(x),)
}

/// Calls: another `#[grad]` function on a local buffer and on a view, a user's
/// `#[custom_vjp]` rule, and a function called with a constant where it differentiates.
#[grad]
fn calls(x: &[f64]) -> f64 {
    let h: Vec<f64> = x.iter().map(|v| v.tanh()).collect();
    let c = [1.0, 2.0];
    norm_sq(&h) + norm_sq(&h[1..3]) * softplus_rule(x[0]) + norm_sq(&c) * x[4]
}
along!(calls_along, calls, calls_jvp, calls_grad);

/// A tangent for a struct of parameters is a struct of the same type.
#[derive(Clone, Debug, Differentiable)]
struct Poly {
    coef: Vec<f64>,
    shift: f64,
}

#[derive(Clone, Debug, Differentiable)]
struct Stack {
    layers: Vec<Poly>,
}

#[grad]
fn poly(p: &Poly, x: f64) -> f64 {
    let mut y = 0.0;
    for c in p.coef.iter().rev() {
        y = y * (x - p.shift) + c;
    }
    y
}

#[grad(s)]
fn stacked(s: &Stack, x: f64) -> f64 {
    let mut h = x;
    for layer in &s.layers {
        h = poly(layer, h).tanh();
    }
    h
}

fn stack_params(s: &Stack) -> Vec<f64> {
    s.layers
        .iter()
        .flat_map(|l| l.coef.iter().copied().chain([l.shift]))
        .collect()
}

fn stack_from(v: &[f64]) -> Stack {
    Stack {
        layers: v
            .chunks(4)
            .map(|c| Poly {
                coef: c[..3].to_vec(),
                shift: c[3],
            })
            .collect(),
    }
}

#[test]
fn structs_and_lists_of_structs() {
    let s = stack_from(&[0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, -0.2]);
    let t = stack_from(&[1.0, -0.5, 0.25, 2.0, -1.0, 0.5, 0.75, -0.25]);
    let (value, tangent) = stacked_jvp(&s, 0.8, &t);
    assert_eq!(value, stacked(&s, 0.8));
    let (_, g) = stacked_grad(&s, 0.8);
    close(
        tangent,
        dot(&stack_params(&g.s), &stack_params(&t)),
        1e-12,
        "vs gradient",
    );
    let f = |v: &[f64]| stacked(&stack_from(v), 0.8);
    close(
        tangent,
        fd_along(&f, &stack_params(&s), &stack_params(&t)),
        1e-6,
        "vs differences",
    );
    // A single struct, by hand: y = Σ cₖ (x − s)ᵏ; ∂y/∂s = −Σ k cₖ (x − s)ᵏ⁻¹.
    let p = Poly {
        coef: vec![1.0, 2.0, 3.0],
        shift: 0.5,
    };
    let tp = Poly {
        coef: vec![0.0, 0.0, 0.0],
        shift: 1.0,
    };
    let (_, dy) = poly_jvp(&p, 2.0, &tp, 0.0);
    assert_eq!(dy, -(2.0 + 2.0 * 3.0 * 1.5));
}

/// A struct taken by value.
#[derive(Clone, Copy, Debug, Differentiable)]
struct Line {
    w: f64,
    b: f64,
}

#[grad(l)]
fn line_loss(l: Line, x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let e = l.w * x[i] + l.b - y[i];
        s += e * e;
    }
    s
}

#[test]
fn struct_by_value() {
    let (x, y) = ([1.0, 2.0], [3.0, 3.0]);
    let l = Line { w: 1.0, b: 0.5 };
    // e = (−1.5, −0.5); ds = Σ 2e(x·t_w + t_b) = 2(−1.5)(1·1 + 1) + 2(−0.5)(2·1 + 1) = −9.
    let (_, tangent) = line_loss_jvp(l, &x, &y, Line { w: 1.0, b: 1.0 });
    assert_eq!(tangent, -9.0);
}

/// Generic floats, at f32 and f64, with an argument held constant (`n`) and one the
/// attribute leaves out (`scale`).
#[grad(x)]
fn generic<T: num_traits::Float>(x: &[T], scale: T, n: usize) -> T {
    let mut s = T::zero();
    for i in 0..n {
        s = s + (x[i] * scale).exp() / T::from(i + 1).unwrap();
    }
    s
}

#[test]
fn generic_floats() {
    let (x, t) = ([0.5_f64, -0.25, 1.0], [1.0_f64, 2.0, -1.0]);
    let (_, d64) = generic_jvp(&x, 0.5, 3, &t);
    let by_hand: f64 = (0..3)
        .map(|i| 0.5 * (x[i] * 0.5).exp() * t[i] / (i + 1) as f64)
        .sum();
    close(d64, by_hand, 1e-15, "f64");
    let (x32, t32) = ([0.5_f32, -0.25, 1.0], [1.0_f32, 2.0, -1.0]);
    let (_, d32) = generic_jvp(&x32, 0.5, 3, &t32);
    assert!((f64::from(d32) - by_hand).abs() < 1e-6, "f32: {d32}");
}

/// Array code (a layer returning an array, called by a loss) has no tangent rules yet:
/// its `f_jvp` is the gradient paired with the tangent, still exact.
#[grad]
fn dense(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    (x.dot(w) + b).tanh()
}

#[grad(w, b)]
fn array_loss(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let h = dense(x, w, b);
    (&h * &h).sum()
}

#[test]
fn array_code_pairs_the_gradient_with_the_tangent() {
    let x = array![[0.5, -1.0], [1.5, 0.25]];
    let w = array![[0.3, -0.2, 0.1], [0.4, 0.5, -0.6]];
    let b = array![0.1, -0.1, 0.2];
    let tw = array![[1.0, 0.0, -1.0], [0.5, 0.25, 2.0]];
    let tb = array![-0.5, 1.0, 0.75];
    let (value, tangent) = array_loss_jvp(&x, &w, &b, &tw, &tb);
    assert_eq!(value, array_loss(&x, &w, &b));
    let h = 1e-6;
    let fd = (array_loss(&x, &(&w + &(h * &tw)), &(&b + &(h * &tb)))
        - array_loss(&x, &(&w - &(h * &tw)), &(&b - &(h * &tb))))
        / (2.0 * h);
    close(tangent, fd, 1e-7, "vs differences");
}

#[test]
#[should_panic(expected = "the tangent of the buffer `x` has 2 elements, its argument 5")]
fn a_tangent_of_the_wrong_length_is_named() {
    let _ = rosenbrock_jvp(&X, &[1.0, 2.0]);
}

#[grad]
fn root_plus(a: f64, b: f64) -> f64 {
    a.sqrt() + b
}

#[grad]
fn root_sum(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in x {
        s += v.sqrt();
    }
    s
}

/// A zero tangent through an infinite local derivative (√a at a = 0) contributes 0, not
/// the NaN of 0 · ∞: the tangent pass runs again with strong zeros when the plain one
/// gives NaN, as `f_grad` does, and a tangent that does move `a` there is infinite.
#[test]
fn zero_tangents_stay_zero_through_infinite_derivatives() {
    assert_eq!(root_plus_jvp(0.0, 2.0, 0.0, 1.0), (2.0, 1.0));
    assert_eq!(root_plus_jvp(0.0, 2.0, 1.0, 1.0).1, f64::INFINITY);
    assert_eq!(root_sum_jvp(&[0.0, 4.0], &[0.0, 1.0]), (2.0, 0.25));
}

#[test]
#[should_panic(expected = "the tangent's `layers.1.coef` has 2 elements, the argument's 3")]
fn a_struct_tangent_of_another_shape_is_named() {
    let s = stack_from(&[0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, -0.2]);
    let mut t = s.clone();
    t.layers[1].coef.pop();
    let _ = stacked_jvp(&s, 0.8, &t);
}

#[test]
#[should_panic(expected = "the tangent's `layers` has 1 elements, the argument's 2")]
fn a_struct_tangent_with_a_shorter_list_is_named() {
    let s = stack_from(&[0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, -0.2]);
    let mut t = s.clone();
    t.layers.pop();
    let _ = stacked_jvp(&s, 0.8, &t);
}

#[grad]
fn array_root(w: &Array1<f64>, a: f64) -> f64 {
    w.mapv(|v| v.sqrt()).sum() + a.sqrt()
}

#[custom_vjp(csqrt_vjp)]
fn csqrt(x: f64) -> f64 {
    x.sqrt()
}
fn csqrt_vjp(_x: f64, y: f64, d: f64) -> (f64,) {
    (d * 0.5 / y,)
}

#[grad]
fn custom_root(a: f64, b: f64) -> f64 {
    csqrt(a) + b
}

/// The same convention where `f_jvp` pairs the gradient with the tangent (array code)
/// and through a `#[custom_vjp]` rule: a zero tangent skips an infinite partial.
#[test]
fn zero_tangents_stay_zero_when_the_gradient_is_paired() {
    let (_, t) = array_root_jvp(&array![0.0, 4.0], 0.0, &array![0.0, 1.0], 0.0);
    assert_eq!(t, 0.25);
    assert_eq!(custom_root_jvp(0.0, 1.0, 0.0, 1.0), (1.0, 1.0));
    assert!(
        array_root_jvp(&array![0.0, 4.0], 1.0, &array![1.0, 0.0], 0.0)
            .1
            .is_infinite()
    );
}

/// A slice of structs as the argument: its tangent is a slice of the same structs.
#[grad(layers)]
fn through_list(layers: &[Poly], x: f64) -> f64 {
    let mut h = x;
    for layer in layers {
        h = poly(layer, h);
    }
    h
}

#[test]
fn a_slice_of_structs() {
    let s = stack_from(&[0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, -0.2]);
    let t = stack_from(&[1.0, -0.5, 0.25, 2.0, -1.0, 0.5, 0.75, -0.25]);
    let (value, tangent) = through_list_jvp(&s.layers, 0.8, &t.layers);
    assert_eq!(value, through_list(&s.layers, 0.8));
    let (_, g) = through_list_grad(&s.layers, 0.8);
    let g = Stack { layers: g.layers };
    close(
        tangent,
        dot(&stack_params(&g), &stack_params(&t)),
        1e-12,
        "vs gradient",
    );
}

#[test]
#[should_panic(expected = "the tangent's list has 1 elements, the argument's 2")]
fn a_slice_tangent_of_another_length_is_named() {
    let s = stack_from(&[0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, -0.2]);
    let _ = through_list_jvp(&s.layers, 0.8, &s.layers[..1]);
}

/// Each runtime function's `jvp` companion (the rule at `d = 1` times the tangent),
/// through a function that calls them all, against the gradient and central differences.
#[grad]
fn runtime_functions(x: &[f64]) -> f64 {
    backprop::sigmoid(x[0])
        + backprop::relu(x[1] * x[2])
        + backprop::leaky_relu(x[1], 0.1) * backprop::gelu(x[2])
        + backprop::softplus(x[3]) * backprop::silu(x[4])
        + backprop::erf(x[0]) * backprop::erfc(x[3])
        + backprop::logsumexp(x)
        + backprop::logsumexp(&x[1..4]) * x[4]
}
along!(
    runtime_functions_along,
    runtime_functions,
    runtime_functions_jvp,
    runtime_functions_grad
);
