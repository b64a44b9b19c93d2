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
