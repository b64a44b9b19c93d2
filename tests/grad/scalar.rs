//! Scalar `#[grad]` functions: the lesson's worked examples, with hand-computed values.

use backprop::{Pullback, grad, sigmoid};

/// L = (a·b + c)²: d = a·b = 6, e = d + c = 10, L = e² = 100.
/// ∂L/∂e = 2e = 20; ∂L/∂d = ∂L/∂c = 20; ∂L/∂a = 20·b = 60; ∂L/∂b = 20·a = 40.
#[grad]
fn f(a: f64, b: f64, c: f64) -> f64 {
    let d = a * b;
    let e = d + c;
    e * e
}

#[test]
fn worked_example_value_and_gradient() {
    let (l, g) = f_grad(2.0, 3.0, 4.0);
    assert_eq!(l, 100.0);
    assert_eq!((g.a, g.b, g.c), (60.0, 40.0, 20.0));
    assert_eq!(f(2.0, 3.0, 4.0), 100.0);
}

#[test]
fn worked_example_split_form() {
    let (l, tape) = f_forward(2.0, 3.0, 4.0);
    assert_eq!(l, 100.0);
    // The reverse pass reads a and b (for d = a·b) and e (for e²): three f64.
    assert_eq!(tape.bytes(), 24);
    let g = f_backward(tape, 0.5);
    assert_eq!((g.a, g.b, g.c), (30.0, 20.0, 10.0));
}

/// L = (σ(w·x + b) − y)²; closed form ∂L/∂w = 2(p − y)·p(1 − p)·x.
#[grad(w, b)]
fn sigmoid_mse(w: f64, x: f64, b: f64, y: f64) -> f64 {
    let p = sigmoid(w * x + b);
    let e = p - y;
    e * e
}

#[test]
fn sigmoid_mse_closed_form() {
    let (w, x, b, y) = (0.7, -1.3, 0.2, 1.0);
    let (l, g) = sigmoid_mse_grad(w, x, b, y);
    let p = 1.0 / (1.0 + (-(w * x + b)).exp());
    assert!((l - (p - y) * (p - y)).abs() < 1e-15);
    let dz = 2.0 * (p - y) * p * (1.0 - p);
    assert!((g.w - dz * x).abs() < 1e-15, "{} vs {}", g.w, dz * x);
    assert!((g.b - dz).abs() < 1e-15);
}
