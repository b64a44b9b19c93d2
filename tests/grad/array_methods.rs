//! ndarray methods inside `#[grad]` functions (issue #15, part 1): gathers (`select`),
//! views (`slice(s![..])`, `slice_axis`, `index_axis`, `row`, `column`), shape methods
//! (`insert_axis`, `remove_axis`, `into_shape_with_order`, `to_shape`,
//! `permuted_axes`, `reversed_axes`, `t`), joins (`concatenate`, `stack` and their
//! macros), a max or min along an axis (`fold_axis`, `map_axis`), `var_axis`,
//! `std_axis`, `mean_axis`, `sum_axis`, and `mapv` with elementwise closures. Each is
//! gradchecked in f64 at random inputs (strided and transposed operands where they
//! matter); the simple ones also against values computed by hand.

#![allow(clippy::excessive_precision, clippy::needless_borrow, clippy::ptr_arg)]

use crate::rng::Rng;
use backprop::{grad, gradcheck};
use ndarray::{Array1, Array2, Array3, Axis, Slice, array, concatenate, s, stack};

// ---------------------------------------------------------------- select

/// An embedding lookup: rows of `table` picked by `ids` (repeats add up in reverse).
#[grad(table)]
fn select_rows(table: &Array2<f64>, ids: &[usize], w: &Array2<f64>) -> f64 {
    let e = table.select(Axis(0), ids);
    (&e * w).sum()
}

/// `&Vec<usize>` ids, borrowed, and a column gather on a transposed table.
#[grad(table)]
fn select_cols_t(table: &Array2<f64>, ids: &Vec<usize>, w: &Array2<f64>) -> f64 {
    let e = table.t().select(Axis(1), &ids);
    (&e * w).sum()
}

/// Ids made in the function.
#[grad(table)]
fn select_local_ids(table: &Array2<f64>, n: usize) -> f64 {
    let ids = vec![n, 0, n - 1, n];
    let e = table.select(Axis(0), &ids);
    e.mapv(|v| v * v).sum()
}

#[test]
fn select_by_hand() {
    let table = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let w = array![[1.0, 10.0], [100.0, 1000.0], [0.5, 0.25]];
    let (l, g) = select_rows_grad(&table, &[2, 0, 2], &w);
    assert_eq!(l, 5.0 + 60.0 + 100.0 + 2000.0 + 2.5 + 1.5);
    assert_eq!(g.table, array![[100.0, 1000.0], [0.0, 0.0], [1.5, 10.25]]);
}

#[test]
fn gradcheck_select() {
    let mut r = Rng(1);
    let table = r.array((5, 3));
    let ids = vec![4usize, 0, 4, 2];
    let w = r.array((4, 3));
    gradcheck!(select_rows(table = &table, ids = const &ids, w = const &w)).assert();
    let w = r.array((3, 4));
    gradcheck!(select_cols_t(table = &table, ids = const &ids, w = const &w)).assert();
    let table = r.array((4, 3));
    gradcheck!(select_local_ids(table = &table, n = const 3)).assert();
}

// ---------------------------------------------------------------- views

/// Ranges, a step, a negative index and a single index that drops an axis.
#[grad(x)]
fn slices(x: &Array3<f64>, w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let a = x.slice(s![1, .., ..;2]);
    let b = x.slice(s![-1, 1..3, -2]);
    (&a * w).sum() + (&b * v).sum()
}

/// A slice whose bounds are locals, of a transposed view.
#[grad(x)]
fn slice_locals_t(x: &Array2<f64>, k: usize) -> f64 {
    let lo = k - 1;
    let y = x.t();
    let a = y.slice(s![lo..k + 1, ..]);
    a.mapv(|v| v * v).sum()
}

#[grad(x)]
fn slice_axis_index_axis(x: &Array3<f64>, w: &Array3<f64>, u: &Array2<f64>) -> f64 {
    let a = x.slice_axis(Axis(2), Slice::new(1, None, 2));
    let b = x.index_axis(Axis(1), 2);
    (&a * w).sum() + (&b * u).sum()
}

#[grad(x)]
fn rows_and_columns(x: &Array2<f64>, i: usize) -> f64 {
    let r = x.row(i);
    let c = x.column(0);
    r.dot(&r) + (&c * 3.0).sum()
}

#[test]
fn views_by_hand() {
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    // L = Σ row(1)² + 3·Σ column(0) = 16 + 25 + 36 + 3·5 = 92.
    let (l, g) = rows_and_columns_grad(&x, 1);
    assert_eq!(l, 92.0);
    assert_eq!(g.x, array![[3.0, 0.0, 0.0], [11.0, 10.0, 12.0]]);
}

#[test]
fn gradcheck_views() {
    let mut r = Rng(2);
    let x = r.array((3, 4, 5));
    let w = r.array((4, 3));
    let v = r.array(2);
    gradcheck!(slices(x = &x, w = const &w, v = const &v)).assert();
    let w = r.array((3, 4, 2));
    let u = r.array((3, 5));
    gradcheck!(slice_axis_index_axis(x = &x, w = const &w, u = const &u)).assert();
    let x2 = r.array((4, 3));
    gradcheck!(slice_locals_t(x = &x2, k = const 1)).assert();
    gradcheck!(rows_and_columns(x = &x2, i = const 2)).assert();
}

// ---------------------------------------------------------------- shapes

#[grad(x)]
fn shapes(x: &Array2<f64>, w: &Array3<f64>) -> f64 {
    let a = x.view().insert_axis(Axis(0));
    let b = x.view().permuted_axes([1, 0]).insert_axis(Axis(2));
    let c = (&a * &a).remove_axis(Axis(0));
    let d = x.view().reversed_axes();
    (&b * w).sum() + c.sum() + d.column(1).sum()
}

#[grad(x)]
fn reshapes(x: &Array2<f64>, w: &Array3<f64>, n: usize) -> f64 {
    let xt = x.t();
    let y = xt.to_shape((2, n, 3)).unwrap();
    let z = x.exp().into_shape_with_order((3, 2 * n)).unwrap();
    (&y * w).sum() + z.row(1).sum()
}

#[grad(x)]
fn permute3(x: &Array3<f64>, w: &Array3<f64>) -> f64 {
    let y = x.view().permuted_axes([2, 0, 1]);
    (&y * w).sum()
}

#[test]
fn gradcheck_shapes() {
    let mut r = Rng(3);
    let x = r.array((2, 3));
    let w = r.array((3, 2, 1));
    gradcheck!(shapes(x = &x, w = const &w)).assert();
    let w = r.array((2, 1, 3));
    gradcheck!(reshapes(x = &x, w = const &w, n = const 1)).assert();
    let x = r.array((2, 3, 4));
    let w = r.array((4, 2, 3));
    gradcheck!(permute3(x = &x, w = const &w)).assert();
}

#[test]
fn shapes_by_hand() {
    // Σ (x⊙x) + column 1 of xᵀ (row 1 of x) + Σ xᵀ⊙w with w = 0.
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let w = Array3::zeros((3, 2, 1));
    let (l, g) = shapes_grad(&x, &w);
    assert_eq!(l, 91.0 + 15.0);
    assert_eq!(g.x, array![[2.0, 4.0, 6.0], [9.0, 11.0, 13.0]]);
}

/// `insert_axis` on an owned array, as a loop's state that the loop reassigns with an
/// owned array (it consumes its receiver, as ndarray spells it; E0308 before).
#[grad]
fn owned_state(x: &Array1<f64>, w: &Array2<f64>) -> f64 {
    let mut st = x.clone().insert_axis(Axis(0));
    for _ in 0..2 {
        st = st.dot(w);
    }
    st.sum()
}

/// The same, its receiver read again (`a`): a view of it, `a` kept for its rule.
#[grad]
fn owned_state_receiver_read(x: &Array1<f64>, w: &Array2<f64>) -> f64 {
    let a = x * 2.0;
    let mut st = a
        .clone()
        .insert_axis(Axis(0))
        .into_shape_with_order((1, 2))
        .unwrap();
    for _ in 0..2 {
        st = st.dot(w).mapv(f64::tanh);
    }
    st.sum() + (&a * &a).sum()
}

#[test]
fn owned_state_by_hand() {
    // L = x·W·W·1: ∂L/∂x = W·W·1 = (4, 9), ∂L/∂W = xᵀ(W·1)ᵀ + (x·W)ᵀ1ᵀ.
    let x = array![1.0, 1.0];
    let w = array![[2.0, 0.0], [0.0, 3.0]];
    let (l, g) = owned_state_grad(&x, &w);
    assert_eq!(l, 13.0);
    assert_eq!(g.x, array![4.0, 9.0]);
    assert_eq!(g.w, array![[4.0, 5.0], [5.0, 6.0]]);
    let mut r = Rng(11);
    let x = r.array(2);
    let w = r.array((2, 2));
    gradcheck!(owned_state(x = &x, w = &w)).assert();
    gradcheck!(owned_state_receiver_read(x = &x, w = &w)).assert();
}

// ---------------------------------------------------------------- joins

#[grad(a, b)]
fn joins(a: &Array2<f64>, b: &Array2<f64>, w: &Array2<f64>, u: &Array3<f64>) -> f64 {
    let c = concatenate(Axis(1), &[a.view(), b.view(), a.view()]).unwrap();
    let bt = b.t();
    let d = ndarray::stack(Axis(0), &[a.view(), bt.slice(s![-2.., ..])]).unwrap();
    (&c * w).sum() + (&d * u).sum()
}

#[grad(a, b)]
fn join_macros(a: &Array2<f64>, b: &Array2<f64>, w: &Array2<f64>, u: &Array3<f64>) -> f64 {
    let e = a.exp();
    let c = ndarray::concatenate![Axis(0), e, b.t()];
    let d = stack![Axis(2), *a, e];
    (&c * w).sum() + (&d * u).sum()
}

#[test]
fn joins_by_hand() {
    let a = array![[1.0, 2.0], [3.0, 4.0]];
    let b = array![[5.0, 6.0], [7.0, 8.0]];
    // c = [a | b | a], w picks columns with weights 1..6; d is zero-weighted.
    let w = array![
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ];
    let u = Array3::zeros((2, 2, 2));
    let (l, g) = joins_grad(&a, &b, &w, &u);
    assert_eq!(
        l,
        (1.0 + 3.0) + 2.0 * (2.0 + 4.0) + 3.0 * 12.0 + 4.0 * 14.0 + 5.0 * 4.0 + 6.0 * 6.0
    );
    assert_eq!(g.a, array![[6.0, 8.0], [6.0, 8.0]]);
    assert_eq!(g.b, array![[3.0, 4.0], [3.0, 4.0]]);
}

#[test]
fn gradcheck_joins() {
    let mut r = Rng(4);
    // c = [a | b | a] is 2×7; d stacks a and the last two rows of bᵀ: 2×2×2.
    let a = r.array((2, 2));
    let b = r.array((2, 3));
    let w = r.array((2, 7));
    let u = r.array((2, 2, 2));
    gradcheck!(joins(a = &a, b = &b, w = const &w, u = const &u)).assert();
    let a = r.array((2, 3));
    let b = r.array((3, 2));
    let w = r.array((4, 3));
    let u = r.array((2, 3, 2));
    gradcheck!(join_macros(a = &a, b = &b, w = const &w, u = const &u)).assert();
}

#[test]
#[should_panic(expected = "concatenate: cannot concatenate 2×3 and 3×2 along axis 0")]
fn concatenate_names_both_shapes() {
    let a = Array2::<f64>::zeros((2, 3));
    let b = Array2::<f64>::zeros((3, 2));
    let _ = join_macros_bad_grad(&a, &b);
}

#[grad(a, b)]
fn join_macros_bad(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let c = concatenate![Axis(0), *a, *b];
    c.sum()
}

// ---------------------------------------------------------------- max and min along an axis

#[grad(x)]
fn fold_max(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let m = x.fold_axis(Axis(1), f64::NEG_INFINITY, |&a, &b| a.max(b));
    (&m * w).sum()
}

#[grad(x)]
fn map_max_min(x: &Array2<f64>, w: &Array1<f64>) -> f64 {
    let xt = x.t();
    let m = xt.map_axis(Axis(1), |r| r.fold(f64::NEG_INFINITY, |a, &b| a.max(b)));
    let n = x.fold_axis(Axis(0), f64::INFINITY, |a, b| a.min(*b));
    (&m * w).sum() + (&n * &n).sum()
}

/// A numerically stable softmax row by row, as users write it.
#[grad(x)]
fn stable_softmax(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let m = x.map_axis(Axis(1), |r| r.fold(f64::NEG_INFINITY, |a, &b| a.max(b)));
    let e = (x - &m.insert_axis(Axis(1))).mapv(f64::exp);
    let z = e.sum_axis(Axis(1)).insert_axis(Axis(1));
    let p = &e / &z;
    (&p * w).sum()
}

#[test]
fn max_ties_split_evenly() {
    let x = array![[1.0, 3.0, 3.0, 3.0], [2.0, f64::NAN, 0.0, -1.0]];
    let w = array![6.0, 1.0];
    let (l, g) = fold_max_grad(&x, &w);
    assert_eq!(l, 18.0 + 2.0);
    assert_eq!(g.x, array![[0.0, 2.0, 2.0, 2.0], [1.0, 0.0, 0.0, 0.0]]);
}

#[test]
fn gradcheck_max_min() {
    let mut r = Rng(5);
    let x = r.array((3, 4));
    let w = r.array(3);
    gradcheck!(fold_max(x = &x, w = const &w)).assert();
    let x = r.array((4, 3));
    gradcheck!(map_max_min(x = &x, w = const &w)).assert();
    let x = r.array((3, 5));
    let w = r.array((3, 5));
    gradcheck!(stable_softmax(x = &x, w = const &w)).assert();
}

// ---------------------------------------------------------------- var, std, mean, sum

#[grad(x)]
fn moments(x: &Array2<f64>, w: &Array1<f64>, u: &Array1<f64>) -> f64 {
    let v = x.var_axis(Axis(1), 0.0);
    let s = x.t().std_axis(Axis(0), 1.0);
    let m = x.mean_axis(Axis(0)).unwrap();
    let t = x.sum_axis(Axis(1));
    (&v * w).sum() + (&s * w).sum() + (&m * u).sum() + (&t * &t).sum()
}

#[test]
fn var_by_hand() {
    // var of [1, 3] is 1 (ddof 0): ∂/∂x = 2(x − 2)/2 = [−1, 1]; std (ddof 1) is √2:
    // ∂/∂x = (x − 2)/(1·√2).
    let x = array![[1.0, 3.0]];
    let w = array![1.0];
    let u = array![0.0, 0.0];
    let (l, g) = moments_grad(&x, &w, &u);
    assert!((l - (1.0 + 2f64.sqrt() + 16.0)).abs() < 1e-12);
    let r = 1.0 / 2f64.sqrt();
    let expected = array![[-1.0 - r + 8.0, 1.0 + r + 8.0]];
    assert!(
        (&g.x - &expected).iter().all(|d| d.abs() < 1e-12),
        "{}",
        g.x
    );
}

#[test]
fn std_of_a_constant_lane_has_gradient_zero() {
    let x = array![[2.0, 2.0, 2.0]];
    let (_, g) = moments_grad(&x, &array![1.0], &array![0.0, 0.0, 0.0]);
    assert!(g.x.iter().all(|v| v.is_finite()), "{}", g.x);
}

#[test]
fn gradcheck_moments() {
    let mut r = Rng(6);
    let x = r.array((3, 4));
    let w = r.array(3);
    let u = r.array(4);
    gradcheck!(moments(x = &x, w = const &w, u = const &u)).assert();
}

// ---------------------------------------------------------------- mapv

#[grad(x)]
fn mapv_forms(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let a = x.mapv(|v| v.tanh());
    let b = x.mapv(f64::tanh);
    let c = x.t().mapv(|v| 1.0 / (1.0 + (-v).exp()));
    (&a * w).sum() + (&b * &b).sum() + (&c * &c.t().dot(w)).sum()
}

/// A block body, a captured active scalar and `powi`.
#[grad(x, s)]
fn mapv_block(x: &Array1<f64>, s: f64) -> f64 {
    let y = x.mapv(|v| {
        let e = (v * s).exp();
        e / (1.0 + e) + v.powi(3)
    });
    y.sum()
}

#[test]
fn mapv_by_hand() {
    let x = array![0.0, 1.0];
    let (l, g) = mapv_block_grad(&x, 2.0);
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    assert!((l - (0.5 + sig(2.0) + 1.0)).abs() < 1e-15);
    let ds = |z: f64| sig(z) * (1.0 - sig(z));
    assert!((g.x[0] - 2.0 * ds(0.0)).abs() < 1e-15);
    assert!((g.x[1] - (2.0 * ds(2.0) + 3.0)).abs() < 1e-15);
    assert!((g.s - ds(2.0)).abs() < 1e-15);
}

#[derive(Clone, Debug, backprop::Differentiable)]
struct Tempered {
    w: Array2<f64>,
    temp: f64,
}

/// A float field captured by the closure (`p.temp`), as a local would be.
#[grad(p)]
fn mapv_field(p: &Tempered, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for _ in 0..2 {
        h = h.dot(&p.w).mapv(|v| (v * p.temp).tanh());
    }
    h.sum()
}

#[test]
fn mapv_captures_a_field() {
    // One step by hand: Σ tanh(t·x·w) with x = [[1]], w = [[2]], t = 0.5, twice:
    // h₁ = tanh(1), h₂ = tanh(t·2·h₁); ∂h₂/∂t = (1 − h₂²)·2·(h₁ + t·(1 − h₁²)·2).
    let p = Tempered {
        w: array![[2.0]],
        temp: 0.5,
    };
    let (l, g) = mapv_field_grad(&p, &array![[1.0]]);
    let h1 = 1.0_f64.tanh();
    let h2 = (2.0 * 0.5 * h1).tanh();
    assert!((l - h2).abs() < 1e-15);
    let dt = (1.0 - h2 * h2) * 2.0 * (h1 + 0.5 * (1.0 - h1 * h1) * 2.0);
    assert!((g.p.temp - dt).abs() < 1e-14, "{} {dt}", g.p.temp);
    let mut r = Rng(8);
    let p = Tempered {
        w: r.array((3, 3)),
        temp: 0.8,
    };
    let x = r.array((2, 3));
    gradcheck!(mapv_field(p = &p, x = const &x)).assert();
}

#[test]
fn gradcheck_mapv() {
    let mut r = Rng(7);
    let x = r.array((3, 3));
    let w = r.array((3, 3));
    gradcheck!(mapv_forms(x = &x, w = const &w)).assert();
    let x = r.array(5);
    gradcheck!(mapv_block(x = &x, s = 0.7)).assert();
}

/// ndarray's `map`, whose closure takes `&v`: `|&v| ..`, `*v` in the body, and a
/// method on the reference (auto-deref), on an argument and on an array expression.
#[grad(x)]
fn map_forms(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let a = x.map(|&v| v.tanh());
    let b = (x * w).map(|v| *v * *v);
    let c = x.t().map(|v: &f64| v.exp() * 0.5);
    (&a * w).sum() + b.sum() + c.sum()
}

/// `map_forms` with `mapv`: the same operations.
#[grad(x)]
fn map_forms_as_mapv(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let a = x.mapv(|v| v.tanh());
    let b = (x * w).mapv(|v| v * v);
    let c = x.t().mapv(|v| v.exp() * 0.5);
    (&a * w).sum() + b.sum() + c.sum()
}

#[test]
fn map_is_mapv() {
    let x = array![[0.3, -1.2], [0.5, 2.0]];
    let w = array![[1.5, 0.25], [-0.5, 2.0]];
    let (l, g) = map_forms_grad(&x, &w);
    let (l2, g2) = map_forms_as_mapv_grad(&x, &w);
    assert_eq!(l, l2);
    assert_eq!(g.x, g2.x);
    // By hand at x[0][0]: w·(1 − tanh²x) + 2·x·w² + ½·eˣ.
    let (x0, w0) = (0.3f64, 1.5f64);
    let by_hand = w0 * (1.0 - x0.tanh().powi(2)) + 2.0 * x0 * w0 * w0 + 0.5 * x0.exp();
    assert!((g.x[[0, 0]] - by_hand).abs() < 1e-14);
    let mut r = Rng(11);
    let (x, w) = (r.array((3, 2)), r.array((3, 2)));
    gradcheck!(map_forms(x = &x, w = const &w)).assert();
}

/// The same in generic code: constants as `T::zero()`/`T::one()`, inside the closure too.
#[grad(x, c)]
fn float_methods_generic<T: backprop::Real>(x: &Array2<T>, c: T) -> T {
    let z = T::zero();
    let a = x.mapv(|v| v.max(z) + v.min(c) + v.clamp(z, c) + (v.abs() + c).log(c + T::one()));
    a.sum() + x.powf(c).sum() + x.hypot(c).sum() + x.clamp(-c, c).sum()
}

#[test]
fn float_methods_in_generic_code() {
    let mut r = Rng(16);
    let x = r.array_map((2, 3), |v| 0.2 + v.abs());
    gradcheck!(float_methods_generic(x = &x, c = 0.65)).assert();
    let (v64, g64) = float_methods_generic_grad(&x, 0.65);
    let (v32, g32) = float_methods_generic_grad(&x.mapv(|v| v as f32), 0.65f32);
    assert!((v64 - v32 as f64).abs() < 1e-4 * v64.abs());
    assert!((g64.c - g32.c as f64).abs() < 1e-4 * g64.c.abs().max(1.0));
}

// ---------------------------------------------------------------- iterators over n-D arrays

/// `.iter()` over a 2-D array (a local made by `dot`, and an argument) walks it in
/// row-major order, as ndarray's iterator does.
#[grad]
fn iter_2d(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h = x.dot(w);
    let squares: f64 = h.iter().map(|v| v * v).sum();
    // On a view and on a temporary, without a binding.
    let transposed: f64 = h.t().iter().map(|v| v * v).sum();
    let folded = (&h * 2.0)
        .mapv(|v| v.tanh())
        .iter()
        .fold(0.0, |acc, v| acc + v * 3.0);
    let mut numbered = 0.0;
    for (i, v) in x.iter().enumerate() {
        numbered += v * (i as f64 + 1.0);
    }
    squares + numbered + transposed - squares + folded
}

#[test]
fn iterators_over_2d_arrays_walk_row_major() {
    let x = array![[1.0, 2.0], [3.0, 4.0]];
    let w = array![[1.0, 0.0], [0.0, 2.0]];
    // h = [[1, 4], [3, 8]]: Σh² = 90; numbered = 1·1 + 2·2 + 3·3 + 4·4 = 30.
    // The fold adds 3·Σ tanh(2h), whose gradient is 6(1 − tanh²(2h)) per element of h.
    let (v, g) = iter_2d_grad(&x, &w);
    let h = x.dot(&w);
    let t = h.mapv(|v| (2.0 * v).tanh());
    assert!((v - (90.0 + 30.0 + 3.0 * t.sum())).abs() < 1e-12);
    // d_x = (2h + 6(1 − t²))·wᵀ + [1, 2; 3, 4] (the numbers in row-major order).
    let dh = &h * 2.0 + t.mapv(|v| 6.0 * (1.0 - v * v));
    let want_x = dh.dot(&w.t()) + array![[1.0, 2.0], [3.0, 4.0]];
    assert!(
        g.x.iter().zip(&want_x).all(|(a, b)| (a - b).abs() < 1e-12),
        "{}",
        g.x
    );
    let want_w = x.t().dot(&dh);
    assert!(
        g.w.iter().zip(&want_w).all(|(a, b)| (a - b).abs() < 1e-12),
        "{}",
        g.w
    );
    // A transposed argument is walked in its logical (row-major) order too.
    let mut r = Rng(15);
    let (xt, w) = (r.array((3, 2)), r.array((3, 3)));
    gradcheck!(iter_2d(x = &xt.t().to_owned(), w = &w)).assert();
}

// ---------------------------------------------------------------- as_standard_layout

/// Attention heads merged the way a user reshapes them: a permuted view made row-major
/// with `as_standard_layout`, then reshaped; a transposed product made row-major too.
#[grad]
fn heads_merged(x: &Array3<f64>, w: &Array2<f64>) -> f64 {
    let y = x.view().permuted_axes([1, 0, 2]);
    let z = y
        .as_standard_layout()
        .into_shape_with_order((6, 2))
        .unwrap();
    let h = z.dot(w).tanh();
    let ht = h.t();
    let q = ht.as_standard_layout();
    (&q * &q).sum() + z.sum()
}

#[test]
fn as_standard_layout_passes_the_cotangent_through() {
    let mut r = Rng(14);
    let (x, w) = (r.array((2, 3, 2)), r.array((2, 3)));
    gradcheck!(heads_merged(x = &x, w = &w)).assert();
    // By hand: z's elements are x's in the permuted order, each read once by z.sum().
    #[grad]
    fn flat_sum(x: &Array3<f64>) -> f64 {
        let y = x.view().permuted_axes([2, 1, 0]);
        let z = y.as_standard_layout();
        (&z * &z).sum() + z.sum()
    }
    let (v, g) = flat_sum_grad(&x);
    assert!((v - (x.mapv(|a| a * a).sum() + x.sum())).abs() < 1e-13);
    assert_eq!(g.x, x.mapv(|a| 2.0 * a + 1.0));
}

// ------------------------------------- float methods with float arguments, on arrays

/// ReLU and leaky ReLU written as a PyTorch user writes them by hand: `max` with a
/// literal, and with a multiple of the element (two arrays of one shape).
#[grad(x)]
fn relu_by_max(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let r = x.mapv(|v| v.max(0.0));
    let leaky = x.mapv(|v| v.max(0.01 * v));
    (&r * w).sum() + leaky.sum()
}

/// A captured active float in `min`, and the receiver on the float side (`c.max(v)`).
#[grad(x, c)]
fn min_with_active_float(x: &Array1<f64>, c: f64) -> f64 {
    let a = x.mapv(|v| v.min(c));
    let b = x.mapv(|v| (2.0 * c).max(v));
    a.sum() + b.sum()
}

/// ndarray's own `powf`, `clamp`, `hypot` and `log` on arrays, the exponent, bound and
/// base active floats; `powf` and `clamp` inside `mapv` too.
#[grad(x, p, lo, hi)]
fn float_methods_on_arrays(x: &Array2<f64>, p: f64, lo: f64, hi: f64, w: &Array2<f64>) -> f64 {
    let a = x.powf(p);
    let b = x.clamp(lo, hi);
    let c = x.hypot(p);
    let e = x.log(p + 1.0);
    let f = x.mapv(|v| v.powf(p).clamp(lo, 3.0) * 2.0);
    (&a * w).sum() + (&b * &b).sum() + c.sum() + (&e * w).sum() + f.sum()
}

#[test]
fn float_methods_on_arrays_by_hand() {
    // relu_by_max at x = [[2, −1], [0, 3]], w = [[1, 2], [3, 4]]: max's tie at 0 splits
    // evenly (½), as the scalar rule; leaky: 1 where v > 0.01v, 0.01 where v < 0.
    let x = array![[2.0, -1.0], [0.0, 3.0]];
    let w = array![[1.0, 2.0], [3.0, 4.0]];
    let (l, g) = relu_by_max_grad(&x, &w);
    assert_eq!(l, 2.0 + 12.0 + (2.0 - 0.01 + 0.0 + 3.0));
    assert_eq!(
        g.x,
        array![
            [1.0 + 1.0, 0.01],
            [0.5 * 3.0 + 0.5 * (1.0 + 0.01), 4.0 + 1.0]
        ]
    );
    // min_with_active_float at x = [1, 4], c = 2: min picks 1 (x) and 2 (c);
    // max(4, 1) and max(4, 4) — the tie at x = 4 splits evenly.
    let (l, g) = min_with_active_float_grad(&array![1.0, 4.0], 2.0);
    assert_eq!(l, 1.0 + 2.0 + 4.0 + 4.0);
    assert_eq!(g.x, array![1.0 + 0.0, 0.0 + 0.5]);
    assert_eq!(g.c, 1.0 + 2.0 * (1.0 + 0.5));
    // x.powf(p) at x = [[1, 2]], p = 3: ∂x = 3x², ∂p = Σ w·xᵖ ln x = 2·8 ln 2.
    #[grad(x, p)]
    fn pow_w(x: &Array2<f64>, p: f64, w: &Array2<f64>) -> f64 {
        (&x.powf(p) * w).sum()
    }
    let (l, g) = pow_w_grad(&array![[1.0, 2.0]], 3.0, &array![[1.0, 2.0]]);
    assert_eq!(l, 1.0 + 16.0);
    assert_eq!(g.x, array![[3.0, 2.0 * 12.0]]);
    assert!((g.p - 16.0 * 2f64.ln()).abs() < 1e-14);
    // clamp: ∂x is 1 strictly inside, ∂lo is 1 where x < lo.
    #[grad(x, lo)]
    fn clamped(x: &Array1<f64>, lo: f64) -> f64 {
        x.clamp(lo, 1.0).sum()
    }
    let (l, g) = clamped_grad(&array![-1.0, 0.5, 2.0], 0.0);
    assert_eq!(l, 0.0 + 0.5 + 1.0);
    assert_eq!((g.x, g.lo), (array![0.0, 1.0, 0.0], 1.0));
}

#[test]
fn gradcheck_float_methods_on_arrays() {
    let mut r = Rng(12);
    let x = r.array((3, 4));
    let w = r.array((3, 4));
    gradcheck!(relu_by_max(x = &x, w = const &w)).assert();
    let x1 = r.array(5);
    gradcheck!(min_with_active_float(x = &x1, c = 0.3)).assert();
    // Positive x for powf and log; lo inside the range of x so both sides are hit.
    let xp = r.array_map((3, 4), |v| 0.5 + v.abs() * 2.0);
    gradcheck!(float_methods_on_arrays(x = &xp, p = 1.3, lo = 1.1, hi = 2.0, w = const &w))
        .assert();
    // f32 agrees with f64.
    #[grad(x)]
    fn relu32(x: &Array2<f32>) -> f32 {
        x.mapv(|v| v.max(0.0) * v).sum()
    }
    let (_, g) = relu32_grad(&array![[1.5f32, -2.0]]);
    assert_eq!(g.x, array![[3.0f32, 0.0]]);
}

// ---------------------------------------------------------------- f32

#[grad(x)]
fn mixed_f32(x: &Array2<f32>, ids: &[usize]) -> f32 {
    let e = x.select(Axis(0), ids).mapv(|v| v.tanh());
    let m = e.fold_axis(Axis(1), f32::NEG_INFINITY, |&a, &b| a.max(b));
    let c = concatenate(Axis(0), &[m.view(), x.slice(s![.., 0])]).unwrap();
    c.sum() + x.var_axis(Axis(0), 1.0).sum()
}

#[grad(x)]
fn mixed_f64(x: &Array2<f64>, ids: &[usize]) -> f64 {
    let e = x.select(Axis(0), ids).mapv(|v| v.tanh());
    let m = e.fold_axis(Axis(1), f64::NEG_INFINITY, |&a, &b| a.max(b));
    let c = concatenate(Axis(0), &[m.view(), x.slice(s![.., 0])]).unwrap();
    c.sum() + x.var_axis(Axis(0), 1.0).sum()
}

#[test]
fn f32_agrees_with_f64() {
    let mut r = Rng(8);
    let x = r.array((4, 3));
    let ids = [3usize, 1, 3];
    gradcheck!(mixed_f64(x = &x, ids = const &ids[..])).assert();
    let (l64, g64) = mixed_f64_grad(&x, &ids);
    let (l32, g32) = mixed_f32_grad(&x.mapv(|v| v as f32), &ids);
    assert!((l64 - l32 as f64).abs() < 1e-5);
    assert!(
        g64.x
            .iter()
            .zip(&g32.x)
            .all(|(a, b)| (a - *b as f64).abs() < 1e-5)
    );
}

/// Exact GELU written by hand in a `mapv`, with `backprop::erf` as README spells it for
/// f64 code (before, the call was refused inside `mapv`; `v.erf()` was accepted).
#[grad]
fn gelu_by_hand(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let z = x.dot(w);
    let y = z.mapv(|v| 0.5 * v * (1.0 + backprop::erf(v * std::f64::consts::FRAC_1_SQRT_2)));
    y.sum()
}

#[grad]
fn gelu_from_ops(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let z = x.dot(w);
    backprop::ops::gelu_exact(&z).sum()
}

#[test]
fn erf_in_mapv_is_exact_gelu() {
    let x = array![[0.3, -1.2, 0.8], [2.0, 0.1, -0.4]];
    let w = array![[0.5, -0.3], [0.2, 0.9], [-1.1, 0.4]];
    let (v, g) = gelu_by_hand_grad(&x, &w);
    let (vo, go) = gelu_from_ops_grad(&x, &w);
    assert!((v - vo).abs() < 1e-14, "{v} vs {vo}");
    for (a, b) in
        g.w.iter()
            .zip(go.w.iter())
            .chain(g.x.iter().zip(go.x.iter()))
    {
        assert!((a - b).abs() < 1e-13, "{a} vs {b}");
    }
    gradcheck!(gelu_by_hand(x = &x, w = &w)).assert();
}

// ---------------------------------------------------------------- consuming slices

/// `slice_move` and `index_axis_move` are the view's copy (a tryout got a misleading
/// "macros not supported" first and a second error).
#[grad]
fn consuming_slices(x: &Array2<f64>) -> f64 {
    let a = x.dot(&x.t()).slice_move(s![1.., ..;2]);
    let b = x.mapv(f64::sin).index_axis_move(Axis(1), 0);
    (&a * &a).sum() + b.sum()
}

#[grad]
fn consuming_slices_as_views(x: &Array2<f64>) -> f64 {
    let a = x.dot(&x.t()).slice(s![1.., ..;2]).to_owned();
    let b = x.mapv(f64::sin).index_axis(Axis(1), 0).to_owned();
    (&a * &a).sum() + b.sum()
}

#[test]
fn consuming_slices_are_views_copied() {
    let x = array![[0.3, -0.2, 0.5], [0.1, 0.4, -0.6], [0.2, 0.2, 0.9]];
    let (l, g) = consuming_slices_grad(&x);
    let (l2, g2) = consuming_slices_as_views_grad(&x);
    assert_eq!(l, l2);
    assert_eq!(g.x, g2.x);
    gradcheck!(consuming_slices(x = &x)).assert();
}

// ---------------------------------------------------------------- activations in mapv

/// The scalar activations called inside a `mapv` closure are their array ops (a tryout
/// found `backprop::sigmoid(v)` refused there while `backprop::erf(v)` was accepted).
#[grad]
fn activations_in_mapv(x: &Array2<f64>) -> f64 {
    let a = x.mapv(|v| v * backprop::sigmoid(v));
    let b = x.mapv(|v| backprop::gelu(2.0 * v) + backprop::softplus(v) - backprop::relu(v));
    a.sum() + (&b * &b).sum() + x.mapv(backprop::silu).sum()
}

#[grad]
fn activations_as_ops(x: &Array2<f64>) -> f64 {
    let a = x * &backprop::ops::sigmoid(x);
    let b = backprop::ops::gelu(&(x * 2.0)) + backprop::ops::softplus(x) - backprop::ops::relu(x);
    a.sum() + (&b * &b).sum() + backprop::ops::silu(x).sum()
}

#[test]
fn activations_in_mapv_are_the_ops() {
    let x = array![[0.3, -1.2], [0.5, 2.0]];
    let (l, g) = activations_in_mapv_grad(&x);
    let (l2, g2) = activations_as_ops_grad(&x);
    assert_eq!(l, l2);
    assert_eq!(g.x, g2.x);
    // By hand at x = 0: a′ = σ(0) = ½; b = gelu(0) + softplus(0) − relu(0) = ln 2 and
    // b′ = 2·gelu′(0) + σ(0) − relu′(0) = 2·½ + ½ − 0, so (b²)′ = 2·ln 2·3/2; silu′(0) = ½.
    let (_, g0) = activations_in_mapv_grad(&array![[0.0]]);
    assert!((g0.x[[0, 0]] - (0.5 + 3.0 * 2f64.ln() + 0.5)).abs() < 1e-15);
    let x = Rng(5).array((3, 2));
    gradcheck!(activations_in_mapv(x = &x)).assert();
}

// ---------------------------------------------------------------- map and Zip as data

/// `map` whose closure is not arithmetic on the element (a comparison, a cast, the
/// element itself) stays ndarray's `map`, data here; `Zip` over arrays that are not
/// differentiated is data too; `map` on a field and chained `map`s are `mapv`s; an
/// activation of a captured scalar inside `mapv` is the scalar rule. (Each compiled
/// before today's `map`/`Zip` changes, or should have: a tryout of them found these.)
#[grad(w, s)]
fn map_as_data(w: &Array1<f64>, x: &Array1<f64>, labels: &Array1<f64>, s: f64) -> f64 {
    let mask = x.map(|&v| v > 0.0);
    let ids = labels.map(|&v| v as usize);
    let same = x.map(|&v| v);
    let prod = ndarray::Zip::from(x)
        .and(labels)
        .map_collect(|&a, &b| a * b);
    let mut total = 0.0;
    for i in 0..mask.len() {
        if mask[i] {
            total += w[i] * (ids[i] as f64) + w[i] * same[i];
        }
    }
    let chained = w.map(|&v| v * 2.0).map(|v| v.tanh());
    total + (w * &prod).sum() + chained.sum() + w.mapv(|v| v * backprop::sigmoid(s)).sum()
}

#[derive(Clone, Debug, backprop::Differentiable)]
struct Gain {
    w: Array1<f64>,
}

#[grad(p)]
fn map_of_a_field(p: &Gain) -> f64 {
    p.w.map(|&v| v * v).sum()
}

#[test]
fn map_and_zip_on_data() {
    let w = array![0.5, -0.25, 1.0];
    let x = array![1.0, -2.0, 3.0];
    let labels = array![2.0, 1.0, 3.0];
    let s = 0.3;
    let (_, g) = map_as_data_grad(&w, &x, &labels, s);
    let sig = 1.0 / (1.0 + (-s).exp());
    for i in 0..3 {
        let masked = if x[i] > 0.0 { labels[i] + x[i] } else { 0.0 };
        let chained = 2.0 * (1.0 - (2.0 * w[i]).tanh().powi(2));
        let expect = masked + x[i] * labels[i] + chained + sig;
        assert!(
            (g.w[i] - expect).abs() < 1e-14,
            "{i}: {} vs {expect}",
            g.w[i]
        );
    }
    assert!((g.s - w.sum() * sig * (1.0 - sig)).abs() < 1e-15);
    gradcheck!(map_as_data(w = &w, x = const &x, labels = const &labels, s = s)).assert();
    let (_, gp) = map_of_a_field_grad(&Gain { w: w.clone() });
    assert_eq!(gp.p.w, 2.0 * &w);
}

/// ndarray's `remove_axis` is `index_axis_move(axis, 0)`: on an axis longer than 1 it
/// keeps index 0, so the gradient is zero at the other indices.
/// Pins: the pullback put the cotangent back as a length-1 axis, and `select`'s
/// pullback broadcast it over every index (found by the forward mode's check).
#[grad]
fn first_of_an_axis(x: &Array2<f64>) -> f64 {
    let r = x.view().remove_axis(Axis(0));
    (&r * &r).sum()
}

#[grad]
fn first_of_a_selection(x: &Array3<f64>) -> f64 {
    x.select(Axis(1), &[1, 0, 1]).remove_axis(Axis(0)).sum()
}

#[test]
fn remove_axis_on_a_longer_axis_keeps_index_zero() {
    let x = array![[1.0, -2.0], [3.0, 4.0]];
    let (v, g) = first_of_an_axis_grad(&x);
    assert_eq!(v, 5.0);
    assert_eq!(g.x, array![[2.0, -4.0], [0.0, 0.0]]);
    let x3 = Array3::from_shape_fn((2, 2, 2), |(i, j, k)| (i * 4 + j * 2 + k) as f64);
    let (_, g) = first_of_a_selection_grad(&x3);
    // Index 0 of axis 0 only; column 1 of axis 1 is selected twice, column 0 once.
    assert_eq!(
        g.x,
        array![[[1.0, 1.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]]
    );
}

/// Integer arrays as arguments are data, whatever their dimension (`&Array2<usize>`
/// token ids on a bare `#[grad]`): only the float arrays are differentiated.
#[grad]
fn gather_by_a_grid_of_ids(table: &Array2<f64>, ids: &Array2<usize>) -> f64 {
    let mut total = 0.0;
    for i in 0..ids.nrows() {
        for j in 0..ids.ncols() {
            let r = table.row(ids[[i, j]]);
            total += (&r * &r).sum();
        }
    }
    total
}

/// Methods called on struct fields (`p.w.powi(2).mean()`, `p.b.tanh()`): the field is
/// borrowed as the receiver, not moved out of `p`.
#[derive(Clone, Debug, backprop::Differentiable)]
struct Small {
    w: Array2<f64>,
    b: Array1<f64>,
}

#[grad(p)]
fn field_receivers(p: &Small) -> f64 {
    let penalty = p.w.powi(2).mean().unwrap();
    let squashed = p.b.tanh();
    penalty + squashed.sum() + p.w.sum_axis(Axis(0)).dot(&p.b)
}

#[test]
fn integer_arrays_are_data_and_fields_are_receivers() {
    let table = array![[1.0, 2.0], [-1.0, 0.5], [3.0, 0.0]];
    let ids = array![[0usize, 2], [2, 2]];
    let (v, g) = gather_by_a_grid_of_ids_grad(&table, &ids);
    // Rows picked: 0, 2, 2, 2 → 1+4 + 3·9 = 32; d table = 2·count·row.
    assert_eq!(v, 32.0);
    assert_eq!(g.table, array![[2.0, 4.0], [0.0, 0.0], [18.0, 0.0]]);

    let p = Small {
        w: array![[1.0, -2.0], [0.5, 3.0]],
        b: array![0.25, -1.0],
    };
    let (v, g) = field_receivers_grad(&p);
    // mean(w²) = (1+4+0.25+9)/4; Σ tanh b; column sums (1.5, 1)·b = 0.375 − 1.
    let want = 14.25 / 4.0 + 0.25f64.tanh() + (-1.0f64).tanh() + 1.5 * 0.25 - 1.0;
    assert!((v - want).abs() < 1e-15, "{v} vs {want}");
    // d w = 2w/4 + b broadcast down each column; d b = 1 − tanh² b + column sums.
    let dw = p.w.mapv(|x| x / 2.0) + p.b.view().insert_axis(Axis(0));
    assert!((&g.p.w - &dw).iter().all(|d| d.abs() < 1e-15), "{}", g.p.w);
    let db = p.b.mapv(|x| 1.0 - x.tanh().powi(2)) + array![1.5, 1.0];
    assert!((&g.p.b - &db).iter().all(|d| d.abs() < 1e-15), "{}", g.p.b);
}

/// `reversed_axes` consumes its receiver, as `permuted_axes` does: on an owned array
/// (a product, `to_owned()`, `clone()`) that the reverse pass also reads. Pins: E0382
/// in the generated code (the reverse pass re-derived the result from the moved array).
#[grad]
fn reversed_owned(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h = x.dot(w).tanh();
    let r = h.clone().reversed_axes();
    let c = x.to_owned().reversed_axes();
    (&r * &h.t()).sum() + (&c * &c).sum() + h.reversed_axes().row(0).sum()
}

#[test]
fn reversed_axes_of_owned_arrays() {
    let x = array![[0.5, -1.0], [0.25, 2.0], [1.5, 0.0]];
    let w = array![[0.3, -0.2], [0.1, 0.4]];
    let (v, g) = reversed_owned_grad(&x, &w);
    let h = x.dot(&w).mapv(f64::tanh);
    // Σ h² + Σ x² + Σ h[.., 0]; d h = 2h + e₀ columnwise, through tanh and the product.
    let want = h.mapv(|v| v * v).sum() + x.mapv(|v| v * v).sum() + h.column(0).sum();
    assert!((v - want).abs() < 1e-14, "{v} vs {want}");
    let mut d_h = h.mapv(|v| 2.0 * v);
    d_h.column_mut(0).mapv_inplace(|v| v + 1.0);
    let d_z = &d_h * &h.mapv(|v| 1.0 - v * v);
    let d_x = d_z.dot(&w.t()) + x.mapv(|v| 2.0 * v);
    let d_w = x.t().dot(&d_z);
    assert!((&g.x - &d_x).iter().all(|d| d.abs() < 1e-14), "{}", g.x);
    assert!((&g.w - &d_w).iter().all(|d| d.abs() < 1e-14), "{}", g.w);
    gradcheck!(reversed_owned(x = &x, w = &w)).assert();
}
