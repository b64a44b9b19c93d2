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
