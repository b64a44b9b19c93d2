//! Sums and means, whole-array and along one axis. Linear ops: the pullback broadcasts
//! the cotangent back (÷ count for means) and saves only the input shape.

use super::shape_str;
use crate::kernels::Real;
use ndarray::{Array, ArrayBase, Axis, Data, Dimension, RemoveAxis};

/// `Σ x`, all elements.
///
/// ```
/// assert_eq!(backprop::ops::sum(&ndarray::array![[1.0f64, 2.0], [3.0, 4.0]]), 10.0);
/// ```
pub fn sum<S, T, D>(x: &ArrayBase<S, D>) -> T
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    x.sum()
}

/// Pullback of [`sum`]: every element of `d_x` is `d_y`. Saves `x.raw_dim()`.
pub fn sum_vjp<T: Real, D: Dimension>(x_dim: &D, d_y: T) -> Array<T, D> {
    Array::from_elem(x_dim.clone(), d_y)
}

/// `(Σ x)/n`, all `n` elements (NaN for an empty array, as 0/0).
///
/// ```
/// assert_eq!(backprop::ops::mean(&ndarray::array![1.0f32, 2.0, 6.0]), 3.0);
/// ```
pub fn mean<S, T, D>(x: &ArrayBase<S, D>) -> T
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    x.sum() / T::from(x.len()).unwrap()
}

/// Pullback of [`mean`]: every element of `d_x` is `d_y/n`. Saves `x.raw_dim()`.
pub fn mean_vjp<T: Real, D: Dimension>(x_dim: &D, d_y: T) -> Array<T, D> {
    let n = T::from(x_dim.size()).unwrap();
    Array::from_elem(x_dim.clone(), d_y / n)
}

fn check_axis(op: &str, shape: &[usize], axis: Axis) {
    if axis.index() >= shape.len() {
        panic!(
            "{op}: axis {} out of range for shape {}",
            axis.index(),
            shape_str(shape)
        );
    }
}

/// `Σ` along `axis`, removing it (`B×n`, `Axis(0)` → `n`).
///
/// # Panics
/// If `axis` is out of range.
///
/// ```
/// use ndarray::{array, Axis};
/// assert_eq!(backprop::ops::sum_axis(&array![[1.0f64, 2.0], [3.0, 4.0]], Axis(0)), array![4.0, 6.0]);
/// ```
pub fn sum_axis<S, T, D>(x: &ArrayBase<S, D>, axis: Axis) -> Array<T, D::Smaller>
where
    S: Data<Elem = T>,
    T: Real,
    D: RemoveAxis,
{
    check_axis("sum_axis", x.shape(), axis);
    x.sum_axis(axis)
}

/// `mean` along `axis`, removing it.
///
/// # Panics
/// If `axis` is out of range.
pub fn mean_axis<S, T, D>(x: &ArrayBase<S, D>, axis: Axis) -> Array<T, D::Smaller>
where
    S: Data<Elem = T>,
    T: Real,
    D: RemoveAxis,
{
    check_axis("mean_axis", x.shape(), axis);
    let n = T::from(x.len_of(axis)).unwrap();
    x.sum_axis(axis).mapv_into(|v| v / n)
}

fn spread<S, T, D>(
    op: &str,
    x_dim: &D,
    axis: Axis,
    d_y: &ArrayBase<S, D::Smaller>,
    scale: T,
) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: RemoveAxis,
{
    check_axis(op, x_dim.slice(), axis);
    let want = x_dim.remove_axis(axis);
    if want.slice() != d_y.shape() {
        panic!(
            "{op}: x is {} so d_y must be {}, got {}",
            shape_str(x_dim.slice()),
            shape_str(want.slice()),
            shape_str(d_y.shape())
        );
    }
    let g = d_y.view().insert_axis(axis);
    let g = g.broadcast(x_dim.clone()).unwrap();
    g.mapv(|v| v * scale)
}

/// Pullback of [`sum_axis`]: `d_y` repeated along `axis`. Saves `x.raw_dim()`.
///
/// # Panics
/// If `d_y` is not `x`'s shape without `axis`.
pub fn sum_axis_vjp<S, T, D>(x_dim: &D, axis: Axis, d_y: &ArrayBase<S, D::Smaller>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: RemoveAxis,
{
    spread("sum_axis_vjp", x_dim, axis, d_y, T::one())
}

/// Pullback of [`mean_axis`]: `d_y/n` repeated along `axis` (`n` its length). Saves `x.raw_dim()`.
///
/// # Panics
/// If `d_y` is not `x`'s shape without `axis`.
pub fn mean_axis_vjp<S, T, D>(x_dim: &D, axis: Axis, d_y: &ArrayBase<S, D::Smaller>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: RemoveAxis,
{
    check_axis("mean_axis_vjp", x_dim.slice(), axis);
    let n = T::from(x_dim[axis.index()]).unwrap();
    spread("mean_axis_vjp", x_dim, axis, d_y, T::one() / n)
}
