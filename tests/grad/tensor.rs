//! `#[grad]` on ndarray: the lesson's linear + ReLU example with exact values, softmax +
//! cross-entropy's gradient (p − one_hot(y))/B, broadcasting, views and transposes,
//! reductions, and a two-layer MLP against central differences; then reproducers from a
//! break-it pass on arrays (fixed in c39f699), each with its answer.

use backprop::ops::{XentOptions, relu, sigmoid, softmax_cross_entropy};
use backprop::{Pullback, grad, gradcheck};
use ndarray::{Array1, Array2, Array3, Array4, ArrayView2, Axis, array};

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
#[should_panic(expected = "`a + b`: cannot broadcast lhs 2×3 with rhs 4")]
fn broadcast_mismatch_names_both_shapes() {
    #[grad]
    fn bad(a: &Array2<f64>, b: &Array1<f64>) -> f64 {
        (a + b).sum()
    }
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array1::<f64>::zeros(4);
    let _ = bad_grad(&a, &b);
}

// ---- compound assignment, literals, calls, blocks and shapes on arrays ----------------

/// `y += x` keeps `y`'s shape: where `x` does not broadcast into it, `f` panics, and so
/// must `f_grad` (not silently compute `y + x` with a bigger shape).
/// Pins: `f_grad` computed `y + x` with a bigger shape (c39f699).
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
/// Pins: f32 arrays with float literals did not compile (c39f699).
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
/// Pins: type annotations on calls, and call results that may be scalars borrowed (c39f699).
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
/// Pins: a block tail's value was not kept for the tape (c39f699).
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
/// Pins: vector·matrix `dot` (c39f699).
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
/// Pins: `len`/`shape` of an active array were not constants (c39f699).
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

// ---------------------------------------------------------------- batched matmul

/// `½ Σ y²` of a batched linear map `y = x·w` over `[B, T, d]`.
#[grad]
fn batched_linear(x: &Array3<f64>, w: &Array2<f64>) -> f64 {
    let y = backprop::ops::matmul(x, w);
    (&y * &y).sum() / 2.0
}

#[test]
fn batched_matmul_by_hand() {
    // x = [[[1, 2]], [[5, 6]]] (2×1×2), w = [[3], [4]]: y = [[[11]], [[39]]],
    // L = (11² + 39²)/2 = 821, d_y = y, d_x = d_y·wᵀ = [[[33, 44]], [[117, 156]]],
    // d_w = Σ_b x_bᵀ·d_y_b = [[1·11 + 5·39], [2·11 + 6·39]] = [[206], [256]].
    let x = ndarray::array![[[1.0, 2.0]], [[5.0, 6.0]]];
    let w = ndarray::array![[3.0], [4.0]];
    let (v, g) = batched_linear_grad(&x, &w);
    assert_eq!(v, 821.0);
    assert_eq!(g.x, ndarray::array![[[33.0, 44.0]], [[117.0, 156.0]]]);
    assert_eq!(g.w, ndarray::array![[206.0], [256.0]]);
    backprop::gradcheck!(batched_linear(x = &x, w = &w)).assert();
}

/// Scaled dot-product attention over `[B, H, T, d]` written with batched products, as
/// a user writes it from the paper.
#[grad(q, k, v)]
fn attention_by_matmul(q: &Array4<f64>, k: &Array4<f64>, v: &Array4<f64>, w: &Array4<f64>) -> f64 {
    let (_, _, _, dh) = q.dim();
    let scores =
        backprop::ops::matmul(q, &k.view().permuted_axes([0, 1, 3, 2])) / (dh as f64).sqrt();
    let p = backprop::ops::softmax(&scores);
    let o = backprop::ops::matmul(&p, v);
    (o * w).sum()
}

#[grad(q, k, v)]
fn attention_fused(q: &Array4<f64>, k: &Array4<f64>, v: &Array4<f64>, w: &Array4<f64>) -> f64 {
    (backprop::ops::attention(q, k, v, false) * w).sum()
}

#[test]
fn attention_by_batched_matmul_matches_the_fused_op() {
    let mut rng = crate::rng::Rng(41);
    let q: Array4<f64> = rng.array_map((2, 3, 4, 5), |v| v);
    let k: Array4<f64> = rng.array_map((2, 3, 4, 5), |v| v);
    let v: Array4<f64> = rng.array_map((2, 3, 4, 5), |v| v);
    let w: Array4<f64> = rng.array_map((2, 3, 4, 5), |v| v);
    let (l, g) = attention_by_matmul_grad(&q, &k, &v, &w);
    let (lf, gf) = attention_fused_grad(&q, &k, &v, &w);
    assert!((l - lf).abs() < 1e-12, "{l} vs {lf}");
    for (name, a, b) in [("q", &g.q, &gf.q), ("k", &g.k, &gf.k), ("v", &g.v, &gf.v)] {
        let worst = (a - b).iter().fold(0.0f64, |m, e| m.max(e.abs()));
        assert!(worst < 1e-12, "d_{name}: worst difference {worst}");
    }
    backprop::gradcheck!(attention_by_matmul(q = &q, k = &k, v = &v, w = const &w)).assert();
}

// ---------------------------------------------------------------- gradient layout

/// PyTorch's layout of a linear layer, `x·wᵀ` with `w: [out, in]`, and a permuted
/// 3-D argument: their gradients come back in row-major order, so an optimizer, clipping
/// and `Params` take them as they are (a tryout found `g.w` column-major, and
/// `Sgd::step` panicked on it).
#[grad(w, u)]
fn linear_transposed_weight(x: &Array2<f64>, w: &Array2<f64>, u: &Array3<f64>) -> f64 {
    let h = x.dot(&w.t());
    let v = u.view().permuted_axes([2, 0, 1]);
    (&h * &h).sum() + (&v * &v.mapv(f64::sin)).sum()
}

#[test]
fn gradients_of_transposed_arguments_are_row_major() {
    use backprop::optim::{Optimizer, Sgd, SgdConfig};
    let x = array![[1.0, -1.0, 0.5], [0.3, 0.2, 0.1]];
    let w = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let u = Array3::from_shape_fn((2, 3, 2), |(i, j, k)| {
        0.1 * (i + 2 * j) as f64 - 0.2 * k as f64
    });
    let (_, g) = linear_transposed_weight_grad(&x, &w, &u);
    assert!(g.w.is_standard_layout() && g.u.is_standard_layout());
    // ∂/∂w of Σ (x·wᵀ)² is 2·(x·wᵀ)ᵀ·x.
    let h = x.dot(&w.t());
    assert_eq!(g.w, 2.0 * h.t().dot(&x));
    for ((i, j, k), d) in g.u.indexed_iter() {
        let v = u[[i, j, k]];
        assert!((d - (v.sin() + v * v.cos())).abs() < 1e-15);
    }
    let mut w2 = w.clone();
    Sgd::<f64>::new(SgdConfig {
        lr: 0.5,
        ..Default::default()
    })
    .step(&mut w2, &g.w)
    .unwrap();
    assert_eq!(w2, &w - &(0.5 * &g.w));
    gradcheck!(linear_transposed_weight(x = const &x, w = &w, u = &u)).assert();
}

/// An owned array times a view taken by value (`x.to_owned() * y`, valid ndarray): the
/// macro borrows the owned operand for the tape, so it lends the view too. Pins: E0277
/// on `&t0 * y` in the generated code.
#[grad]
fn owned_times_view(x: &Array2<f64>, y: ArrayView2<f64>) -> f64 {
    let v = x.view();
    let p = x.to_owned() * y;
    let q = p.clone() + v;
    (&p * &q).sum()
}

#[test]
fn an_owned_array_times_a_view_by_value() {
    let x = array![[1.0, 2.0], [-1.0, 0.5]];
    let y = array![[3.0, 4.0], [0.25, -2.0]];
    let (v, g) = owned_times_view_grad(&x, y.view());
    // p = x∘y, q = p + x: f = Σ p² + p∘x = Σ x²y² + x²y, so
    // ∂f/∂x = y∘(2p + x) + p and ∂f/∂y = x∘(2p + x).
    let p = &x * &y;
    let near = |a: &Array2<f64>, b: &Array2<f64>| (a - b).iter().all(|d| d.abs() < 1e-14);
    assert!((v - (&p * &(&p + &x)).sum()).abs() < 1e-14);
    assert!(near(&g.x, &(&y * &(2.0 * &p + &x) + &p)), "{}", g.x);
    assert!(near(&g.y, &(&x * &(2.0 * &p + &x))), "{}", g.y);
}

/// A 1-D·1-D `dot` is a float: an array times it compiles (the macro borrowed it as an
/// array: E0277 `&f64: ScalarOperand`). f = Σ a·(a·b), ∂a = (a·b) + (Σa)·b, ∂b = (Σa)·a.
#[grad]
fn scaled_by_a_dot(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let s = a.dot(b);
    (a * s).sum()
}

#[test]
fn an_array_times_a_vector_dot_product() {
    let (a, b) = (array![1.0, 2.0], array![0.5, -1.0]);
    let (v, g) = scaled_by_a_dot_grad(&a, &b);
    assert_eq!(v, -4.5);
    assert_eq!(g.a, array![0.0, -4.5]);
    assert_eq!(g.b, array![3.0, 6.0]);
}
