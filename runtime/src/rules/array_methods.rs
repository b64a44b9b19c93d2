//! Pullbacks of ndarray's shape, indexing and axis methods inside `#[grad]` functions
//! (`x.select(..)`, `x.slice(s![..])`, `x.insert_axis(..)`, `x.var_axis(..)`,
//! `concatenate(..)`, a max along an axis, ...). Re-exported from
//! [`tensor`](crate::rules::tensor), where `#[grad]` finds them by name.
//!
//! Every view-taking method (`slice`, `row`, `index_axis`, ...) has the same adjoint:
//! the cotangent added into a zero array of the source's shape at the place the view
//! took, which is exact for any strides, steps or negative indices since the view and
//! the write use the same slice argument.

use super::tensor::{ArrayShape, Viewable};
use crate::kernels::Real;
use crate::ops::shape_str;
use ndarray::{
    Array, Array1, ArrayView, Axis, Dimension, IntoDimension, Ix2, RemoveAxis, Slice, SliceArg, Zip,
};
use num_traits::{Float, One, Zero};

fn zeros_of<A: Real, D: Dimension>(shape: &ArrayShape<A, D>) -> Array<A, D> {
    Array::from_elem(shape.dim.clone(), A::zero())
}

// ---- gathers and views ----------------------------------------------------------------

/// `y = x.select(axis, ids)`: `∂x[ids[i]] += d[i]` along `axis` (a scatter-add: a zero
/// fill of `x`'s shape, then O(len(ids)·row) additions; repeated ids add up).
pub fn select_vjp<A: Real, D: RemoveAxis, I: AsRef<[usize]> + ?Sized>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    ids: &I,
    d: &Array<A, D>,
) -> Array<A, D> {
    let ids = ids.as_ref();
    assert_eq!(
        d.len_of(*axis),
        ids.len(),
        "select: the cotangent is {} but {} ids were selected",
        shape_str(d.shape()),
        ids.len()
    );
    // Each row is added with `+=`, which would broadcast a row of another shape.
    assert_eq!(
        d.raw_dim().remove_axis(*axis),
        shape.dim.remove_axis(*axis),
        "select: the input is {} but the cotangent is {}",
        shape_str(shape.dim.slice()),
        shape_str(d.shape())
    );
    let mut out = zeros_of(shape);
    for (k, &i) in ids.iter().enumerate() {
        let mut row = out.index_axis_mut(*axis, i);
        row += &d.index_axis(*axis, k);
    }
    out
}

/// `y = x.slice(info)` (`s![..]`): `∂x` is zero but for `d` at the sliced place.
pub fn slice_vjp<A: Real, D: Dimension, I: SliceArg<D>, E: Dimension>(
    shape: &ArrayShape<A, D>,
    info: &I,
    d: &Array<A, E>,
) -> Array<A, D> {
    let mut out = zeros_of(shape);
    out.slice_mut(info).assign(d);
    out
}

/// `y = x.slice_axis(axis, slice)`: `∂x` is zero but for `d` at the sliced place.
pub fn slice_axis_vjp<A: Real, D: Dimension>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    slice: &Slice,
    d: &Array<A, D>,
) -> Array<A, D> {
    let mut out = zeros_of(shape);
    out.slice_axis_mut(*axis, *slice).assign(d);
    out
}

/// `y = x.index_axis(axis, i)`: `∂x` is zero but for `d` at index `i` of `axis`.
pub fn index_axis_vjp<A: Real, D: RemoveAxis>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    index: &usize,
    d: &Array<A, D::Smaller>,
) -> Array<A, D> {
    let mut out = zeros_of(shape);
    out.index_axis_mut(*axis, *index).assign(d);
    out
}

/// `y = x.row(i)`: `∂x` is zero but for `d` in row `i`.
pub fn row_vjp<A: Real>(shape: &ArrayShape<A, Ix2>, i: &usize, d: &Array1<A>) -> Array<A, Ix2> {
    index_axis_vjp(shape, &Axis(0), i, d)
}

/// `y = x.column(j)`: `∂x` is zero but for `d` in column `j`.
pub fn column_vjp<A: Real>(shape: &ArrayShape<A, Ix2>, j: &usize, d: &Array1<A>) -> Array<A, Ix2> {
    index_axis_vjp(shape, &Axis(1), j, d)
}

// ---- shapes -----------------------------------------------------------------------------

/// `y = x.insert_axis(axis)`: `∂x = d` without that (length-1) axis.
pub fn insert_axis_vjp<A: Real, E: RemoveAxis>(
    axis: &Axis,
    d: &Array<A, E>,
) -> Array<A, E::Smaller> {
    d.view().remove_axis(*axis).to_owned()
}

/// `y = x.remove_axis(axis)`, which is ndarray's `x.index_axis_move(axis, 0)`: `∂x` is
/// `d` at index 0 of `axis` and zero elsewhere (the axis need not have length 1).
///
/// # Panics
/// If `d` is not `x`'s shape without `axis` (the message names both).
pub fn remove_axis_vjp<A: Real, D: RemoveAxis>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    d: &Array<A, D::Smaller>,
) -> Array<A, D> {
    let expected = shape.dim.remove_axis(*axis);
    assert_eq!(
        d.shape(),
        expected.slice(),
        "remove_axis: the input is {} but the cotangent is {}",
        shape_str(shape.dim.slice()),
        shape_str(d.shape())
    );
    let mut out = Array::zeros(shape.dim.clone());
    out.index_axis_mut(*axis, 0).assign(d);
    out
}

/// `y = x.permuted_axes(p)`: `∂x = d` permuted by the inverse of `p`, in row-major order.
pub fn permuted_axes_vjp<A: Real, D: Dimension, T: IntoDimension<Dim = D> + Clone>(
    axes: &T,
    d: &Array<A, D>,
) -> Array<A, D> {
    let perm = axes.clone().into_dimension();
    let mut inverse = perm.clone();
    for (k, &a) in perm.slice().iter().enumerate() {
        inverse.slice_mut()[a] = k;
    }
    d.view()
        .permuted_axes(inverse)
        .as_standard_layout()
        .into_owned()
}

/// `y = x.into_shape_with_order(s).unwrap()`, `x.to_shape(s).unwrap()` (row-major):
/// `∂x = d`'s elements in row-major order, in `x`'s shape.
pub fn reshape_vjp<A: Real, D: Dimension, E: Dimension>(
    shape: &ArrayShape<A, D>,
    d: &Array<A, E>,
) -> Array<A, D> {
    // A row-major cotangent (the usual case) is one copy of its memory.
    let elements = match d.as_slice() {
        Some(row_major) => row_major.to_vec(),
        None => d.iter().copied().collect(),
    };
    Array::from_shape_vec(shape.dim.clone(), elements).unwrap_or_else(|_| {
        panic!(
            "reshape: cannot put a cotangent of {} back into {}",
            shape_str(d.shape()),
            shape_str(shape.dim.slice())
        )
    })
}

// ---- joins ----------------------------------------------------------------------------

/// `ndarray::concatenate(axis, &[a, b, ..]).unwrap()` and `concatenate![axis, a, b]` in a
/// `#[grad]` forward pass: the same, but a shape mismatch panics naming every shape.
#[track_caller]
pub fn concatenate<A: Real, D: RemoveAxis>(
    what: &str,
    axis: Axis,
    arrays: &[ArrayView<'_, A, D>],
) -> Array<A, D> {
    ndarray::concatenate(axis, arrays).unwrap_or_else(|e| {
        panic!(
            "{what}: cannot concatenate {} along axis {}: {e}",
            shapes(arrays),
            axis.index()
        )
    })
}

/// `ndarray::stack(axis, &[a, b, ..]).unwrap()` and `stack![axis, a, b]`: as
/// [`concatenate`].
#[track_caller]
pub fn stack<A: Real, D: Dimension>(
    what: &str,
    axis: Axis,
    arrays: &[ArrayView<'_, A, D>],
) -> Array<A, D::Larger> {
    ndarray::stack(axis, arrays).unwrap_or_else(|e| {
        panic!(
            "{what}: cannot stack {} along axis {}: {e}",
            shapes(arrays),
            axis.index()
        )
    })
}

fn shapes<A, D: Dimension>(arrays: &[ArrayView<'_, A, D>]) -> String {
    arrays
        .iter()
        .map(|a| shape_str(a.shape()))
        .collect::<Vec<_>>()
        .join(" and ")
}

macro_rules! concatenate_parts {
    ($($name:ident($($before:ident),*; $own:ident)),* $(,)?) => {$(
        /// `y = concatenate(axis, &[x₁, x₂, ..])`: the cotangent of one input is the
        /// slice of `d` along `axis` where that input was placed (the shapes of the
        /// inputs before it give its offset).
        #[allow(clippy::too_many_arguments)]
        pub fn $name<A: Real, D: Dimension>(
            axis: &Axis,
            $($before: &ArrayShape<A, D>,)*
            $own: &ArrayShape<A, D>,
            d: &Array<A, D>,
        ) -> Array<A, D> {
            let k = axis.index();
            let start = 0 $(+ $before.dim[k])*;
            let len = $own.dim[k];
            d.slice_axis(*axis, Slice::from(start..start + len)).to_owned()
        }
    )*};
}

concatenate_parts!(
    concatenate_vjp_1(; s1),
    concatenate_vjp_2(s1; s2),
    concatenate_vjp_3(s1, s2; s3),
    concatenate_vjp_4(s1, s2, s3; s4),
    concatenate_vjp_5(s1, s2, s3, s4; s5),
    concatenate_vjp_6(s1, s2, s3, s4, s5; s6),
    concatenate_vjp_7(s1, s2, s3, s4, s5, s6; s7),
    concatenate_vjp_8(s1, s2, s3, s4, s5, s6, s7; s8),
);

macro_rules! stack_parts {
    ($($name:ident = $k:expr),* $(,)?) => {$(
        #[doc = concat!("`y = stack(axis, &[x₁, x₂, ..])`: the cotangent of input ", stringify!($k), " (from 0) is `d` at that index of `axis`.")]
        pub fn $name<A: Real, E: RemoveAxis>(axis: &Axis, d: &Array<A, E>) -> Array<A, E::Smaller> {
            d.index_axis(*axis, $k).to_owned()
        }
    )*};
}

stack_parts!(
    stack_vjp_1 = 0,
    stack_vjp_2 = 1,
    stack_vjp_3 = 2,
    stack_vjp_4 = 3,
    stack_vjp_5 = 4,
    stack_vjp_6 = 5,
    stack_vjp_7 = 6,
    stack_vjp_8 = 7,
);

// ---- reductions along an axis ---------------------------------------------------------

/// The largest element along `axis` (`x.fold_axis(axis, −∞, |&a, &b| a.max(b))`, and
/// `x.map_axis(axis, |r| r.fold(−∞, |a, &b| a.max(b)))`, which `#[grad]` lowers to this):
/// NaN elements are skipped, as `f64::max` skips them.
pub fn max_axis<X: Viewable>(x: &X, axis: Axis) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    x.as_view()
        .fold_axis(axis, X::Elem::neg_infinity(), |&a, &b| a.max(b))
}

/// The smallest element along `axis` (see [`max_axis`]).
pub fn min_axis<X: Viewable>(x: &X, axis: Axis) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    x.as_view()
        .fold_axis(axis, X::Elem::infinity(), |&a, &b| a.min(b))
}

/// `y = max_axis(x, axis)` (or `min_axis`): each lane's `d` goes to the elements equal
/// to the lane's extreme, split evenly between ties (the scalar `max` rule's ½/½,
/// generalised), and nothing to NaN elements.
pub fn extreme_axis_vjp<X: Viewable>(
    x: &X,
    axis: &Axis,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let x = x.as_view();
    assert_eq!(
        y.shape(),
        d.shape(),
        "max/min along an axis: the value is {} but the cotangent is {}",
        shape_str(y.shape()),
        shape_str(d.shape())
    );
    let mut out = Array::from_elem(x.raw_dim(), X::Elem::zero());
    Zip::from(out.lanes_mut(*axis))
        .and(x.lanes(*axis))
        .and(y)
        .and(d)
        .for_each(|mut o, xl, &m, &d| {
            let ties = xl.iter().filter(|&&v| v == m).count();
            if ties == 0 || d == X::Elem::zero() {
                return;
            }
            let share = d / <X::Elem as num_traits::NumCast>::from(ties).expect("a count");
            Zip::from(&mut o).and(&xl).for_each(|o, &v| {
                if v == m {
                    *o = share;
                }
            });
        });
    out
}

/// `y = x.max_axis(axis)`: see [`extreme_axis_vjp`].
pub fn max_axis_vjp<X: Viewable>(
    x: &X,
    axis: &Axis,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    extreme_axis_vjp(x, axis, y, d)
}

/// `y = x.min_axis(axis)`: see [`extreme_axis_vjp`].
pub fn min_axis_vjp<X: Viewable>(
    x: &X,
    axis: &Axis,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    extreme_axis_vjp(x, axis, y, d)
}

/// `y = x.var_axis(axis, ddof)`: `∂x = d·2(x − mean)/(n − ddof)` along `axis`.
pub fn var_axis_vjp<X: Viewable>(
    x: &X,
    axis: &Axis,
    ddof: &X::Elem,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let two = X::Elem::one() + X::Elem::one();
    spread_centered(x, *axis, *ddof, d, |_, d| two * d)
}

/// `y = x.std_axis(axis, ddof)`: `∂x = d·(x − mean)/((n − ddof)·y)`; 0 on a lane whose
/// elements are all equal (`y = 0`: the minimum-norm subgradient, as `abs` at 0).
pub fn std_axis_vjp<X: Viewable>(
    x: &X,
    axis: &Axis,
    ddof: &X::Elem,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let mut scale = d.clone();
    Zip::from(&mut scale).and(y).for_each(|s, &y| {
        *s = if y == X::Elem::zero() || *s == X::Elem::zero() {
            X::Elem::zero()
        } else {
            *s / y
        };
    });
    spread_centered(x, *axis, *ddof, &scale, |_, s| s)
}

/// `out = f(lane, d_lane)·(x − mean)/(n − ddof)` along `axis`.
fn spread_centered<X: Viewable>(
    x: &X,
    axis: Axis,
    ddof: X::Elem,
    d: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    f: impl Fn(usize, X::Elem) -> X::Elem,
) -> Array<X::Elem, X::Dim>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let x = x.as_view();
    let expected = x.raw_dim().remove_axis(axis);
    assert_eq!(
        d.shape(),
        expected.slice(),
        "var_axis/std_axis: the input is {} but the cotangent is {}",
        shape_str(x.shape()),
        shape_str(d.shape())
    );
    let n = x.len_of(axis);
    let nf = <X::Elem as num_traits::NumCast>::from(n).expect("a length");
    let denom = nf - ddof;
    let mut out = Array::from_elem(x.raw_dim(), X::Elem::zero());
    Zip::from(out.lanes_mut(axis))
        .and(x.lanes(axis))
        .and(d)
        .for_each(|mut o, xl, &d| {
            let mean = xl.iter().fold(X::Elem::zero(), |a, &b| a + b) / nf;
            let g = f(n, d) / denom;
            Zip::from(&mut o)
                .and(&xl)
                .for_each(|o, &v| *o = g * (v - mean));
        });
    out
}
