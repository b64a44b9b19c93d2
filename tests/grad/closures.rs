//! Closures bound to a local and called: `#[grad]` inlines each call, so every call is
//! differentiated like the code it stands for (hand-derived values and gradchecks).

#![allow(clippy::needless_range_loop, clippy::assign_op_pattern)]

use backprop::grad;

#[grad]
fn called_twice(x: f64, w: f64) -> f64 {
    let act = |z: f64| (w * z).tanh();
    act(x) + act(2.0 * x)
}

#[test]
fn a_closure_called_twice() {
    let (v, g) = called_twice_grad(0.5, 1.5);
    let (t1, t2) = (0.75f64.tanh(), 1.5f64.tanh());
    assert!((v - (t1 + t2)).abs() < 1e-15);
    let (s1, s2) = (1.0 - t1 * t1, 1.0 - t2 * t2);
    assert!((g.x - (1.5 * s1 + 3.0 * s2)).abs() < 1e-12);
    assert!((g.w - (0.5 * s1 + s2)).abs() < 1e-12);
    backprop::gradcheck!(called_twice(x = 0.3, w = -0.8)).assert();
}

#[grad]
fn block_body(x: f64) -> f64 {
    let sq = |a, b| {
        let t = a * b;
        t * t
    };
    sq(x, 3.0) + sq(x, x)
}

#[test]
fn a_closure_with_a_block_body_and_two_parameters() {
    // 9x² + x⁴ at 2: 36 + 16; derivative 18x + 4x³ = 36 + 32.
    assert_eq!(block_body_grad(2.0), (52.0, BlockBodyGrad { x: 68.0 }));
}

#[grad]
fn in_a_loop(x: &[f64], w: f64) -> f64 {
    let term = |i: usize| (x[i] * w).sin();
    let mut s = 0.0;
    for i in 0..x.len() {
        s += term(i) * x[i];
    }
    s
}

#[test]
fn a_closure_reading_a_buffer_called_in_a_loop() {
    let x = [0.2, -0.4, 0.9];
    let w = 1.3;
    let (v, g) = in_a_loop_grad(&x, w);
    let want: f64 = x.iter().map(|xi| (xi * w).sin() * xi).sum();
    assert!((v - want).abs() < 1e-15);
    // ∂w = Σ xᵢ² cos(xᵢ w); ∂xᵢ = w xᵢ cos(xᵢ w) + sin(xᵢ w).
    let dw: f64 = x.iter().map(|xi| xi * xi * (xi * w).cos()).sum();
    assert!((g.w - dw).abs() < 1e-12);
    for (k, xi) in x.iter().enumerate() {
        let d = w * xi * (xi * w).cos() + (xi * w).sin();
        assert!((g.x[k] - d).abs() < 1e-12);
    }
    backprop::gradcheck!(in_a_loop(x = &x.to_vec(), w = 0.7)).assert();
}

#[grad]
fn move_closure_sees_its_copy(x: f64) -> f64 {
    let w = x * 2.0;
    let scale = move |z: f64| z * w;
    let w = 10.0;
    scale(x) + w
}

#[test]
fn shadowing_after_the_closure_keeps_the_captured_value() {
    // 2x² + 10 at 3: 28; derivative 4x = 12.
    assert_eq!(move_closure_sees_its_copy(3.0), 28.0);
    assert_eq!(
        move_closure_sees_its_copy_grad(3.0),
        (28.0, MoveClosureSeesItsCopyGrad { x: 12.0 })
    );
}

#[grad]
fn move_closure_then_reassigned(x: f64) -> f64 {
    let mut w = 2.0;
    let scale = move |z: f64| z * w;
    w = w * x;
    scale(x) + w
}

#[test]
fn reassigning_after_a_move_closure_keeps_the_captured_value() {
    // 2x + 2x at 3: 12; derivative 4.
    assert_eq!(move_closure_then_reassigned(3.0), 12.0);
    assert_eq!(
        move_closure_then_reassigned_grad(3.0),
        (12.0, MoveClosureThenReassignedGrad { x: 4.0 })
    );
}

// Found by the break-it pass: a closure called with arguments that read no local
// (`act(2.0)`) was taken for a constant expression, and ran a `#[grad]` fn of the same
// name instead; a closure reading an earlier binding of its own name was refused; an
// owned array argument consumed by an operator did not compile.
#[grad]
fn act(z: f64) -> f64 {
    z * 100.0
}
#[grad]
fn shadow_fn(x: f64) -> f64 {
    let act = |z: f64| z * x;
    act(2.0) + act(x)
}
#[grad]
fn constant_args(x: f64, w: f64) -> f64 {
    let c = |z: f64| z * x;
    let k = || x * w;
    c(x) + c(2.0) + k() * k()
}
#[grad]
fn reads_own_name(x: f64) -> f64 {
    let f = x * 2.0;
    let f = |z: f64| z * f;
    f(x)
}
#[test]
fn closures_called_with_constant_arguments_and_shadowing() {
    assert_eq!(shadow_fn(0.5), 1.25);
    assert_eq!(shadow_fn_grad(0.5), (1.25, ShadowFnGrad { x: 3.0 }));
    // x² + 2x + x²w²: d/dx = 2x + 2 + 2xw², d/dw = 2x²w.
    let (v, g) = constant_args_grad(1.5, 2.0);
    assert_eq!(v, constant_args(1.5, 2.0));
    assert_eq!((g.x, g.w), (3.0 + 2.0 + 12.0, 9.0));
    assert_eq!(
        reads_own_name_grad(3.0),
        (18.0, ReadsOwnNameGrad { x: 12.0 })
    );
}

#[grad]
fn owned_arr(x: ndarray::Array1<f64>, w: f64) -> ndarray::Array1<f64> {
    x * w
}
#[grad]
fn owned_arr_loss(x: ndarray::Array1<f64>, w: f64) -> f64 {
    (x * w).sum()
}

#[test]
fn owned_array_arguments_consumed_by_operators() {
    let (v, g) = owned_arr_vjp(ndarray::Array1::ones(2), 2.0, ndarray::Array1::ones(2));
    assert_eq!(v, ndarray::array![2.0, 2.0]);
    assert_eq!((g.x, g.w), (ndarray::array![2.0, 2.0], 2.0));
    let (v, g) = owned_arr_loss_grad(ndarray::array![1.0, 3.0], 2.0);
    assert_eq!((v, g.w), (8.0, 4.0));
}

// ---- closures capturing and shadowing active locals -----------------------------------

/// Closures capturing an outer active variable.
#[grad]
fn capturing(x: &[f64]) -> f64 {
    let w = x[0] * 2.0;
    let a: f64 = x.iter().map(|v| v * w).sum();
    let b = x.iter().fold(w, |acc, v| acc * v + w);
    let c: f64 = x.iter().zip(x.iter()).map(|(p, q)| p * q * w).sum();
    a + b + c
}
probe!(p_capturing, capturing, capturing_grad, vec![0.5, -1.5, 2.0]);

/// A closure parameter shadowing an outer local, which is used after.
#[grad]
fn closure_shadows_outer(x: &[f64]) -> f64 {
    let v = x[0] * 3.0;
    let s: f64 = x.iter().map(|v| v * v).sum();
    let t = x.iter().fold(0.0, |v, w| v + w * x[1]);
    let mut u = 0.0;
    for v in x {
        u += v.sin();
    }
    s + v * t + u * v
}
probe!(
    p_closure_shadows_outer,
    closure_shadows_outer,
    closure_shadows_outer_grad,
    vec![0.5, -1.5, 2.0]
);

/// Variance: a closure capturing the active mean.
#[grad]
fn variance(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
}
probe!(
    p_variance,
    variance,
    variance_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Closures with branches, blocks, enumerate + map indexing another buffer, nested zip.
#[grad]
fn closure_forms(x: &[f64]) -> f64 {
    let w = vec![1.0, -2.0, 0.5];
    let a: f64 = x.iter().map(|&v| if v > 0.0 { v } else { 0.1 * v }).sum();
    let b: f64 = x
        .iter()
        .map(|v| {
            let t = v * 2.0;
            t * t
        })
        .sum();
    let c: f64 = x.iter().enumerate().map(|(i, v)| v * w[i] * x[i]).sum();
    let d: f64 = x
        .iter()
        .zip(&w)
        .zip(x.iter())
        .map(|((p, q), r)| p * q * r)
        .sum();
    let e: f64 = x.iter().map(|v| v.max(0.0)).product();
    a + b + c + d + e
}
probe!(
    p_closure_forms,
    closure_forms,
    closure_forms_grad,
    vec![0.5, -0.8, 0.6]
);
