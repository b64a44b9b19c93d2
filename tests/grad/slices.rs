//! Buffers of floats in `#[grad]` functions: slices, `Vec`s and arrays as arguments and
//! locals, indexing, sub-slices, element writes, iterators (`iter().sum()`, `map`,
//! `fold`, `zip`, `enumerate`) and calls that pass buffers. Each construct has values
//! derived by hand and a central-difference check; the tape's byte count pins what a
//! loop over a buffer saves per iteration.
// Written the way users write loops over slices, including the forms clippy would rewrite.
#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::ptr_arg,
    clippy::useless_vec,
    clippy::manual_swap
)]

use crate::support::{check, fd};
use backprop::{Pullback, grad, gradcheck};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[track_caller]
fn assert_all_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "lengths: {got:?} vs {want:?}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w), "element {k}: got {g}, expected {w}");
    }
}

/// w · x, the loop a user writes.
#[grad]
fn dot(w: &[f64], x: &[f64]) -> f64 {
    let mut acc = 0.0;
    for i in 0..w.len() {
        acc += w[i] * x[i];
    }
    acc
}

#[test]
fn dot_product_gradient_is_the_other_vector() {
    let (w, x) = ([1.0, -2.0, 3.0], [0.5, 4.0, -1.0]);
    let (v, g) = dot_grad(&w, &x);
    assert_eq!(v, 0.5 - 8.0 - 3.0);
    assert_eq!(g.w, x.to_vec());
    assert_eq!(g.x, w.to_vec());
    gradcheck!(dot(w = &w.to_vec(), x = &x.to_vec())).assert();
}

#[test]
fn dot_product_saves_nothing_per_iteration() {
    // The reverse pass reads w[i] and x[i] again from the borrowed slices (they cannot
    // change while the tape borrows them) and recomputes i from the range: the tape is
    // the same size for 3 elements and for 10 000.
    let small: Vec<f64> = (0..3).map(|k| k as f64).collect();
    let large: Vec<f64> = (0..10_000).map(|k| k as f64).collect();
    let (_, t_small) = dot_forward(&small, &small);
    let (_, t_large) = dot_forward(&large, &large);
    assert_eq!(t_small.bytes(), t_large.bytes());
    assert!(t_small.bytes() <= 96, "{} bytes", t_small.bytes());
}

/// Π x[i] through a carried product: each iteration overwrites `acc`, whose old value
/// the reverse pass needs (d x[i] = acc_before · d acc), so it is saved.
#[grad]
fn product(x: &[f64]) -> f64 {
    let mut acc = 1.0;
    for i in 0..x.len() {
        acc = acc * x[i];
    }
    acc
}

#[test]
fn running_product_saves_one_value_per_iteration() {
    let x = [2.0, 3.0, 0.5, -4.0];
    let (v, g) = product_grad(&x);
    assert_eq!(v, -12.0);
    // ∂/∂x_k = Π_{j≠k} x_j.
    assert_eq!(g.x, vec![-6.0, -4.0, -24.0, 3.0]);
    gradcheck!(product(x = &x.to_vec())).assert();
    let n = 1000;
    let ones = vec![1.0; n];
    let (_, t0) = product_forward(&[]);
    let (_, t1) = product_forward(&ones);
    assert_eq!(t1.bytes() - t0.bytes(), n * 8, "one f64 per iteration");
}

/// Σ relu(x[i]) with the branch in the loop: each iteration records which way it went.
#[grad]
fn relu_sum(x: &[f64]) -> f64 {
    let mut acc = 0.0;
    for i in 0..x.len() {
        if x[i] > 0.0 {
            acc += x[i];
        }
    }
    acc
}

#[test]
fn a_branch_in_a_loop_records_one_byte_per_iteration() {
    let x = [1.5, -2.0, 0.25, -0.5];
    let (v, g) = relu_sum_grad(&x);
    assert_eq!(v, 1.75);
    assert_eq!(g.x, vec![1.0, 0.0, 1.0, 0.0]);
    let n = 1000;
    let xs: Vec<f64> = (0..n).map(|k| k as f64 - 500.5).collect();
    let (_, t0) = relu_sum_forward(&[]);
    let (_, t1) = relu_sum_forward(&xs);
    assert_eq!(
        t1.bytes() - t0.bytes(),
        n,
        "one byte (the branch taken) per iteration"
    );
    gradcheck!(relu_sum(x = &xs)).assert();
}

/// The iterator forms: sum, map + sum, fold, zip, enumerate, `for v in x`.
#[grad]
fn iterators(x: &[f64], y: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    let d: f64 = x.iter().zip(y.iter()).map(|(a, b)| a * b).sum();
    let m = y.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let mut weighted = 0.0;
    for (k, v) in x.iter().enumerate() {
        weighted += (k as f64 + 1.0) * v;
    }
    let mut cubes = 0.0;
    for &v in y {
        cubes += v * v * v;
    }
    s + sq + d + m + weighted + cubes
}

#[test]
fn iterator_reductions() {
    let x = [1.0, 2.0, -3.0];
    let y = [0.5, 4.0, 2.0];
    let (v, g) = iterators_grad(&x, &y);
    // s = 0, sq = 14, d = 0.5 + 8 - 6 = 2.5, m = 4, weighted = 1 + 4 - 9 = -4,
    // cubes = 0.125 + 64 + 8 = 72.125.
    assert!(close(v, 0.0 + 14.0 + 2.5 + 4.0 - 4.0 + 72.125), "{v}");
    // d/dx_k = 1 + 2x_k + y_k + (k + 1).
    assert_all_close(
        &g.x,
        &[
            1.0 + 2.0 + 0.5 + 1.0,
            1.0 + 4.0 + 4.0 + 2.0,
            1.0 - 6.0 + 2.0 + 3.0,
        ],
    );
    // d/dy_k = x_k + [k = argmax] + 3y_k².
    assert_all_close(&g.y, &[1.0 + 0.75, 2.0 + 1.0 + 48.0, -3.0 + 12.0]);
    gradcheck!(iterators(x = &x.to_vec(), y = &y.to_vec())).assert();
}

/// A local buffer written element-wise, a sub-slice view, `to_vec` and compound writes.
#[grad]
fn buffers(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    for i in 0..n {
        h[i] = x[i].tanh();
    }
    let mut v = x.to_vec();
    v[0] *= h[1];
    v[1] /= 2.0;
    v[2] -= h[0];
    let tail = &v[1..];
    let mut s = 0.0;
    for j in 0..tail.len() {
        s += tail[j] * tail[j];
    }
    s + v[0]
}

#[test]
fn local_buffers_views_and_element_writes() {
    let x = [0.3, -0.7, 1.1];
    let (value, g) = buffers_grad(&x);
    let (t0, t1) = (x[0].tanh(), x[1].tanh());
    let v0 = x[0] * t1;
    let v1 = x[1] / 2.0;
    let v2 = x[2] - t0;
    assert!(close(value, v1 * v1 + v2 * v2 + v0));
    // ∂/∂x0 = t1 + 2v2·(−(1 − t0²)); ∂/∂x1 = x0(1 − t1²) + 2v1/2; ∂/∂x2 = 2v2.
    let want = [
        t1 - 2.0 * v2 * (1.0 - t0 * t0),
        x[0] * (1.0 - t1 * t1) + v1,
        2.0 * v2,
    ];
    assert_all_close(&g.x, &want);
    gradcheck!(buffers(x = &x.to_vec())).assert();
}

/// Buffer literals and array arguments: `[T; N]` by value, `vec![a, b, c]`.
#[grad]
fn literals(p: [f64; 3], q: &Vec<f64>) -> f64 {
    let a = vec![p[0] * q[0], p[1], 2.0];
    let b = [p[2], q[1]];
    a[0] + a[1] * a[2] + b[0] * b[1]
}

#[test]
fn buffer_literals_and_array_arguments() {
    let (v, g) = literals_grad([1.0, 2.0, 3.0], &vec![4.0, 5.0]);
    assert_eq!(v, 4.0 + 4.0 + 15.0);
    assert_eq!(g.p, vec![4.0, 2.0, 5.0]);
    assert_eq!(g.q, vec![1.0, 3.0]);
}

/// A `#[grad]` helper over a slice, called with a view and with a local buffer: its
/// `Vec` cotangent is added into the right elements of the caller's adjoint.
#[grad]
fn sum_sq(v: &[f64]) -> f64 {
    let mut s = 0.0;
    for k in 0..v.len() {
        s += v[k] * v[k];
    }
    s
}

#[grad]
fn caller(x: &[f64]) -> f64 {
    let head = sum_sq(&x[..2]);
    let mut doubled = vec![0.0; x.len()];
    for i in 0..x.len() {
        doubled[i] = 2.0 * x[i];
    }
    let all = sum_sq(&doubled);
    head + all
}

#[test]
fn calls_pass_views_and_local_buffers() {
    let x = [1.0, -2.0, 3.0];
    let (v, g) = caller_grad(&x);
    assert_eq!(v, 5.0 + 4.0 * 14.0);
    // ∂/∂x_k = 2x_k [k < 2] + 8x_k.
    assert_eq!(g.x, vec![2.0 + 8.0, -4.0 - 16.0, 24.0]);
    gradcheck!(caller(x = &x.to_vec())).assert();
}

/// Row-major matrix-vector product with a softmax cross-entropy, written over slices
/// (the seed's example as plain loops), against a hand-derived gradient.
#[grad]
fn linear_ce(w: &[f64], x: &[f64], label: usize, d: usize, c: usize) -> f64 {
    let mut logits = vec![0.0; c];
    for j in 0..c {
        let row = &w[j * d..(j + 1) * d];
        let mut z = 0.0;
        for (a, b) in row.iter().zip(x.iter()) {
            z += a * b;
        }
        logits[j] = z;
    }
    let m = logits.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z));
    let s: f64 = logits.iter().map(|z| (z - m).exp()).sum();
    m + s.ln() - logits[label]
}

#[test]
fn softmax_cross_entropy_over_slices() {
    let (d, c) = (3, 4);
    let w: Vec<f64> = (0..d * c)
        .map(|k| ((k * 7 % 11) as f64 - 5.0) / 7.0)
        .collect();
    let x = vec![0.5, -1.0, 2.0];
    let label = 2;
    let (value, g) = linear_ce_grad(&w, &x, label, d, c);
    let z: Vec<f64> = (0..c)
        .map(|j| (0..d).map(|t| w[j * d + t] * x[t]).sum())
        .collect();
    let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
    assert!(close(value, lse - z[label]));
    // dL/dz = p − onehot; dL/dW[j, t] = (p_j − [j = label]) x_t; dL/dx = Wᵀ(p − onehot).
    let p: Vec<f64> = z.iter().map(|v| (v - lse).exp()).collect();
    let dz: Vec<f64> = (0..c).map(|j| p[j] - f64::from(j == label)).collect();
    let dw: Vec<f64> = (0..d * c).map(|k| dz[k / d] * x[k % d]).collect();
    let dx: Vec<f64> = (0..d)
        .map(|t| (0..c).map(|j| w[j * d + t] * dz[j]).sum())
        .collect();
    assert_all_close(&g.w, &dw);
    assert_all_close(&g.x, &dx);
    gradcheck!(linear_ce(w = &w, x = &x, label = const label, d = const d, c = const c)).assert();
}

/// `&&` evaluates its right side only when the left holds (`v[j - 1]` at `j = 0`
/// would underflow): insertion sort, the shared case's idiom.
#[grad]
fn sorted_top(a: &[f64], k: usize) -> f64 {
    let mut v = a.to_vec();
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] < v[j] {
            let tmp = v[j];
            v[j] = v[j - 1];
            v[j - 1] = tmp;
            j -= 1;
        }
    }
    let mut total = 0.0;
    for i in 0..k {
        total += (i as f64 + 1.0) * v[i];
    }
    total
}

#[test]
fn sorting_routes_each_gradient_to_its_element() {
    let a = [0.2, 1.5, -0.3, 0.9];
    let (v, g) = sorted_top_grad(&a, 3);
    // Sorted descending: 1.5, 0.9, 0.2, -0.3 → 1·1.5 + 2·0.9 + 3·0.2.
    assert!(close(v, 1.5 + 1.8 + 0.6));
    assert_eq!(g.a, vec![3.0, 1.0, 0.0, 2.0]);
    gradcheck!(sorted_top(a = &a.to_vec(), k = const 3)).assert();
}

/// Only the named argument is differentiated; the other slice is data.
#[grad(w)]
fn weighted_mse(w: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let e = w[0] * x[i] + w[1] - y[i];
        s += e * e;
    }
    s / x.len() as f64
}

#[test]
fn inactive_slices_are_data() {
    let (v, g) = weighted_mse_grad(&[2.0, 1.0], &[1.0, 2.0], &[3.0, 4.0]);
    // e = (0, 1): mean e² = 0.5; d/dw0 = mean 2e·x = 2, d/dw1 = mean 2e = 1.
    assert_eq!(v, 0.5);
    assert_eq!(g.w, vec![2.0, 1.0]);
}

/// f32 buffers take the same path.
#[grad]
fn dot32(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

#[test]
fn f32_buffers() {
    let (v, g) = dot32_grad(&[1.0, 2.0], &[3.0, -1.0]);
    assert_eq!(v, 1.0);
    assert_eq!(g.w, vec![3.0f32, -1.0]);
    assert_eq!(g.x, vec![1.0f32, 2.0]);
}

/// `swap` on a local buffer, as clippy suggests writing the swap above.
#[grad]
fn reversed_weights(a: &[f64]) -> f64 {
    let mut v = a.to_vec();
    let n = v.len();
    for i in 0..n / 2 {
        v.swap(i, n - 1 - i);
    }
    let mut s = 0.0;
    for (k, x) in v.iter().enumerate() {
        s += (k as f64 + 1.0) * x * x;
    }
    s
}

#[test]
fn swap_moves_elements_and_their_gradients() {
    let a = [1.0, 2.0, 3.0];
    let (value, g) = reversed_weights_grad(&a);
    // v = [3, 2, 1]: s = 1·9 + 2·4 + 3·1 = 20; d/da_k = 2·(weight of a_k's slot)·a_k.
    assert_eq!(value, 20.0);
    assert_eq!(g.a, vec![2.0 * 3.0 * 1.0, 2.0 * 2.0 * 2.0, 2.0 * 1.0 * 3.0]);
    gradcheck!(reversed_weights(a = &a.to_vec())).assert();
}

/// The slice methods that write: `fill`, `copy_from_slice` (also on a sub-slice) and
/// `reverse`, each the element writes it is (a break-it pass found them silently
/// ignored before).
#[grad]
fn copy_from(x: &[f64]) -> f64 {
    let mut h = vec![0.0; 2];
    h[0] = 1.0;
    h.copy_from_slice(&x[..2]);
    h[0] * h[1]
}

#[grad]
fn fill_with(x: &[f64]) -> f64 {
    let mut h = vec![0.0; 3];
    h[0] = 1.0;
    h.fill(x[0]);
    h[1..].fill(x[1]);
    h[0] * h[1] * h[2]
}

#[grad]
fn reversed(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h[0] *= 1.0;
    h.reverse();
    h[0] * 3.0 + h[1]
}

#[test]
fn writing_slice_methods() {
    let x = [2.0, 5.0];
    assert_eq!(
        copy_from_grad(&x),
        (10.0, CopyFromGrad { x: vec![5.0, 2.0] })
    );
    // h = [2, 5, 5]: 50; d/dx0 = 25, d/dx1 = 2·2·5 = 20.
    assert_eq!(
        fill_with_grad(&x),
        (
            50.0,
            FillWithGrad {
                x: vec![25.0, 20.0]
            }
        )
    );
    assert_eq!(
        reversed_grad(&x),
        (17.0, ReversedGrad { x: vec![1.0, 3.0] })
    );
    gradcheck!(fill_with(x = &vec![0.7, -1.3])).assert();
}

/// Generic over the float type: the same code for `&[f32]` and `&[f64]`.
#[grad]
fn sum_squares<T: num_traits::Float>(x: &[T]) -> T {
    let mut s = T::zero();
    for i in 0..x.len() {
        s = s + x[i] * x[i];
    }
    s
}

#[grad]
fn sum_squares_iter<T: num_traits::Float + std::iter::Sum>(x: &[T]) -> T {
    x.iter().map(|v| *v * *v).sum()
}

#[test]
fn generic_float_buffers() {
    assert_eq!(sum_squares_grad(&[1.0f64, -2.0]).1.x, vec![2.0, -4.0]);
    assert_eq!(sum_squares_grad(&[1.0f32, -2.0]).1.x, vec![2.0f32, -4.0]);
    assert_eq!(
        sum_squares_iter_grad(&[3.0f64, 0.5]),
        (9.25, SumSquaresIterGrad { x: vec![6.0, 1.0] })
    );
    gradcheck!(sum_squares(x = &vec![0.3, -1.7, 2.2])).assert();
}

/// `.rev()` on a buffer's iterator, alone, under `enumerate` and in a `zip`.
#[grad]
fn reversed_orders(x: &[f64], y: &[f64]) -> f64 {
    let mut horner = 0.0;
    for v in x.iter().rev() {
        horner = horner * 2.0 + v;
    }
    let mut tail_weighted = 0.0;
    for (k, v) in x.iter().rev().enumerate() {
        tail_weighted += (k as f64 + 1.0) * v;
    }
    let crossed: f64 = x.iter().rev().zip(y.iter()).map(|(a, b)| a * b).sum();
    horner + tail_weighted + crossed
}

#[test]
fn reversed_iterators() {
    let x = [1.0, 2.0, 3.0];
    let y = [10.0, 20.0];
    let (v, g) = reversed_orders_grad(&x, &y);
    // horner over 3, 2, 1: ((3)·2 + 2)·2 + 1 = 17 = x0 + 2x1 + 4x2;
    // tail_weighted = 1·3 + 2·2 + 3·1 = 10 = 3x0 + 2x1 + x2; crossed = 3·10 + 2·20 = 70.
    assert_eq!(v, 17.0 + 10.0 + 70.0);
    assert_eq!(g.x, vec![1.0 + 3.0, 2.0 + 2.0 + 20.0, 4.0 + 1.0 + 10.0]);
    assert_eq!(g.y, vec![3.0, 2.0]);
}

/// A local buffer passed to helpers taking `&Vec<f64>`, `&[f64; 2]` and `[f64; 2]`
/// (the calls are checkpointed on copies of the argument's own type), and a `zip`
/// whose closure names its parts after the other buffer.
#[grad]
fn vec_helper(v: &Vec<f64>) -> f64 {
    v[0] * v[1]
}

#[grad]
fn array_ref_helper(v: &[f64; 2]) -> f64 {
    v[0] - v[1]
}

#[grad]
fn array_helper(v: [f64; 2]) -> f64 {
    v[0] * v[0] + v[1]
}

#[grad]
fn helper_forms(x: &[f64], y: &[f64]) -> f64 {
    let h = vec![x[0], x[1]];
    let a = [x[0], y[0]];
    let crossed: f64 = x.iter().zip(y.iter()).map(|(y, x)| y * x * x).sum();
    vec_helper(&h) + array_ref_helper(&a) + array_helper(a) + crossed
}

#[test]
fn checkpointed_calls_keep_argument_types_and_zip_names_are_hygienic() {
    let x = [2.0, 3.0];
    let y = [5.0, 7.0];
    let (v, g) = helper_forms_grad(&x, &y);
    // 6 + (2 − 5) + (4 + 5) + (2·25 + 3·49) = 6 − 3 + 9 + 197.
    assert_eq!(v, 209.0);
    // d/dx0 = x1 + 1 + 2x0 + y0² = 3 + 1 + 4 + 25; d/dx1 = x0 + y1² = 2 + 49.
    // d/dy0 = −1 + 1 + 2x0y0 = 20; d/dy1 = 2x1y1 = 42.
    assert_eq!(g.x, vec![33.0, 51.0]);
    assert_eq!(g.y, vec![20.0, 42.0]);
}

/// A buffer built with `Vec::new()`/`with_capacity` and `push`, read back and written.
#[grad]
fn pushed(x: &[f64]) -> f64 {
    let mut h = Vec::with_capacity(x.len());
    for v in x {
        h.push(v * v);
    }
    let mut acc = Vec::new();
    let mut s = 0.0;
    for i in 0..h.len() {
        s += h[i];
        acc.push(s);
    }
    h[0] = 2.0 * h[0];
    acc.iter().map(|a| a * a).sum::<f64>() + h[0] + h.len() as f64
}

#[test]
fn vectors_built_by_push() {
    let x = [1.0, 2.0];
    let (v, g) = pushed_grad(&x);
    // h = [1, 4]; acc = [1, 5]; Σ acc² = 26; then h[0] = 2 → 26 + 2 + 2.
    assert_eq!(v, 30.0);
    // acc0 = x0², acc1 = x0² + x1²: d/dx0 = 2·acc0·2x0 + 2·acc1·2x0 + 2·2x0 = 4 + 20 + 4;
    // d/dx1 = 2·acc1·2x1 = 40.
    assert_eq!(g.x, vec![28.0, 40.0]);
    backprop::gradcheck!(pushed(x = &vec![0.7, -1.3, 0.4])).assert();
}

/// `h[j] += e`, `h[j] = h[j] - e` and `h[j] = e + h[j]`: in-place element updates,
/// whose reverse hands `d_h[j]` to `e` and leaves it in place.
#[grad]
fn in_place_updates(x: &[f64], w: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    for i in 0..n {
        for j in 0..n {
            h[j] += w[j] * x[i];
        }
        h[i] = h[i] - x[i] * x[i];
        h[0] = 2.0 * w[i] + h[0];
    }
    let mut s = 0.0;
    for j in 0..n {
        s += h[j] * h[j];
    }
    s
}

#[test]
fn in_place_element_updates_by_hand_and_against_central_differences() {
    // n = 1, x = [3], w = [2]: h0 = 0 + 2·3 = 6; h0 = 6 − 9 = −3; h0 = 2·2 + (−3) = 1.
    // s = h0² = 1; ds/dh0 = 2. dh0/dx = w − 2x = −4, dh0/dw = x + 2 = 5.
    let (v, g) = in_place_updates_grad(&[3.0], &[2.0]);
    assert_eq!(v, 1.0);
    assert_eq!(g.x, vec![-8.0]);
    assert_eq!(g.w, vec![10.0]);
    let x = [0.4, -1.1, 0.8];
    let w = [1.3, 0.2, -0.7];
    gradcheck!(in_place_updates(x = &x.to_vec(), w = &w.to_vec())).assert();
}

/// Look-alikes that are not in-place updates: the old element is read again, another
/// index is read, the element is written in between. Each must keep the plain rules.
#[grad]
fn not_in_place(x: &[f64]) -> f64 {
    let mut h = vec![1.0, 2.0];
    // The old element is used twice.
    let r = h[0];
    h[0] = r + x[0];
    let twice = r * x[1];
    // Another element on the right.
    h[1] = h[0] + x[1];
    // A write between the read and the write back.
    let old = h[1];
    h[1] = 5.0 * x[0];
    h[1] = old + x[0];
    h[0] * h[1] + twice
}

#[test]
fn updates_that_only_look_in_place_keep_the_plain_rules() {
    // x = [a, b]: h0 = 1 + a; twice = b; h1 = (1 + a) + b, then old = h1, h1 = old + a.
    // f = (1 + a)(1 + 2a + b) + b. df/da = (1 + 2a + b) + 2(1 + a), df/db = (1 + a) + 1.
    let (a, b) = (0.5, -2.0);
    let (v, g) = not_in_place_grad(&[a, b]);
    assert_eq!(v, (1.0 + a) * (1.0 + 2.0 * a + b) + b);
    assert_eq!(
        g.x,
        vec![(1.0 + 2.0 * a + b) + 2.0 * (1.0 + a), (1.0 + a) + 1.0]
    );
    gradcheck!(not_in_place(x = &vec![0.3, 1.7])).assert();
}

// ---- recurrences, iterators, views and empty buffers ----------------------------------

/// Prefix sums, backwards recurrence with .rev(), step_by.
#[grad]
fn recurrences(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    h[0] = x[0];
    for i in 1..n {
        h[i] = h[i - 1] * x[i] + x[i];
    }
    let mut g = vec![0.0; n + 1];
    g[n] = 1.0;
    for i in (0..n).rev() {
        g[i] = g[i + 1] * h[i].sin();
    }
    let mut s = 0.0;
    for i in (0..n).step_by(2) {
        s += g[i] * h[i];
    }
    for i in (1..n).rev().step_by(2) {
        s += g[i];
    }
    s
}
probe!(
    p_recurrences,
    recurrences,
    recurrences_grad,
    vec![0.5, -1.5, 2.0, 0.3, 0.9]
);

/// zip of a longer with a shorter buffer: stops at the shorter.
#[grad]
fn zip_shorter(x: &[f64]) -> f64 {
    let a: f64 = x.iter().zip(&x[1..]).map(|(p, q)| p * q).sum();
    let b: f64 = x[1..].iter().zip(x.iter()).map(|(p, q)| p - q * q).sum();
    a + b
}
probe!(
    p_zip_shorter,
    zip_shorter,
    zip_shorter_grad,
    vec![0.5, -1.5, 2.0, 0.25]
);

/// zero iterations and empty slices.
#[grad]
fn maybe_empty(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for i in 0..x.len() {
        s *= x[i];
    }
    let p: f64 = x.iter().product();
    let q = x.iter().fold(2.0, |a, v| a + v);
    let h = vec![0.0; x.len()];
    let t: f64 = h.iter().sum();
    s + p + q + t
}
#[test]
fn p_maybe_empty() {
    let (v, g) = maybe_empty_grad(&[]);
    assert_eq!(v, 4.0);
    assert!(g.x.is_empty());
    let (v, g) = maybe_empty_grad(&[3.0]);
    check(&|x: &[f64]| maybe_empty(x), v, &g.x, &[3.0]);
}

/// vec! and arrays repeating an active value.
#[grad]
fn repeat_active(x: &[f64]) -> f64 {
    let a = vec![x[0]; 3];
    let b = [x[1] * 2.0; 2];
    let mut c = vec![x[2]; 2];
    c[0] *= x[0];
    a[0] * a[1] * a[2] + b[0] * b[1] + c[0] + c[1]
}
probe!(
    p_repeat_active,
    repeat_active,
    repeat_active_grad,
    vec![0.5, -1.5, 2.0]
);

/// Views of views and views inside loops.
#[grad]
fn views(x: &[f64]) -> f64 {
    let a = &x[1..];
    let b = &a[1..3];
    let mut s = b[0] * b[1] + a.len() as f64;
    for i in 0..x.len() {
        let t = &x[i..];
        s += t[0] * t[t.len() - 1];
        let u: f64 = x[..i].iter().sum();
        s += u * x[i];
    }
    s
}
probe!(p_views, views, views_grad, vec![0.5, -1.5, 2.0, 0.9, 1.2]);

/// f32 buffers with writes.
#[grad]
fn f32_writes(x: &[f32]) -> f32 {
    let mut h = x.to_vec();
    for i in 1..h.len() {
        h[i] = h[i] * h[i - 1] + 1.0;
    }
    h.iter().map(|v| v * v).sum()
}
#[test]
fn p_f32_writes() {
    let x = [0.5f32, -1.5, 2.0];
    let (v, g) = f32_writes_grad(&x);
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let f = |x: &[f64]| {
        let mut h = x.to_vec();
        for i in 1..h.len() {
            h[i] = h[i] * h[i - 1] + 1.0;
        }
        h.iter().map(|v| v * v).sum::<f64>()
    };
    let gd: Vec<f64> = g.x.iter().map(|&v| v as f64).collect();
    let num = fd(&f, &xd);
    for (a, b) in gd.iter().zip(&num) {
        assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{gd:?} vs {num:?}");
    }
    assert!((v as f64 - f(&xd)).abs() < 1e-4);
}

/// The idiomatic max over a slice: fold from NaN with f64::max.
#[grad]
fn nan_fold_max(x: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NAN, f64::max);
    let n = x.iter().copied().fold(f64::NAN, f64::min);
    3.0 * m + n
}
probe!(
    p_nan_fold_max,
    nan_fold_max,
    nan_fold_max_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Fold from the first element.
#[grad]
fn fold_from_first(x: &[f64]) -> f64 {
    let m = x[1..].iter().fold(x[0], |a, &b| a.max(b));
    m * m
}
probe!(
    p_fold_from_first,
    fold_from_first,
    fold_from_first_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Soft-DTW on a flat table: a DP recurrence over a buffer.
#[grad(x)]
fn soft_dtw(x: &[f64], y: &[f64], gamma: f64) -> f64 {
    let n = x.len();
    let m = y.len();
    let w = m + 1;
    let mut r = vec![1e10; (n + 1) * w];
    r[0] = 0.0;
    for i in 1..=n {
        for j in 1..=m {
            let d = (x[i - 1] - y[j - 1]) * (x[i - 1] - y[j - 1]);
            let a = -r[(i - 1) * w + j] / gamma;
            let b = -r[i * w + j - 1] / gamma;
            let c = -r[(i - 1) * w + j - 1] / gamma;
            let mx = a.max(b).max(c);
            let smin = -gamma * (mx + ((a - mx).exp() + (b - mx).exp() + (c - mx).exp()).ln());
            r[i * w + j] = d + smin;
        }
    }
    r[n * w + m]
}
#[test]
fn p_soft_dtw() {
    let x = vec![0.5, -0.8, 0.6, 1.2];
    let y = [0.1, 0.4, -0.5];
    let (v, g) = soft_dtw_grad(&x, &y, 0.7);
    check(&|x: &[f64]| soft_dtw(x, &y, 0.7), v, &g.x, &x);
}

// ---- indices computed at run time, masks and tables -----------------------------------

/// Argmax found with a branch, then used as an index.
#[grad]
fn argmax_index(x: &[f64]) -> f64 {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    x[best] * x[best] + x[0]
}
probe!(
    p_argmax_index,
    argmax_index,
    argmax_index_grad,
    vec![0.5, -1.5, 2.0, 1.0]
);

/// Integer index updated in the loop, used to read.
#[grad]
fn strided_index(x: &[f64]) -> f64 {
    let n = x.len();
    let mut j = 0;
    let mut s = 0.0;
    for i in 0..n {
        s = s * 0.5 + x[j] * x[i];
        j = (j + 2) % n;
    }
    let mut i = 0;
    while i < n {
        s += x[i] * s;
        i += 2;
    }
    s
}
probe!(
    p_strided_index,
    strided_index,
    strided_index_grad,
    vec![0.5, -1.5, 2.0, 0.3, 1.1]
);

/// An integer chosen in a branch, then used as an index.
#[grad]
fn index_from_branch(x: &[f64]) -> f64 {
    let mut k = 0;
    if x[0] > 0.0 {
        k = 2;
    }
    let mut h = vec![0.0; 3];
    h[k] = x[1] * x[k];
    h[2 - k] += x[k] * 3.0;
    h[0] * h[2] + h[k]
}
#[test]
fn p_index_from_branch() {
    for x in [vec![0.5, -0.8, 0.6], vec![-0.5, -0.8, 0.6]] {
        let (v, g) = index_from_branch_grad(&x);
        check(&|x: &[f64]| index_from_branch(x), v, &g.x, &x);
    }
}

/// Integer counter decremented in a loop, used as index.
#[grad]
fn countdown(x: &[f64]) -> f64 {
    let mut j = x.len();
    let mut s = 1.0;
    while j > 0 {
        j -= 1;
        s = s * x[j] + x[x.len() - 1 - j];
    }
    s
}
probe!(
    p_countdown,
    countdown,
    countdown_grad,
    vec![0.5, -0.8, 0.6, 1.1]
);

/// Gather through an integer index buffer (labels).
#[grad(logits)]
fn gather(logits: &[f64], labels: &[usize], c: usize) -> f64 {
    let mut s = 0.0;
    for (row, &label) in labels.iter().enumerate() {
        s -= logits[row * c + label];
    }
    for i in 0..labels.len() {
        s += logits[i * c + labels[i]] * logits[i * c];
    }
    s
}
#[test]
fn p_gather() {
    let logits = vec![0.5, -1.5, 2.0, 0.9, 0.3, -0.7];
    let labels = [1usize, 2];
    let (v, g) = gather_grad(&logits, &labels, 3);
    check(&|x: &[f64]| gather(x, &labels, 3), v, &g.logits, &logits);
}

/// A bool mask buffer, indexed.
#[grad(x)]
fn masked(x: &[f64], mask: &[bool]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        if mask[i] {
            s += x[i] * x[i];
        }
    }
    s
}
#[test]
fn p_masked() {
    let x = vec![0.5, -1.5, 2.0, 0.9];
    let mask = [true, false, true, false];
    let (v, g) = masked_grad(&x, &mask);
    check(&|x: &[f64]| masked(x, &mask), v, &g.x, &x);
}

/// A top-level const sizing an array; array arg; writes with enumerate indices.
const N3: usize = 3;
#[grad]
fn const_sized(p: [f64; N3]) -> f64 {
    let mut a = [0.0; N3];
    for (i, v) in p.iter().enumerate() {
        a[i] += v * v;
        a[N3 - 1 - i] -= v;
    }
    let mut s = 0.0;
    for v in a {
        s = s * 0.5 + v * v;
    }
    s
}
#[test]
fn p_const_sized() {
    let p = [0.5, -0.8, 0.6];
    let (v, g) = const_sized_grad(p);
    check(&|x: &[f64]| const_sized([x[0], x[1], x[2]]), v, &g.p, &p);
}

/// Linear interpolation in a table at an active position (index from floor).
#[grad]
fn lerp_table(table: &[f64], t: f64) -> f64 {
    let n = table.len();
    let pos = t * (n - 1) as f64;
    let i = (pos.floor() as usize).min(n - 2);
    let frac = pos - i as f64;
    table[i] * (1.0 - frac) + table[i + 1] * frac
}
#[test]
fn p_lerp_table() {
    let table = vec![0.5, -0.8, 0.6, 1.5];
    let (v, g) = lerp_table_grad(&table, 0.4);
    check(&|x: &[f64]| lerp_table(x, 0.4), v, &g.table, &table);
    check(&|x: &[f64]| lerp_table(&table, x[0]), v, &[g.t], &[0.4]);
}

/// `.collect()` of an iterator of floats into a `Vec` (a buffer built by `push`).
#[grad]
fn collected(x: &[f64]) -> f64 {
    let sq: Vec<f64> = x.iter().map(|v| v * v).collect();
    let back = sq.iter().rev().copied().collect::<Vec<f64>>();
    sq[0] * back[0] + sq.iter().sum::<f64>()
}

#[test]
fn collect_into_a_vec() {
    // sq = (1, 4, 9), back = (9, 4, 1): x₀²x₂² + Σ xᵢ² = 9 + 14.
    let (value, g) = collected_grad(&[1.0, 2.0, 3.0]);
    assert_eq!(value, 23.0);
    // ∂/∂x₀ = 2x₀x₂² + 2x₀ = 20, ∂/∂x₁ = 2x₁ = 4, ∂/∂x₂ = 2x₀²x₂ + 2x₂ = 12.
    assert_eq!(g.x, vec![20.0, 4.0, 12.0]);
    assert_eq!(collected_jvp(&[1.0, 2.0, 3.0], &[1.0, 0.0, 0.5]).1, 26.0);
}

// ---------------------------------------------------------------- from a second tryout

const HIDDEN: usize = 2;

/// An array whose length is a constant expression (`[0.0; 2 * N]`, a body `const` or a
/// module's): its length stays a constant, where a `let` of it was E0435.
#[grad]
fn constant_length_state(x: &[f64]) -> f64 {
    const N: usize = 3;
    let mut h = [0.0f64; 2 * N];
    let mut c = [0.0f64; HIDDEN + 1];
    for k in 0..2 * N {
        h[k] = x[k % x.len()] * (k + 1) as f64;
    }
    for k in 0..HIDDEN + 1 {
        c[k] = h[k].tanh();
    }
    h.iter().sum::<f64>() + c.iter().sum::<f64>()
}

#[test]
fn constant_expression_array_lengths() {
    let x = [0.5, -0.25];
    let (v, g) = constant_length_state_grad(&x);
    // h = x0·1, x1·2, x0·3, x1·4, x0·5, x1·6; c = tanh(h0..h2).
    let h = [0.5, -0.5, 1.5, -1.0, 2.5, -1.5];
    let expect = h.iter().sum::<f64>() + h[..3].iter().map(|v: &f64| v.tanh()).sum::<f64>();
    assert!((v - expect).abs() < 1e-15);
    let sech2 = |v: f64| 1.0 - v.tanh().powi(2);
    assert!((g.x[0] - (9.0 + sech2(0.5) + 3.0 * sech2(1.5))).abs() < 1e-14);
    assert!((g.x[1] - (12.0 + 2.0 * sech2(-0.5))).abs() < 1e-14);
    backprop::gradcheck!(constant_length_state(x = &x.to_vec())).assert();
}

/// Rows of data as `&[Vec<f64>]` read as `xs[i][j]`: the row is borrowed (it was moved
/// out of the slice, E0508).
#[grad(w)]
fn rows_of_data(w: &[f64], xs: &[Vec<f64>], ys: &[f64]) -> f64 {
    let mut loss = 0.0;
    for i in 0..ys.len() {
        let mut z = 0.0;
        for j in 0..w.len() {
            z += w[j] * xs[i][j];
        }
        loss += (z - ys[i]).powi(2);
    }
    loss
}

#[test]
fn rows_of_data_indexed_twice() {
    let xs = vec![vec![1.0, 2.0], vec![-1.0, 0.5]];
    let ys = [0.5, 1.0];
    let w = [0.25, -0.5];
    let (l, g) = rows_of_data_grad(&w, &xs, &ys);
    // z = (−0.75, −0.5), e = z − y = (−1.25, −1.5): L = 1.5625 + 2.25, ∂L/∂w = Σ 2e·x.
    assert!((l - 3.8125).abs() < 1e-15);
    assert!((g.w[0] - (2.0 * -1.25 + 2.0 * 1.5)).abs() < 1e-15);
    assert!((g.w[1] - (2.0 * -1.25 * 2.0 + 2.0 * -1.5 * 0.5)).abs() < 1e-15);
}

/// A loop over a slice of data pairs binds the pair's fields: `for &(x, y) in data`,
/// `for (x, y) in data.iter()` (refused before, with a message that listed `(a, b)`).
#[grad(w, b)]
fn pairs_of_data(w: f64, b: f64, data: &[(f64, f64)]) -> f64 {
    let mut loss = 0.0;
    for &(x, y) in data {
        loss += (w * x + b - y).powi(2);
    }
    for (x, y) in data.iter() {
        loss += (w * x - y).abs();
    }
    loss / data.len() as f64
}

#[test]
fn loops_over_pairs_of_data() {
    // Residuals −0.5, −1.5 and −1.5, −2.5 at w = ½, b = 1.
    let (l, g) = pairs_of_data_grad(0.5, 1.0, &[(1.0, 2.0), (2.0, 3.5)]);
    assert_eq!(l, (0.25 + 2.25 + 1.5 + 2.5) / 2.0);
    assert_eq!(g.w, (2.0 * -0.5 * 1.0 + 2.0 * -1.5 * 2.0 - 1.0 - 2.0) / 2.0);
    assert_eq!(g.b, (2.0 * -0.5 + 2.0 * -1.5) / 2.0);
}

/// `fold` whose closure destructures the element (`|acc, (i, v)|` over `.enumerate()`,
/// `|acc, &v|`, `|acc, (a, b)|` over `.zip(..)`): the loop with that pattern (refused
/// before, with a message that listed both adaptors as supported).
#[grad]
fn folds_with_patterns(x: &[f64]) -> f64 {
    x.iter()
        .enumerate()
        .fold(0.0, |acc, (i, v)| acc + (i as f64) * v * v)
        + x.iter().fold(1.0, |acc, &v| acc * v)
        + x.iter()
            .zip(x.iter().rev())
            .fold(0.0, |acc, (a, b)| acc + a * b)
}

#[test]
fn fold_with_element_patterns() {
    // Σ i·v² = 22, Π v = −3, Σ xᵢ·x₂₋ᵢ = 7 at x = (½, −2, 3).
    let (l, g) = folds_with_patterns_grad(&[0.5, -2.0, 3.0]);
    assert_eq!(l, 26.0);
    assert_eq!(g.x, vec![0.0, -6.5, 12.0]);
    gradcheck!(folds_with_patterns(x = &vec![0.3, -0.7, 1.1, 0.4])).assert();
}

/// `xs[i].len()` of rows of data: the row borrowed, not moved out of the slice (E0508).
#[grad(w)]
fn rows_of_data_by_their_lengths(w: &[f64], xs: &[Vec<f64>]) -> f64 {
    let mut s = 0.0;
    for i in 0..xs.len() {
        for j in 0..xs[i].len() {
            s += w[j] * xs[i][j];
        }
    }
    s
}

#[test]
fn rows_of_data_read_by_their_lengths() {
    let xs = vec![vec![1.0, 2.0], vec![-1.0]];
    let (s, g) = rows_of_data_by_their_lengths_grad(&[0.5, 0.25], &xs);
    assert_eq!(s, 0.5 + 0.5 - 0.5);
    assert_eq!(g.w, vec![0.0, 2.0]);
}
