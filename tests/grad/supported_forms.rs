//! Forms README's "What is supported" lists that once failed to compile or gave a value
//! other than `f`'s (issue 13's fuzzer findings), each with hand-derived values.

#![allow(clippy::useless_vec, clippy::assign_op_pattern)]

use backprop::grad;
use ndarray::{Array1, Array2, array};

#[grad]
fn weighted_sum(x: &[f64], a: f64) -> f64 {
    let mut s = 0.0;
    for v in x {
        s += v * a;
    }
    s
}

/// An owned `Vec` argument lent to a call with a rule (the call is checkpointed).
#[grad]
fn owned_vec_by_reference(x: Vec<f64>, a: f64) -> f64 {
    weighted_sum(&x, a) * x[0]
}

#[test]
fn owned_buffer_argument_passed_by_reference() {
    // (a·Σx)·x0: ∂x0 = a·x0 + a·Σx, ∂x1 = a·x0, ∂a = Σx·x0.
    let (v, g) = owned_vec_by_reference_grad(vec![1.0, 2.0], 3.0);
    assert_eq!(v, 9.0);
    assert_eq!(g.x, vec![12.0, 3.0]);
    assert_eq!(g.a, 3.0);
    backprop::gradcheck!(owned_vec_by_reference(x = vec![0.3, -1.2, 0.8], a = 0.7)).assert();
}

/// An owned array argument lent to `backprop::logsumexp`.
#[grad]
fn owned_array_logsumexp(x: [f64; 3]) -> f64 {
    backprop::logsumexp(&x)
}

#[test]
fn owned_array_to_logsumexp() {
    let (v, g) = owned_array_logsumexp_grad([0.0, 0.0, 0.0]);
    assert!((v - 3f64.ln()).abs() < 1e-15);
    for d in &g.x {
        assert!((d - 1.0 / 3.0).abs() < 1e-15);
    }
}

/// A `vec![..]` literal whose later element is an iterator reduction, then written.
#[grad]
fn literal_with_reduction(x: &[f64]) -> f64 {
    let mut h = vec![x[0], x.iter().sum::<f64>()];
    h[0] = h[0] * 2.0;
    h[0] * h[1]
}

#[test]
fn vec_literal_with_a_reduction_then_written() {
    // 2·x0·(x0 + x1): ∂x0 = 4·x0 + 2·x1, ∂x1 = 2·x0.
    let (v, g) = literal_with_reduction_grad(&[1.5, -0.5]);
    assert_eq!(v, 3.0);
    assert_eq!(g.x, vec![5.0, 3.0]);
}

/// `return` inside a loop whose value is bound.
#[grad]
fn return_in_value_loop(x: f64) -> f64 {
    let mut y = x;
    let r = loop {
        y = y * 0.5;
        if y < 1.0 {
            return y * 3.0;
        }
        if y < 4.0 {
            break y * y;
        }
    };
    r + 1.0
}

#[test]
fn return_inside_a_loop_whose_value_is_bound() {
    // x = 10: y = 5, 2.5 → break 6.25 → 7.25; d/dx = 2·(x/4)·(1/4) = x/8.
    let (v, g) = return_in_value_loop_grad(10.0);
    assert_eq!((v, g.x), (7.25, 1.25));
    // x = 1.5: y = 0.75 < 1 → return 2.25; d/dx = 1.5.
    let (v, g) = return_in_value_loop_grad(1.5);
    assert_eq!((v, g.x), (2.25, 1.5));
    assert_eq!(return_in_value_loop(10.0), 7.25);
}

/// `let v = if c { return r; } else { e };`: an early return with the value bound.
#[grad]
fn return_in_let_if(x: f64) -> f64 {
    let v = if x < 0.0 {
        return 0.5 * x;
    } else {
        x * x
    };
    let w = if x > 5.0 { x } else { return v + 1.0 };
    w * v
}

#[test]
fn return_inside_a_bound_if() {
    assert_eq!(return_in_let_if_grad(-2.0).1.x, 0.5);
    let (v, g) = return_in_let_if_grad(2.0);
    assert_eq!((v, g.x), (5.0, 4.0));
    let (v, g) = return_in_let_if_grad(6.0);
    assert_eq!((v, g.x), (216.0, 108.0));
}

/// `powi` on an ndarray array.
#[grad]
fn powi_on_array(x: &Array1<f64>) -> f64 {
    x.powi(3).sum()
}

#[test]
fn powi_on_arrays() {
    let (v, g) = powi_on_array_grad(&array![1.0, -2.0]);
    assert_eq!(v, -7.0);
    assert_eq!(g.x, array![3.0, 12.0]);
}

/// An empty statement.
#[grad]
fn empty_statement(x: f64) -> f64 {
    #[allow(redundant_semicolons)]
    let y = x * 2.0;
    y * x
}

#[test]
fn empty_statements_are_nothing() {
    assert_eq!(
        empty_statement_grad(3.0),
        (18.0, EmptyStatementGrad { x: 12.0 })
    );
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Train,
    Eval,
}

/// An enum argument under a bare `#[grad]` is a constant, as an integer is.
#[grad]
fn with_mode(x: f64, mode: Mode) -> f64 {
    match mode {
        Mode::Train => x * 2.0,
        Mode::Eval => x * 3.0,
    }
}

#[grad]
fn with_mode_compared(x: f64, mode: Mode) -> f64 {
    if mode == Mode::Train { x * x } else { x }
}

#[test]
fn enum_arguments_are_constants() {
    let (v, g) = with_mode_grad(1.0, Mode::Train);
    assert_eq!((v, g.x), (2.0, 2.0));
    let (v, g) = with_mode_grad(1.0, Mode::Eval);
    assert_eq!((v, g.x), (3.0, 3.0));
    assert_eq!(with_mode_compared_grad(3.0, Mode::Train).1.x, 6.0);
    assert_eq!(with_mode_compared_grad(3.0, Mode::Eval).1.x, 1.0);
}

/// An empty `.sum()` is −0.0 in std; `f_grad`'s value is `f`'s bit for bit.
#[grad]
fn empty_sum(x: &[f64], a: f64) -> f64 {
    let s: f64 = x.iter().sum();
    a * s.atan2(-1.0)
}

#[grad]
fn empty_sum_generic<T: num_traits::Float + std::iter::Sum>(x: &[T], a: T) -> T {
    let s: T = x.iter().copied().sum();
    a * s.atan2(-T::one())
}

#[test]
fn empty_sum_keeps_the_sign_of_zero() {
    let f = empty_sum(&[], 2.0);
    assert_eq!(f, -2.0 * std::f64::consts::PI);
    let (v, g) = empty_sum_grad(&[], 2.0);
    assert_eq!(v.to_bits(), f.to_bits());
    assert_eq!(g.a.to_bits(), (-std::f64::consts::PI).to_bits());
    let (v, _) = empty_sum_generic_grad::<f32>(&[], 2.0);
    assert_eq!(v.to_bits(), empty_sum_generic::<f32>(&[], 2.0).to_bits());
    // A non-empty sum is unchanged.
    let (v, g) = empty_sum_grad(&[0.5, 0.25], 1.0);
    assert_eq!(v, empty_sum(&[0.5, 0.25], 1.0));
    assert_eq!(g.x.len(), 2);
}

/// A scalar made from an array's shape divides an array (`/ d.sqrt()`, attention's scale).
#[grad(q, k)]
fn scaled_scores(q: &ndarray::Array2<f64>, k: &ndarray::Array2<f64>) -> f64 {
    let d = q.ncols() as f64;
    let s = q.dot(&k.t()) / d.sqrt();
    s.sum()
}

#[test]
fn a_local_scalar_from_a_shape_scales_an_array() {
    let q = array![[1.0, 2.0], [3.0, 4.0]];
    let k = array![[0.5, -1.0], [2.0, 1.0]];
    // Σ qkᵀ/√2 = (Σᵢ qᵢ)·(Σⱼ kⱼ)/√2 = [4, 6]·[2.5, 0]/√2; ∂qᵢ = Σⱼ kⱼ/√2, ∂kⱼ = Σᵢ qᵢ/√2.
    let r = std::f64::consts::FRAC_1_SQRT_2;
    let (v, g) = scaled_scores_grad(&q, &k);
    assert!((v - 10.0 * r).abs() < 1e-14);
    let (dq, dk) = (array![2.5 * r, 0.0], array![4.0 * r, 6.0 * r]);
    for row in g.q.rows() {
        assert!((&row - &dq).iter().all(|e| e.abs() < 1e-14), "{row}");
    }
    for row in g.k.rows() {
        assert!((&row - &dk).iter().all(|e| e.abs() < 1e-14), "{row}");
    }
}

/// `let (n, d) = x.dim();` destructures data.
#[grad(w)]
fn mean_of_product(x: &ndarray::Array2<f64>, w: &ndarray::Array2<f64>) -> f64 {
    let (n, d) = x.dim();
    let y = x.dot(w);
    y.sum() / (n * d) as f64
}

#[test]
fn tuple_of_dimensions() {
    let x = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let w = array![[1.0], [2.0]];
    // Σ xw / 6 = 33/6; ∂w = Σ_rows x / 6 = [9, 12]/6.
    let (v, g) = mean_of_product_grad(&x, &w);
    assert_eq!(v, 5.5);
    assert_eq!(g.w, array![[1.5], [2.0]]);
}

/// `&ids[1..]`: a sub-slice of integer labels is data.
#[grad]
fn gather_rest(x: &[f64], ids: &[usize]) -> f64 {
    let rest = &ids[1..];
    let mut s = 0.0;
    for &i in rest {
        s += x[i] * x[i];
    }
    s
}

#[test]
fn sub_slice_of_labels() {
    let (v, g) = gather_rest_grad(&[1.0, 2.0, 3.0], &[0, 2, 2, 1]);
    assert_eq!(v, 9.0 + 9.0 + 4.0);
    assert_eq!(g.x, vec![0.0, 4.0, 12.0]);
}

/// `zip(&x)` over an owned buffer argument (the random programs' finding): `&x` of a
/// named buffer iterates `x` itself, not a local reference captured beside `x`.
#[grad]
fn zip_owned_by_reference(x: Vec<f64>) -> f64 {
    let h = x.to_vec();
    h.iter().zip(&x).map(|(p, q)| p * q).sum::<f64>()
}

#[grad]
fn zip_owned_array_in_a_loop(x: [f64; 2]) -> f64 {
    let mut s = 0.0;
    for (p, q) in x.iter().zip(&x) {
        s += p * q * q;
    }
    s
}

#[test]
fn zip_over_an_owned_argument_by_reference() {
    // Σ x²: ∂ = 2x; Σ x³: ∂ = 3x².
    let (v, g) = zip_owned_by_reference_grad(vec![1.5, -2.0]);
    assert_eq!((v, g.x), (6.25, vec![3.0, -4.0]));
    let (v, g) = zip_owned_array_in_a_loop_grad([1.5, -2.0]);
    assert_eq!((v, g.x), (3.375 - 8.0, vec![6.75, 12.0]));
}

/// A buffer shadowed by `let` after an early `return` (from an `if` or from a loop):
/// the rest of the body is a scope of its own, not a branch that reassigns the buffer.
#[grad]
fn shadow_buffer_after_return(x: &[f64]) -> f64 {
    let h = x.to_vec();
    if x[0] > 0.0 {
        return h[0];
    }
    let mut h = x.to_vec();
    h[0] *= 3.0;
    h[0] * h[1]
}

#[grad]
fn shadow_buffer_after_loop_return(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    for i in 0..2 {
        h[i] += 1.0;
        if h[i] > 0.9 {
            return h[0] * h[0];
        }
    }
    let mut h = x.to_vec();
    h[1] *= 3.0;
    h[0] * h[1]
}

#[test]
fn buffer_shadowed_after_an_early_return() {
    // x0 > 0: h0 = x0, ∂ = (1, 0).
    assert_eq!(
        shadow_buffer_after_return_grad(&[2.0, 5.0]),
        (2.0, ShadowBufferAfterReturnGrad { x: vec![1.0, 0.0] })
    );
    // x0 ≤ 0: 3·x0·x1, ∂ = (3·x1, 3·x0).
    assert_eq!(
        shadow_buffer_after_return_grad(&[-2.0, 5.0]),
        (
            -30.0,
            ShadowBufferAfterReturnGrad {
                x: vec![15.0, -6.0]
            }
        )
    );
    // x0 + 1 > 0.9: returns (x0 + 1)², ∂ = (2·(x0 + 1), 0).
    assert_eq!(
        shadow_buffer_after_loop_return_grad(&[0.5, -3.0]),
        (2.25, ShadowBufferAfterLoopReturnGrad { x: vec![3.0, 0.0] })
    );
    // Neither h0 = x0 + 1 nor h1 = x1 + 1 passes 0.9: 3·x0·x1.
    assert_eq!(
        shadow_buffer_after_loop_return_grad(&[-0.5, -0.5]),
        (
            0.75,
            ShadowBufferAfterLoopReturnGrad {
                x: vec![-1.5, -1.5]
            }
        )
    );
}

// ---- issue 14's small forms ------------------------------------------------------

/// Recursion: a `#[grad]` function that calls itself (its inner tapes are boxed).
#[grad]
fn power_by_recursion(x: f64, n: u32) -> f64 {
    if n == 0 {
        1.0
    } else {
        x * power_by_recursion(x, n - 1)
    }
}

#[test]
fn recursion_by_hand_and_gradcheck() {
    // x³ at 2: value 8, derivative 3x² = 12.
    let (v, g) = power_by_recursion_grad(2.0, 3);
    assert_eq!((v, g.x), (8.0, 12.0));
    let (_, g0) = power_by_recursion_grad(2.0, 0);
    assert_eq!(g0.x, 0.0);
    backprop::gradcheck!(power_by_recursion(x = 1.3, n = const 5)).assert();
}

/// `if let Some(m) = mask` on an optional mask (an `Option` argument is data).
#[grad(x)]
fn optionally_masked(x: &Array2<f64>, mask: Option<&Array2<f64>>) -> f64 {
    let mut s = x.clone();
    if let Some(m) = mask {
        s = &s * m;
    }
    (&s * &s).sum()
}

/// The same through `&Option<Array2>` and an `if let` expression.
#[grad(x)]
fn optionally_scaled(x: &Array2<f64>, scale: &Option<Array2<f64>>) -> f64 {
    let s = if let Some(m) = scale { x * m } else { x * 1.0 };
    s.sum()
}

#[test]
fn if_let_some_by_hand() {
    let x = array![[1.0, 2.0]];
    let m = array![[0.0, 3.0]];
    // Σ(x·m)² = 36, ∂x = 2·x·m² = (0, 36).
    let (v, g) = optionally_masked_grad(&x, Some(&m));
    assert_eq!((v, g.x), (36.0, array![[0.0, 36.0]]));
    let (v, g) = optionally_masked_grad(&x, None);
    assert_eq!((v, g.x), (5.0, array![[2.0, 4.0]]));
    let (_, g) = optionally_scaled_grad(&x, &Some(m.clone()));
    assert_eq!(g.x, m);
    let (_, g) = optionally_scaled_grad(&x, &None);
    assert_eq!(g.x, array![[1.0, 1.0]]);
}

/// Options as the docs show them: a struct literal with `..Default::default()`.
#[grad(logits)]
fn smoothed_xent(logits: &Array2<f64>, labels: &[usize]) -> f64 {
    let opts = backprop::ops::XentOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    backprop::ops::cross_entropy(logits, labels, opts)
}

#[test]
fn struct_literal_options_gradcheck() {
    let logits = array![[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]];
    let labels = [2usize, 0];
    backprop::gradcheck!(smoothed_xent(logits = &logits, labels = const &labels)).assert();
    // Smoothing moves the target off one-hot: the gradient of a row is p − q with
    // q = 0.9·onehot + 0.1/3, summing to zero per row.
    let (_, g) = smoothed_xent_grad(&logits, &labels);
    for row in g.logits.rows() {
        assert!(row.sum().abs() < 1e-15, "{row}");
    }
}

/// The same options built from data the function is given (a smoothing from a config, an
/// ignored label), inline and in a `let`, with a field named by its local (`{ eps }`).
#[grad(logits)]
fn smoothed_xent_from(logits: &Array2<f64>, labels: &[usize], eps: f64, pad: Option<usize>) -> f64 {
    let label_smoothing = eps;
    let a = backprop::ops::cross_entropy(
        logits,
        labels,
        backprop::ops::XentOptions {
            label_smoothing: eps,
            ..Default::default()
        },
    );
    let opts = backprop::ops::XentOptions {
        ignore_index: pad,
        label_smoothing,
    };
    a + backprop::ops::cross_entropy(logits, labels, opts)
}

#[test]
fn struct_literal_options_from_arguments() {
    let logits = array![[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]];
    let labels = [2usize, 0];
    let (l, g) = smoothed_xent_from_grad(&logits, &labels, 0.1, None);
    let (l1, g1) = smoothed_xent_grad(&logits, &labels);
    assert_eq!(l, 2.0 * l1);
    assert_eq!(g.logits, &g1.logits * 2.0);
    // Label 0 ignored in the second: its row counts once, from the first.
    let (_, g) = smoothed_xent_from_grad(&logits, &labels, 0.1, Some(0));
    assert!(
        g.logits
            .row(1)
            .iter()
            .zip(g1.logits.row(1))
            .all(|(a, b)| (a - b).abs() < 1e-15)
    );
}

/// Anything inside `stop_gradient(..)` is data, closures and methods without rules too.
#[grad]
fn gated(x: &Array1<f64>) -> f64 {
    let gate = backprop::stop_gradient(x.mapv(|z| if z > 0.0 { 1.0 } else { 0.0 }));
    (x * &gate).sum()
}

#[test]
fn stop_gradient_of_a_closure_by_hand() {
    let x = array![-1.0, 2.0, 0.5];
    let (v, g) = gated_grad(&x);
    assert_eq!(v, 2.5);
    assert_eq!(g.x, array![0.0, 1.0, 1.0]);
}

#[grad]
fn optionally_scaled_scalar(x: f64, scale: Option<f64>) -> f64 {
    if let Some(s) = scale { x * s } else { x }
}

#[test]
fn if_let_some_on_a_number() {
    assert_eq!(optionally_scaled_scalar_grad(2.0, Some(3.0)).1.x, 3.0);
    assert_eq!(optionally_scaled_scalar_grad(2.0, None).1.x, 1.0);
}

// ---- attributes -----------------------------------------------------------------------

/// Lint attributes on `f` reach its companions (same signature, same lint).
/// Pins: lint attributes on `f` did not reach its companions (bf5618a).
#[grad]
#[allow(clippy::too_many_arguments)]
fn many_arguments(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64) -> f64 {
    a * b + c * d + e * f + g * h
}

#[test]
fn lint_attributes_are_carried() {
    let (v, gr) = many_arguments_grad(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0);
    assert_eq!(v, 2.0 + 12.0 + 30.0 + 56.0);
    assert_eq!((gr.a, gr.h), (2.0, 7.0));
}

/// A local `Vec` of data arrays (constants here) compiles as it did; only a list of
/// arrays that carry a derivative is refused (`tests/ui/unsupported/local_list_of_arrays.rs`).
#[allow(clippy::vec_init_then_push)] // written as users write it
#[grad(w)]
fn list_of_data_arrays(w: f64, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let mut outs = Vec::new();
    outs.push(x.clone());
    outs.push(y.clone());
    let n = outs.len();
    w * w * (n as f64)
}

#[test]
fn a_local_list_of_data_arrays() {
    let x = array![[1.0, 2.0]];
    let (l, g) = list_of_data_arrays_grad(3.0, &x, &x);
    assert_eq!((l, g.w), (18.0, 12.0));
}
