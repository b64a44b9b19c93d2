//! Reproducers from trying to break `#[grad]` on ndarray, each with its answer.

use backprop::grad;
use backprop::ops::sigmoid;
use ndarray::{Array1, Array2, array};

/// `y += x` keeps `y`'s shape: where `x` does not broadcast into it, `f` panics, and so
/// must `f_grad` (not silently compute `y + x` with a bigger shape).
#[grad]
fn grow(x: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let mut y = b.to_owned();
    y += x;
    y.sum()
}

#[test]
#[should_panic(expected = "`y += x`: cannot broadcast 2×3 into 2×1")]
fn compound_assignment_keeps_the_left_shape() {
    let _ = grow_grad(
        &Array2::from_elem((2, 3), 2.0),
        &Array2::from_elem((2, 1), 1.0),
    );
}

#[test]
fn compound_assignment_with_a_broadcast_right_side() {
    // y = b + x with x broadcast into b's 2×3: ∂/∂b = 1, ∂/∂x = 2 (summed over rows).
    let (v, g) = grow_grad(
        &Array2::from_elem((1, 3), 2.0),
        &Array2::from_elem((2, 3), 1.0),
    );
    assert_eq!(v, 18.0);
    assert_eq!(g.b, Array2::from_elem((2, 3), 1.0));
    assert_eq!(g.x, Array2::from_elem((1, 3), 2.0));
}

/// f32 arrays with plain float literals: the rules take the literal in f32.
#[grad]
fn scaled(x: &Array2<f32>) -> f32 {
    (x / 4.0).sum() + (x * 2.0).sum()
}

#[test]
fn f32_arrays_with_literals() {
    let (v, g) = scaled_grad(&Array2::from_elem((2, 2), 4.0));
    assert_eq!(v, 4.0 + 32.0);
    assert_eq!(g.x, Array2::from_elem((2, 2), 0.25 + 2.0));
}

#[grad]
fn inner(x: f64) -> f64 {
    x * x
}

/// A type annotation on a call's result, and a call's (scalar) result mixed with arrays.
#[grad]
fn annotated(x: f64, v: &Array1<f64>) -> f64 {
    let a: f64 = inner(x);
    let s = sigmoid(v);
    (&s * a).sum() + a * 2.0
}

#[test]
fn call_results_in_annotations_and_array_arithmetic() {
    let v = array![0.0, 1.0];
    let (val, g) = annotated_grad(3.0, &v);
    let s: Array1<f64> = v.mapv(|t| 1.0 / (1.0 + (-t).exp()));
    assert!((val - (s.sum() * 9.0 + 18.0)).abs() < 1e-12);
    // ∂/∂x = (Σs + 2)·2x
    assert!((g.x - (s.sum() + 2.0) * 6.0).abs() < 1e-12);
    backprop::gradcheck!(annotated(x = 0.4, v = &v)).assert();
}

/// A block whose value is an array method's result.
#[grad]
fn block_tail(x: &Array2<f64>) -> f64 {
    let z = x * 3.0;
    let y = { z.exp() };
    y.sum()
}

#[test]
fn block_tails_keep_their_values_for_the_tape() {
    let x = array![[0.0, 0.1]];
    let (v, g) = block_tail_grad(&x);
    assert!((v - (1.0 + 0.3f64.exp())).abs() < 1e-12);
    assert!((g.x[[0, 1]] - 3.0 * 0.3f64.exp()).abs() < 1e-12);
}

/// Vector·matrix products.
#[grad]
fn vec_mat(v: &Array1<f64>, a: &Array2<f64>) -> f64 {
    v.dot(a).sum()
}

#[test]
fn vector_matrix_products() {
    let v = array![1.0, 2.0];
    let a = array![[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]];
    let (val, g) = vec_mat_grad(&v, &a);
    // v·a = [7, 2, 2]; ∂/∂v = a·1 = [3, 4]; ∂/∂a = v ⊗ 1.
    assert_eq!(val, 11.0);
    assert_eq!(g.v, array![3.0, 4.0]);
    assert_eq!(g.a, array![[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]);
}

/// `.len()` and shapes of an active array are constants.
#[grad]
fn mean_by_len(x: &Array1<f64>) -> f64 {
    x.sum() / x.len() as f64
}

#[test]
fn lengths_are_constants() {
    let (v, g) = mean_by_len_grad(&array![1.0, 2.0, 3.0, 6.0]);
    assert_eq!(v, 3.0);
    assert_eq!(g.x, array![0.25, 0.25, 0.25, 0.25]);
}
