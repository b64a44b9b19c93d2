//! Scalar `#[grad]` functions: the lesson's worked examples, calls with side effects and
//! integer powers, with hand-computed values.

use backprop::{Pullback, grad, sigmoid};
use std::cell::Cell;

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

// ---- calls with effects, evaluated where they stand -----------------------------------

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static SCALE: Cell<f64> = const { Cell::new(1.0) };
}

fn next_weight() -> f64 {
    CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get() as f64
    })
}

fn reset() {
    CALLS.with(|c| c.set(0));
}

fn set_scale(v: f64) {
    SCALE.with(|s| s.set(v));
}

fn scale() -> f64 {
    SCALE.with(|s| s.get())
}

/// An impure constant is evaluated once, where it stands: w = 1, d/dx = 1.
/// Pins: impure constants were evaluated more than once and out of order (bf5618a).
#[grad]
fn impure(x: f64) -> f64 {
    x * next_weight()
}

/// Order of evaluation is kept: next() − x·next() = 1 − 2x at the first call.
#[grad]
fn ordered(x: f64) -> f64 {
    next_weight() - x * next_weight()
}

#[test]
fn constants_with_effects_run_once_in_order() {
    reset();
    let (v, g) = impure_grad(3.0);
    assert_eq!((v, g.x), (3.0, 1.0));
    reset();
    let (v, g) = ordered_grad(3.0);
    assert_eq!((v, g.x), (1.0 - 3.0 * 2.0, -2.0));
    reset();
    assert_eq!(ordered(3.0), -5.0);
}

/// Statements that mention no local still run: set_scale(3) then x·scale() = 3x.
/// Pins: statements that mention no local were dropped (bf5618a).
#[grad]
fn side_effect_statement(x: f64) -> f64 {
    set_scale(3.0);
    let _ = scale();
    let w = scale();
    x * w
}

#[test]
fn statements_without_locals_are_kept() {
    set_scale(1.0);
    let (v, g) = side_effect_statement_grad(2.0);
    assert_eq!((v, g.x), (6.0, 3.0));
}

// ---- integer powers -------------------------------------------------------------------

/// powi at i32::MIN must not overflow computing n − 1 (d/dx = n·xⁿ⁻¹ = 0 here: x = 1
/// gives n·1 = i32::MIN as a float).
/// Pins: powi at i32::MIN overflowed (bf5618a).
#[grad]
fn powi_min(x: f64) -> f64 {
    x.powi(i32::MIN)
}

#[test]
fn powi_at_i32_min_does_not_overflow() {
    let (v, g) = powi_min_grad(1.0);
    assert_eq!((v, g.x), (1.0, i32::MIN as f64));
}
