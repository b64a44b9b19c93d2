//! ndarray methods inside `#[grad]` functions (issue #15, part 1): gathers (`select`),
//! views (`slice(s![..])`, `slice_axis`, `index_axis`, `row`, `column`), shape methods
//! (`insert_axis`, `remove_axis`, `into_shape_with_order`, `to_shape`,
//! `permuted_axes`, `reversed_axes`, `t`), joins (`concatenate`, `stack` and their
//! macros), a max or min along an axis (`fold_axis`, `map_axis`), `var_axis`,
//! `std_axis`, `mean_axis`, `sum_axis`, and `mapv` with elementwise closures. Each is
//! gradchecked in f64 at random inputs (strided and transposed operands where they
//! matter); the simple ones also against values computed by hand.

#![allow(clippy::excessive_precision, clippy::reversed_empty_ranges)]

use backprop::{grad, gradcheck};
use ndarray::{
    Array, Array1, Array2, Array3, Axis, Dimension, ShapeBuilder, Slice, array, concatenate, s,
    stack,
};

/// xorshift64*: deterministic, no dependency. Uniform in [−1, 1).
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 52) as f64 * 2.0 - 1.0
    }
    fn array<Sh: ShapeBuilder<Dim = D>, D: Dimension>(&mut self, shape: Sh) -> Array<f64, D> {
        Array::from_shape_simple_fn(shape, || self.unit())
    }
}

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
