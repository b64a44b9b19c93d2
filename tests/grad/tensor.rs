//! `#[grad]` on ndarray: the lesson's linear + ReLU example with exact values, softmax +
//! cross-entropy's gradient (p − one_hot(y))/B, broadcasting, views and transposes,
//! reductions, and a two-layer MLP against central differences.

use backprop::ops::{XentOptions, relu, softmax_cross_entropy};
use backprop::{Pullback, grad, gradcheck};
use ndarray::{Array1, Array2, ArrayView2, Axis, array};

/// L = Σ relu(X·W): the lesson's linear + ReLU layer.
#[grad(w)]
fn linear_relu_sum(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let z = x.dot(w);
    relu(&z).sum()
}

#[test]
fn lesson_linear_relu_exact() {
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let w = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    // Z = XW = [[4, 5], [10, 11]], all positive: L = 30, ∂L/∂W = Xᵀ·1 = [[5,5],[7,7],[9,9]].
    assert_eq!(x.dot(&w), array![[4.0, 5.0], [10.0, 11.0]]);
    let (l, g) = linear_relu_sum_grad(&x, &w);
    assert_eq!(l, 30.0);
    assert_eq!(g.w, array![[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]);
}

/// Both sides active: ∂L/∂X = 1·Wᵀ = [[1,1,2],[1,1,2]].
#[grad]
fn linear_relu_sum_both(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    relu(&x.dot(w)).sum()
}

#[test]
fn lesson_linear_relu_input_gradient() {
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let w = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let (_, g) = linear_relu_sum_both_grad(&x, &w);
    assert_eq!(g.x, array![[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]);
    assert_eq!(g.w, array![[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]);
}

#[grad(logits)]
fn ce(logits: &Array2<f64>, labels: &[usize]) -> f64 {
    softmax_cross_entropy(logits, labels, XentOptions::default())
}

#[test]
fn softmax_cross_entropy_gradient_is_p_minus_one_hot_over_b() {
    let logits = array![[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]];
    let labels = [1, 0];
    let (_, g) = ce_grad(&logits, &labels);
    for (i, row) in logits.rows().into_iter().enumerate() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for (j, v) in row.iter().enumerate() {
            let p = (v - m).exp() / z;
            let expected = (p - if j == labels[i] { 1.0 } else { 0.0 }) / 2.0;
            assert!(
                (g.logits[[i, j]] - expected).abs() < 1e-15,
                "row {i} col {j}"
            );
        }
    }
}

/// A bias row broadcast over the batch: its gradient sums over the batch axis.
#[grad(w, b)]
fn affine_mse(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>, t: &Array2<f64>) -> f64 {
    let y = x.dot(w) + b;
    let e = &y - t;
    (&e * &e).mean().unwrap()
}

#[test]
fn broadcast_bias_gradient_sums_over_the_batch() {
    let x = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let w = array![[0.5, -1.0], [0.25, 2.0]];
    let b = array![0.1, -0.2];
    let t = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let (_, g) = affine_mse_grad(&x, &w, &b, &t);
    // ∂L/∂b = Σ_rows 2(y − t)/N with N = 6 elements.
    let y = x.dot(&w) + &b;
    let expected_b = ((&y - &t) * (2.0 / 6.0)).sum_axis(Axis(0));
    assert!(
        (&g.b - &expected_b).iter().all(|d| d.abs() < 1e-14),
        "{} vs {}",
        g.b,
        expected_b
    );
    gradcheck!(affine_mse(x = const &x, w = &w, b = &b, t = const &t)).assert();
}

/// Views, a transpose, scalar-array arithmetic, elementwise exp and tanh, sum_axis.
#[grad(a)]
fn views_and_reductions(a: ArrayView2<'_, f64>, c: f64) -> f64 {
    let at = a.t();
    let s = (at.dot(&a) * c).tanh();
    let r = s.sum_axis(Axis(1));
    (r.exp() / 3.0).sum() + (&a * 2.0).mean().unwrap()
}

#[test]
fn views_transposes_and_reductions_match_central_differences() {
    let a0 = array![[0.3, -0.2, 0.1], [0.05, 0.4, -0.3]];
    let report = gradcheck!(views_and_reductions(a = const a0.view(), c = const 0.7));
    // `a` is an ArrayView2: gradcheck! passes `&Array2` which derefs through `.view()`.
    assert!(report.passed(), "{report}");
}

/// A two-layer MLP: L = CE(relu(X·W1 + b1)·W2 + b2, y).
#[grad(w1, b1, w2, b2)]
fn mlp(
    x: &Array2<f64>,
    labels: &[usize],
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
) -> f64 {
    let h = relu(&(x.dot(w1) + b1));
    let logits = h.dot(w2) + b2;
    softmax_cross_entropy(&logits, labels, XentOptions::default())
}

#[test]
fn two_layer_mlp_matches_central_differences() {
    let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f64 * 0.37).sin());
    let w1 = Array2::from_shape_fn((4, 6), |(i, j)| ((i * 6 + j) as f64 * 0.71).cos() * 0.5);
    let b1 = Array1::from_shape_fn(6, |j| 0.05 * j as f64 - 0.1);
    let w2 = Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j) as f64 * 1.3).sin() * 0.5);
    let b2 = array![0.1, 0.0, -0.1];
    let labels = [0, 2, 1, 1, 0];
    let report = gradcheck!(mlp(x = const &x, labels = const &labels, w1 = &w1, b1 = &b1, w2 = &w2, b2 = &b2));
    assert!(report.passed(), "{report}");
    assert!(report.worst_abs_err() < 1e-8, "{report}");
    // The tape borrows x, w1, w2 and keeps what the rules read; it holds no copy of x.
    let (_, tape) = mlp_forward(&x, &labels, &w1, &b1, &w2, &b2);
    assert!(
        tape.bytes() < 5 * 6 * 8 * 2 + 512,
        "tape is {} bytes",
        tape.bytes()
    );
}

#[test]
#[should_panic(expected = "`a + b`: cannot broadcast 2×3 with 4")]
fn broadcast_mismatch_names_both_shapes() {
    #[grad]
    fn bad(a: &Array2<f64>, b: &Array1<f64>) -> f64 {
        (a + b).sum()
    }
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array1::<f64>::zeros(4);
    let _ = bad_grad(&a, &b);
}
