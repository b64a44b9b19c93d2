//! `+ − × ÷` between arrays with NumPy broadcasting, and the un-broadcasting pullback.
//!
//! Broadcasting (NumPy's rule): align shapes at the trailing axis; two sizes agree when
//! equal or when one is 1; missing leading axes count as 1. A bias row `b` (shape `n`)
//! added to `X` (`B×n`) is added to every row; its pullback sums `d_y` over the broadcast
//! axes (`d_b = Σ_rows d_y`) — the lesson's `db = dz.sum(axis=0)`.

use super::shape_str;
use crate::kernels::Real;
use crate::rules::scalar as rules;
use ndarray::{Array, ArrayBase, ArrayView, Axis, Data, DimMax, Dimension, IxDyn, Zip};

/// The broadcast output shape type of `D1` and `D2`.
pub type Broadcast<D1, D2> = <D1 as DimMax<D2>>::Output;

/// The broadcast shape of `a` and `b`, or a panic naming `op` and both shapes.
fn broadcast_dim<D1, D2>(op: &str, a: &[usize], b: &[usize]) -> Broadcast<D1, D2>
where
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    let shape = super::broadcast_shape(op, a, b);
    let mut out = <Broadcast<D1, D2> as Dimension>::zeros(shape.len());
    for (o, d) in out.slice_mut().iter_mut().zip(shape) {
        *o = d;
    }
    out
}

fn zip_map<S1, S2, T, D1, D2>(
    op: &str,
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
    f: impl Fn(T, T) -> T,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    let dim = broadcast_dim::<D1, D2>(op, a.shape(), b.shape());
    let ab = a.broadcast(dim.clone()).unwrap();
    let bb = b.broadcast(dim).unwrap();
    Zip::from(&ab).and(&bb).map_collect(|&x, &y| f(x, y))
}

/// Sums `g` over the axes that broadcasting added to reach `target`'s shape: leading axes
/// `g` has beyond `target`, and axes where `target` has size 1. The transpose of
/// broadcasting (Tangent's `unbroadcast`).
///
/// # Panics
/// If `target` does not broadcast to `g`'s shape.
pub fn unbroadcast<S, T, DO, D>(g: &ArrayBase<S, DO>, target: &D) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    DO: Dimension,
    D: Dimension,
{
    let t = target.slice();
    let fail = || -> ! {
        panic!(
            "unbroadcast: {} does not broadcast to {}",
            shape_str(t),
            shape_str(g.shape())
        )
    };
    if t.len() > g.ndim() {
        fail();
    }
    if g.shape() == t {
        // Nothing was broadcast: one copy, in g's own layout.
        return g.to_owned().into_dimensionality::<D>().expect("same shape");
    }
    if let Some(r) = sum_leading(g, target) {
        return r;
    }
    // Sum straight from the view: each reduction reads its input once and writes a
    // smaller array; the full-size cotangent is never copied.
    let gv = g.view().into_dyn();
    let mut r: Option<Array<T, IxDyn>> = None;
    let lead = g.ndim() - t.len();
    for _ in 0..lead {
        let next = match &r {
            Some(a) => a.sum_axis(Axis(0)),
            None => gv.sum_axis(Axis(0)),
        };
        r = Some(next);
    }
    for (ax, &want) in t.iter().enumerate() {
        let have = r.as_ref().map_or(gv.shape()[ax], |a| a.shape()[ax]);
        if want == have {
            continue;
        }
        if want != 1 {
            fail();
        }
        let next = match &r {
            Some(a) => a.sum_axis(Axis(ax)),
            None => gv.sum_axis(Axis(ax)),
        };
        r = Some(next.insert_axis(Axis(ax)));
    }
    r.unwrap_or_else(|| gv.to_owned())
        .into_dimensionality::<D>()
        .unwrap()
}

/// The common case of [`unbroadcast`] in one pass: `g` is contiguous and `target` is
/// `g`'s shape with some leading axes summed away (or kept with size 1), as for a bias
/// row added to every row of a batch. Rows are added in order (for one summed axis this
/// is the general path's order too). `None` when the case does not apply.
fn sum_leading<S, T, DO, D>(g: &ArrayBase<S, DO>, target: &D) -> Option<Array<T, D>>
where
    S: Data<Elem = T>,
    T: Real,
    DO: Dimension,
    D: Dimension,
{
    let gs = g.as_slice()?;
    let shape = g.shape();
    let t = target.slice();
    let pad = shape.len() - t.len();
    let at = |i: usize| if i < pad { 1 } else { t[i - pad] };
    // The first axis from which target and g agree; every axis before it is 1 in target.
    let p = (0..=shape.len())
        .rev()
        .take_while(|&i| i == shape.len() || at(i) == shape[i])
        .last()?;
    if (0..p).any(|i| at(i) != 1) {
        return None;
    }
    let inner: usize = shape[p..].iter().product();
    let mut acc = vec![T::zero(); inner];
    if inner > 0 {
        sum_rows(gs, &mut acc);
    }
    Array::from_shape_vec(target.clone(), acc).ok()
}

/// Fewest elements for [`sum_rows`] to split its columns across threads: below this
/// one thread reads the rows faster than the pool starts (the bias gradient of a
/// `[512, 2048]` layer, 1M elements, is above; the GPT's `[2048, 128]` ones are too).
pub(crate) const SUM_ROWS_PARALLEL_MIN: usize = 1 << 18;

/// `acc[j] += Σ_r g[r · n + j]` for `n = acc.len()`, rows added in order. Above
/// [`SUM_ROWS_PARALLEL_MIN`] the columns are split in strips across rayon's threads,
/// each walking every row in order, so the sums are the same bit for bit as on one
/// thread (the bias gradient of a broadcast add, issue 16).
pub(crate) fn sum_rows<T: Real>(g: &[T], acc: &mut [T]) {
    let n = acc.len();
    let add = |acc: &mut [T], c0: usize| {
        for row in g.chunks_exact(n) {
            let row = &row[c0..c0 + acc.len()];
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
        }
    };
    let threads = rayon::current_num_threads();
    // Strips of whole cache lines (16 f32), at least two per thread.
    let strip = n.div_ceil(2 * threads).next_multiple_of(16);
    if g.len() >= SUM_ROWS_PARALLEL_MIN && threads > 1 && strip < n {
        use rayon::prelude::*;
        acc.par_chunks_mut(strip)
            .enumerate()
            .for_each(|(k, a)| add(a, k * strip));
    } else {
        add(acc, 0);
    }
}

fn bview<'a, S, T, D, E>(x: &'a ArrayBase<S, D>, dim: &E) -> ArrayView<'a, T, E>
where
    S: Data<Elem = T>,
    D: Dimension,
    E: Dimension,
{
    x.broadcast(dim.clone()).unwrap()
}

macro_rules! binary_doc {
    ($name:literal, $sym:literal) => {
        concat!(
            "`a ", $sym, " b` elementwise with NumPy broadcasting (f32/f64, any dimensions; the result has the broadcast shape).\n\n",
            "# Panics\nIf the shapes don't broadcast: `\"", $name, ": cannot broadcast lhs 2×3 with rhs 2\"`."
        )
    };
}

#[doc = binary_doc!("add", "+")]
///
/// ```
/// use backprop::ops::{add, add_vjp};
/// use ndarray::array;
/// let x = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
/// let b = array![10.0, 20.0]; // a bias row, added to every row
/// let y = add(&x, &b);
/// assert_eq!(y, array![[11.0, 22.0], [13.0, 24.0], [15.0, 26.0]]);
/// let (d_x, d_b) = add_vjp(&x.raw_dim(), &b.raw_dim(), &ndarray::Array2::<f64>::ones((3, 2)));
/// assert_eq!(d_x, ndarray::Array2::<f64>::ones((3, 2)));
/// assert_eq!(d_b, array![3.0, 3.0]); // summed over the broadcast axis
/// ```
pub fn add<S1, S2, T, D1, D2>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    zip_map("add", a, b, |x, y| x + y)
}

#[doc = binary_doc!("sub", "−")]
///
/// ```
/// let y = backprop::ops::sub(&ndarray::array![[5.0f32, 6.0]], &ndarray::array![1.0f32]);
/// assert_eq!(y, ndarray::array![[4.0, 5.0]]);
/// ```
pub fn sub<S1, S2, T, D1, D2>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    zip_map("sub", a, b, |x, y| x - y)
}

#[doc = binary_doc!("mul", "·")]
///
/// ```
/// use backprop::ops::{mul, mul_vjp};
/// use ndarray::array;
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// let s = array![[10.0], [100.0]]; // one scale per row
/// assert_eq!(mul(&a, &s), array![[10.0, 20.0], [300.0, 400.0]]);
/// let (d_a, d_s) = mul_vjp(&a, &s, &ndarray::Array2::<f64>::ones((2, 2)));
/// assert_eq!(d_a, array![[10.0, 10.0], [100.0, 100.0]]);
/// assert_eq!(d_s, array![[3.0], [7.0]]); // Σ over the broadcast axis of 1·a
/// ```
pub fn mul<S1, S2, T, D1, D2>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    zip_map("mul", a, b, |x, y| x * y)
}

#[doc = binary_doc!("div", "/")]
///
/// ```
/// let y = backprop::ops::div(&ndarray::array![2.0f64, 9.0], &ndarray::array![2.0, 3.0]);
/// assert_eq!(y, ndarray::array![1.0, 3.0]);
/// ```
pub fn div<S1, S2, T, D1, D2>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    zip_map("div", a, b, |x, y| x / y)
}

/// Pullback of [`add`]: `(unbroadcast(d_y → a), unbroadcast(d_y → b))`. Saves only the
/// input shapes (`x.raw_dim()`).
///
/// # Panics
/// If a shape does not broadcast to `d_y`'s.
pub fn add_vjp<S, T, D1, D2, DO>(
    a_dim: &D1,
    b_dim: &D2,
    d_y: &ArrayBase<S, DO>,
) -> (Array<T, D1>, Array<T, D2>)
where
    S: Data<Elem = T>,
    T: Real,
    D1: Dimension,
    D2: Dimension,
    DO: Dimension,
{
    (unbroadcast(d_y, a_dim), unbroadcast(d_y, b_dim))
}

/// Pullback of [`sub`]: `(unbroadcast(d_y → a), −unbroadcast(d_y → b))`. Saves only shapes.
///
/// # Panics
/// If a shape does not broadcast to `d_y`'s.
pub fn sub_vjp<S, T, D1, D2, DO>(
    a_dim: &D1,
    b_dim: &D2,
    d_y: &ArrayBase<S, DO>,
) -> (Array<T, D1>, Array<T, D2>)
where
    S: Data<Elem = T>,
    T: Real,
    D1: Dimension,
    D2: Dimension,
    DO: Dimension,
{
    (
        unbroadcast(d_y, a_dim),
        unbroadcast(d_y, b_dim).mapv_into(|v| -v),
    )
}

/// Pullback of [`mul`]: `d_a = unbroadcast(d_y·b)`, `d_b = unbroadcast(d_y·a)`
/// (∂(ab)/∂a = b). Saves both inputs. Each product is the rule table's `mul_vjp_lhs` /
/// `mul_vjp_rhs`, with its strong zero (a zero cotangent times an infinite factor is
/// 0), so `ops::mul(&a, &b)` and `&a * &b` in a `#[grad]` function give the same
/// gradient.
///
/// # Panics
/// If an input does not broadcast to `d_y`'s shape.
pub fn mul_vjp<S1, S2, S3, T, D1, D2, DO>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
    d_y: &ArrayBase<S3, DO>,
) -> (Array<T, D1>, Array<T, D2>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D1: Dimension,
    D2: Dimension,
    DO: Dimension,
{
    let dim = d_y.raw_dim();
    check_to("mul_vjp", a.shape(), d_y.shape());
    check_to("mul_vjp", b.shape(), d_y.shape());
    let g_a = Zip::from(d_y)
        .and(&bview(b, &dim))
        .map_collect(|&g, &y| rules::mul_vjp_lhs(y, g));
    let g_b = Zip::from(d_y)
        .and(&bview(a, &dim))
        .map_collect(|&g, &x| rules::mul_vjp_rhs(x, g));
    (
        unbroadcast(&g_a, &a.raw_dim()),
        unbroadcast(&g_b, &b.raw_dim()),
    )
}

/// Pullback of [`div`]: `d_a = unbroadcast(d_y/b)`, `d_b = unbroadcast(−d_y·y/b)` with
/// `y = a/b` (∂(a/b)/∂b = −a/b²). Saves both inputs. Each is the rule table's
/// `div_vjp_lhs` / `div_vjp_rhs`, with its strong zeros, so `ops::div(&a, &b)` and
/// `&a / &b` in a `#[grad]` function give the same gradient.
///
/// # Panics
/// If an input does not broadcast to `d_y`'s shape.
pub fn div_vjp<S1, S2, S3, T, D1, D2, DO>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
    d_y: &ArrayBase<S3, DO>,
) -> (Array<T, D1>, Array<T, D2>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D1: Dimension,
    D2: Dimension,
    DO: Dimension,
{
    let dim = d_y.raw_dim();
    check_to("div_vjp", a.shape(), d_y.shape());
    check_to("div_vjp", b.shape(), d_y.shape());
    let bb = bview(b, &dim);
    let g_a = Zip::from(d_y)
        .and(&bb)
        .map_collect(|&g, &b| rules::div_vjp_lhs(b, g));
    let g_b = Zip::from(d_y)
        .and(&bview(a, &dim))
        .and(&bb)
        .map_collect(|&g, &a, &b| rules::div_vjp_rhs(b, a / b, g));
    (
        unbroadcast(&g_a, &a.raw_dim()),
        unbroadcast(&g_b, &b.raw_dim()),
    )
}

fn check_to(op: &str, from: &[usize], to: &[usize]) {
    let ok = from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1);
    if !ok {
        panic!(
            "{op}: input {} does not broadcast to d_y {}",
            shape_str(from),
            shape_str(to)
        );
    }
}
