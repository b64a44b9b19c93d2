//! Forward mode on the tensor path: the tangent rules of array operations.
//!
//! `f_jvp` of ndarray code runs each statement of `f`, then its tangent: for `y = op(x₁,
//! x₂, ..)`, `t_y = Σₖ Jₖ·t_xₖ` over the inputs that vary, one term per input (JAX's
//! `jvp` rules, Griewank & Walther, *Evaluating Derivatives*, 2nd ed., §3.1). Each
//! function here is one such term, shaped like the output `y`. Where an operation is
//! linear in an input (a slice, a sum, a transpose, a reshape) the term is the operation
//! itself applied to the tangent; where its Jacobian is diagonal (`exp`, `tanh`, every
//! elementwise method of the rule table) it is the pullback's rule at `d = t`
//! ([`elementwise`]), so those rules are declared once, in the rule table; a product is
//! bilinear, so each factor's term is the product with the other factor.
//!
//! Tangents are owned arrays (or floats), whatever their primal is (an argument, a view,
//! a borrow): a term reads its tangent by reference and returns a new array.
//! Broadcasting goes forward here: a tangent of a broadcast operand is spread to the
//! output's shape ([`spread`]), the transpose of the pullback's sum ([`ShapeOf::fit`]).

use super::tensor::{Dyn, DynView, ShapeOf, Value, Viewable};
use crate::kernels::Real;
use crate::ops::shape_str;
use ndarray::{
    Array, Array1, Axis, Dimension, IntoDimension, Ix2, RemoveAxis, ShapeArg, SliceArg, Zip,
};
use num_traits::{One, Zero};

fn owned_view<A: Real>(v: &Dyn<A>) -> DynView<'_, A> {
    match v {
        Dyn::Scalar(s) => DynView::Scalar(*s),
        Dyn::Array(a) => DynView::Array(a.view()),
    }
}

/// `f(a, b)` elementwise, broadcasting both to the output's shape `out`.
fn zip_to<A: Real>(
    op: &str,
    out: &[usize],
    a: DynView<'_, A>,
    b: DynView<'_, A>,
    f: impl Fn(A, A) -> A,
) -> Dyn<A> {
    let bcast = |v| broadcast_to(op, v, out);
    match (a, b) {
        (DynView::Scalar(x), DynView::Scalar(y)) if out.is_empty() => Dyn::Scalar(f(x, y)),
        (DynView::Scalar(x), DynView::Scalar(y)) => {
            Dyn::Array(ndarray::ArrayD::from_elem(out, f(x, y)))
        }
        (DynView::Array(x), DynView::Scalar(y)) => Dyn::Array(bcast(&x).mapv(|x| f(x, y))),
        (DynView::Scalar(x), DynView::Array(y)) => Dyn::Array(bcast(&y).mapv(|y| f(x, y))),
        (DynView::Array(x), DynView::Array(y)) => Dyn::Array(
            Zip::from(&bcast(&x))
                .and(&bcast(&y))
                .map_collect(|&x, &y| f(x, y)),
        ),
    }
}

/// `f(s, a, b)` elementwise over three values of one shape (a float stands for every
/// element), as the cotangent of `s`: the second-order rules' shape
/// (`rules::second_tensor`).
///
/// # Panics
/// If an array's shape differs from the others' (the message names both and `op`).
pub(crate) fn zip3<S: Value, T: Value<Elem = S::Elem>, C: Value<Elem = S::Elem>>(
    op: &str,
    s: &S,
    a: &T,
    b: &C,
    f: impl Fn(S::Elem, S::Elem, S::Elem) -> S::Elem,
) -> S::Cot {
    let views = [s.dyn_view(), a.dyn_view(), b.dyn_view()];
    let shapes: Vec<Vec<usize>> = views.iter().map(shape_of_view).collect();
    let out = shapes
        .iter()
        .max_by_key(|s| s.len())
        .cloned()
        .unwrap_or_default();
    for sh in &shapes {
        assert!(
            sh.is_empty() || *sh == out,
            "{op}: operands of shapes {} and {} differ",
            shape_str(sh),
            shape_str(&out)
        );
    }
    let result = if out.is_empty() {
        let one = |v: &DynView<'_, S::Elem>| match v {
            DynView::Scalar(x) => *x,
            DynView::Array(x) => x.iter().copied().next().unwrap_or_else(S::Elem::zero),
        };
        Dyn::Scalar(f(one(&views[0]), one(&views[1]), one(&views[2])))
    } else {
        // Arrays are zipped as they are; a float stands as a 0-d array broadcast.
        let scalars = views.each_ref().map(|v| match v {
            DynView::Scalar(x) => Some(ndarray::arr0(*x).into_dyn()),
            DynView::Array(_) => None,
        });
        let at = |k: usize| match (&views[k], &scalars[k]) {
            (DynView::Array(x), _) => x.view(),
            (_, Some(c)) => c.broadcast(out.as_slice()).expect("a 0-d array broadcasts"),
            (DynView::Scalar(_), None) => unreachable!("made above"),
        };
        Dyn::Array(
            Zip::from(at(0))
                .and(at(1))
                .and(at(2))
                .map_collect(|&x, &y, &z| f(x, y, z)),
        )
    };
    s.shape_of().fit(result)
}

fn broadcast_to<'v, A>(
    op: &str,
    v: &'v ndarray::ArrayViewD<'_, A>,
    out: &[usize],
) -> ndarray::ArrayViewD<'v, A> {
    v.broadcast(out).unwrap_or_else(|| {
        panic!(
            "{op} (tangent): an operand of shape {} does not broadcast to the result's {}",
            shape_str(v.shape()),
            shape_str(out)
        )
    })
}

fn shape_of_view<A>(v: &DynView<'_, A>) -> Vec<usize> {
    match v {
        DynView::Scalar(_) => Vec::new(),
        DynView::Array(a) => a.shape().to_vec(),
    }
}

/// The term of an operand that the output depends on with slope 1 (`a + b`, `a − b`'s
/// `a`): `t` spread to `y`'s shape (broadcasting, forward).
///
/// # Panics
/// If `t`'s shape does not broadcast to `y`'s (the message names both).
pub fn spread<Y: Value, T: Value<Elem = Y::Elem>>(y: &Y, t: &T) -> Y::Cot {
    spread_signed("add", y, t, |t| t)
}

/// `a − b`'s term of `b`: `−t` spread to `y`'s shape.
pub fn spread_neg<Y: Value, T: Value<Elem = Y::Elem>>(y: &Y, t: &T) -> Y::Cot {
    spread_signed("sub", y, t, |t| -t)
}

/// `sign(t)` spread to `y`'s shape, `op` naming the operation in a shape panic.
fn spread_signed<Y: Value, T: Value<Elem = Y::Elem>>(
    op: &str,
    y: &Y,
    t: &T,
    sign: impl Fn(Y::Elem) -> Y::Elem,
) -> Y::Cot {
    let out = shape_of_view(&y.dyn_view());
    let one = <Y::Elem as One>::one();
    y.shape_of().fit(zip_to(
        op,
        &out,
        t.dyn_view(),
        DynView::Scalar(one),
        |t, _| sign(t),
    ))
}

/// `y = a · b` (elementwise): the term of one factor, `t · other`, with a strong zero (a
/// zero tangent gives 0 whatever the other factor is, as the scalar tangent pass does).
pub fn mul<Y: Value, B: Value<Elem = Y::Elem>, T: Value<Elem = Y::Elem>>(
    y: &Y,
    other: &B,
    t: &T,
) -> Y::Cot {
    let out = shape_of_view(&y.dyn_view());
    y.shape_of().fit(zip_to(
        "mul",
        &out,
        t.dyn_view(),
        other.dyn_view(),
        crate::rules::scalar::strong_mul,
    ))
}

/// `y = a / b`: the term of `a`, `t / b` (0 for a zero tangent).
pub fn div_lhs<Y: Value, B: Value<Elem = Y::Elem>, T: Value<Elem = Y::Elem>>(
    y: &Y,
    b: &B,
    t: &T,
) -> Y::Cot {
    let out = shape_of_view(&y.dyn_view());
    y.shape_of()
        .fit(zip_to("div", &out, t.dyn_view(), b.dyn_view(), |t, b| {
            crate::rules::scalar::div_vjp_lhs(b, t)
        }))
}

/// `y = a / b`: the term of `b`, `−y · t / b` (0 for a zero tangent).
pub fn div_rhs<Y: Value, B: Value<Elem = Y::Elem>, T: Value<Elem = Y::Elem>>(
    y: &Y,
    b: &B,
    t: &T,
) -> Y::Cot {
    let out = shape_of_view(&y.dyn_view());
    let q = zip_to("div", &out, t.dyn_view(), b.dyn_view(), |t, b| {
        if t == <Y::Elem as Zero>::zero() {
            t
        } else {
            t / b
        }
    });
    y.shape_of()
        .fit(zip_to("div", &out, owned_view(&q), y.dyn_view(), |q, y| {
            crate::rules::scalar::strong_mul(q, -y)
        }))
}

/// `−t` (negation, and the identity's copy with `negate = false`), as an owned tangent.
pub fn neg<T: Value>(t: &T) -> T::Cot {
    t.shape_of().fit(match t.dyn_view() {
        DynView::Scalar(v) => Dyn::Scalar(-v),
        DynView::Array(a) => Dyn::Array(a.mapv(|v| -v)),
    })
}

/// An owned copy of a tangent (`to_owned`, `clone`, `view`, `&x`: the identity).
pub fn copy<T: Value>(t: &T) -> T::Cot {
    t.shape_of().fit_view(t.dyn_view())
}

/// An elementwise operation's term: the pullback's scalar `rule(saved, d)` at `d = t`,
/// element by element (its Jacobian is diagonal, so the pullback at `t` is the
/// pushforward). `saved` is the value the rule reads (the input or the output), of `t`'s
/// shape.
///
/// # Panics
/// If `saved` and `t` have different shapes.
pub fn elementwise<V: Value, T: Value<Elem = V::Elem>>(
    saved: &V,
    t: &T,
    rule: impl Fn(V::Elem, V::Elem) -> V::Elem,
) -> T::Cot {
    let (sv, tv) = (saved.dyn_view(), t.dyn_view());
    let (ss, ts) = (shape_of_view(&sv), shape_of_view(&tv));
    assert!(
        ss == ts,
        "elementwise tangent: the value is {} but its tangent is {}",
        shape_str(&ss),
        shape_str(&ts)
    );
    t.shape_of().fit(zip_to("elementwise", &ts, sv, tv, rule))
}

/// `Σ t` (`x.sum()`).
pub fn sum<T: Viewable>(t: &T) -> T::Elem
where
    T::Elem: Real,
{
    t.as_view().sum()
}

/// `mean(t)` (`x.mean().unwrap()`); NaN for an empty array, as the primal's `None`
/// would have panicked first.
pub fn mean<T: Viewable>(t: &T) -> T::Elem
where
    T::Elem: Real,
{
    let v = t.as_view();
    v.sum() / <T::Elem as num_traits::NumCast>::from(v.len()).expect("a length")
}

/// `t.sum_axis(axis)`.
pub fn sum_axis<T: Viewable>(axis: &Axis, t: &T) -> Array<T::Elem, <T::Dim as Dimension>::Smaller>
where
    T::Elem: Real,
    T::Dim: RemoveAxis,
{
    t.as_view().sum_axis(*axis)
}

/// `t.mean_axis(axis).unwrap()`.
pub fn mean_axis<T: Viewable>(axis: &Axis, t: &T) -> Array<T::Elem, <T::Dim as Dimension>::Smaller>
where
    T::Elem: Real,
    T::Dim: RemoveAxis,
{
    let v = t.as_view();
    let n = <T::Elem as num_traits::NumCast>::from(v.len_of(*axis)).expect("a length");
    v.sum_axis(*axis).mapv(|s| s / n)
}

/// `t.t()` / `t.reversed_axes()`, in row-major order.
pub fn t<T: Viewable>(t: &T) -> Array<T::Elem, T::Dim>
where
    T::Elem: Real,
{
    t.as_view()
        .reversed_axes()
        .as_standard_layout()
        .into_owned()
}

/// `t.select(axis, ids)`.
pub fn select<T: Viewable, I: AsRef<[usize]> + ?Sized>(
    axis: &Axis,
    ids: &I,
    t: &T,
) -> Array<T::Elem, T::Dim>
where
    T::Elem: Real,
    T::Dim: RemoveAxis,
{
    t.as_view().select(*axis, ids.as_ref())
}

/// `t.slice(info)`.
pub fn slice<T: Viewable, I: SliceArg<T::Dim, OutDim = E>, E: Dimension>(
    info: &I,
    t: &T,
) -> Array<T::Elem, E>
where
    T::Elem: Real,
{
    t.as_view().slice(info).to_owned()
}

/// `t.slice_axis(axis, slice)`.
pub fn slice_axis<T: Viewable>(axis: &Axis, s: &ndarray::Slice, t: &T) -> Array<T::Elem, T::Dim>
where
    T::Elem: Real,
{
    t.as_view().slice_axis(*axis, *s).to_owned()
}

/// `t.index_axis(axis, i)`.
pub fn index_axis<T: Viewable>(
    axis: &Axis,
    i: &usize,
    t: &T,
) -> Array<T::Elem, <T::Dim as Dimension>::Smaller>
where
    T::Elem: Real,
    T::Dim: RemoveAxis,
{
    t.as_view().index_axis(*axis, *i).to_owned()
}

/// `t.row(i)`.
pub fn row<T: Viewable<Dim = Ix2>>(i: &usize, t: &T) -> Array1<T::Elem>
where
    T::Elem: Real,
{
    t.as_view().row(*i).to_owned()
}

/// `t.column(j)`.
pub fn column<T: Viewable<Dim = Ix2>>(j: &usize, t: &T) -> Array1<T::Elem>
where
    T::Elem: Real,
{
    t.as_view().column(*j).to_owned()
}

/// `t.insert_axis(axis)`.
pub fn insert_axis<T: Viewable>(axis: &Axis, t: &T) -> Array<T::Elem, <T::Dim as Dimension>::Larger>
where
    T::Elem: Real,
{
    t.as_view().insert_axis(*axis).to_owned()
}

/// `t.remove_axis(axis)`.
pub fn remove_axis<T: Viewable>(
    axis: &Axis,
    t: &T,
) -> Array<T::Elem, <T::Dim as Dimension>::Smaller>
where
    T::Elem: Real,
    T::Dim: RemoveAxis,
{
    t.as_view().remove_axis(*axis).to_owned()
}

/// `t.permuted_axes(axes)`, in row-major order.
pub fn permuted_axes<T: Viewable, P: IntoDimension<Dim = T::Dim> + Clone>(
    axes: &P,
    t: &T,
) -> Array<T::Elem, T::Dim>
where
    T::Elem: Real,
{
    t.as_view()
        .permuted_axes(axes.clone())
        .as_standard_layout()
        .into_owned()
}

/// `t.into_shape_with_order(shape).unwrap()` / `t.to_shape(shape).unwrap()`: `t`'s
/// elements in the primal's order (row-major unless the shape says otherwise),
/// whatever `t`'s own layout.
///
/// # Panics
/// If `t` has another number of elements than the shape (the message names both).
pub fn reshape<T: Viewable, E: ShapeArg + Clone>(shape: &E, t: &T) -> Array<T::Elem, E::Dim>
where
    T::Elem: Real,
{
    let v = t.as_view();
    let from = v.shape().to_vec();
    match v.to_shape(shape.clone()) {
        Ok(a) => a.into_owned(),
        Err(e) => panic!(
            "reshape (tangent): a tangent of shape {} cannot take the primal's new shape ({e})",
            shape_str(&from)
        ),
    }
}

/// `y = x.var_axis(axis, ddof)`: `t_y = Σ_axis 2(x − mean)·t / (n − ddof)`.
pub fn var_axis<X: Viewable, T: Viewable<Elem = X::Elem, Dim = X::Dim>>(
    x: &X,
    axis: &Axis,
    ddof: &X::Elem,
    t: &T,
) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let two = X::Elem::one() + X::Elem::one();
    centered_sum(x, *axis, *ddof, t).mapv(|s| two * s)
}

/// `y = x.std_axis(axis, ddof)`: `t_y = Σ_axis (x − mean)·t / ((n − ddof)·y)`; 0 on a lane
/// whose elements are all equal (`y = 0`), as the pullback.
pub fn std_axis<X: Viewable, T: Viewable<Elem = X::Elem, Dim = X::Dim>>(
    x: &X,
    axis: &Axis,
    ddof: &X::Elem,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    t: &T,
) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let mut s = centered_sum(x, *axis, *ddof, t);
    Zip::from(&mut s).and(y).for_each(|s, &y| {
        *s = if y == X::Elem::zero() || *s == X::Elem::zero() {
            X::Elem::zero()
        } else {
            *s / y
        };
    });
    s
}

/// `Σ_axis (x − mean)·t / (n − ddof)`, lane by lane.
fn centered_sum<X: Viewable, T: Viewable<Elem = X::Elem, Dim = X::Dim>>(
    x: &X,
    axis: Axis,
    ddof: X::Elem,
    t: &T,
) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let (x, t) = (x.as_view(), t.as_view());
    check_same("var_axis/std_axis", x.shape(), t.shape());
    let n = x.len_of(axis);
    let nf = <X::Elem as num_traits::NumCast>::from(n).expect("a length");
    let denom = nf - ddof;
    Zip::from(x.lanes(axis))
        .and(t.lanes(axis))
        .map_collect(|xl, tl| {
            let mean = xl.iter().fold(X::Elem::zero(), |a, &b| a + b) / nf;
            xl.iter()
                .zip(tl.iter())
                .fold(X::Elem::zero(), |s, (&v, &t)| s + (v - mean) * t)
                / denom
        })
}

/// `y = max_axis(x, axis)` (or `min_axis`): each lane's tangent is the mean of `t` over
/// the elements equal to the lane's extreme (ties split evenly, as the pullback), 0 for
/// a lane of NaNs.
pub fn extreme_axis<X: Viewable, T: Viewable<Elem = X::Elem, Dim = X::Dim>>(
    x: &X,
    axis: &Axis,
    y: &Array<X::Elem, <X::Dim as Dimension>::Smaller>,
    t: &T,
) -> Array<X::Elem, <X::Dim as Dimension>::Smaller>
where
    X::Elem: Real,
    X::Dim: RemoveAxis,
{
    let (x, t) = (x.as_view(), t.as_view());
    check_same("max/min along an axis", x.shape(), t.shape());
    Zip::from(x.lanes(*axis))
        .and(t.lanes(*axis))
        .and(y)
        .map_collect(|xl, tl, &m| {
            let (mut sum, mut ties) = (X::Elem::zero(), 0usize);
            for (&v, &t) in xl.iter().zip(tl.iter()) {
                if v == m {
                    sum += t;
                    ties += 1;
                }
            }
            if ties == 0 {
                X::Elem::zero()
            } else {
                sum / <X::Elem as num_traits::NumCast>::from(ties).expect("a count")
            }
        })
}

/// `t[idx]` (an element read `a[[i, j]]`).
pub fn index_get<T: Viewable, I: ndarray::NdIndex<T::Dim> + core::fmt::Debug + Copy>(
    idx: &I,
    t: &T,
) -> T::Elem
where
    T::Elem: Real,
{
    let v = t.as_view();
    match v.get(*idx) {
        Some(e) => *e,
        None => panic!(
            "element read (tangent): index {idx:?} is out of bounds for a tangent of shape {}",
            shape_str(v.shape())
        ),
    }
}

/// The tangent of an array argument: the one given, or zeros of the argument's shape
/// kept in `zeros` (declared by the caller, so a borrow of it outlives this call), in
/// the argument's own type ([`ArrayTangent`]).
///
/// # Panics
/// If a given tangent does not have the argument's shape (the message names both).
pub fn array_or_zero<'a, P: ArrayTangent<'a>>(
    t: Option<P>,
    x: &P,
    zeros: &'a mut Option<P::Zeros>,
    name: &str,
) -> P {
    match t {
        Some(t) => {
            let (ts, xs) = (t.view_shape(), x.view_shape());
            assert!(
                ts == xs,
                "jvp: the tangent of `{name}` has shape {}, the argument {}",
                shape_str(&ts),
                shape_str(&xs)
            );
            t
        }
        None => P::lend(zeros.insert(x.zeros())),
    }
}

/// An array argument's type, as a tangent: `&Array`, `ArrayView` or `Array`.
pub trait ArrayTangent<'a>: Sized {
    /// What a zero tangent is kept in.
    type Zeros: 'a;
    /// Zeros of this argument's shape.
    fn zeros(&self) -> Self::Zeros;
    /// The zeros in this argument's type.
    fn lend(z: &'a mut Self::Zeros) -> Self;
    /// The shape.
    fn view_shape(&self) -> Vec<usize>;
}

impl<'a, A: Real + 'a, D: Dimension + 'a> ArrayTangent<'a> for &'a Array<A, D> {
    type Zeros = Array<A, D>;
    fn zeros(&self) -> Array<A, D> {
        Array::zeros(self.raw_dim())
    }
    fn lend(z: &'a mut Array<A, D>) -> Self {
        z
    }
    fn view_shape(&self) -> Vec<usize> {
        self.shape().to_vec()
    }
}

impl<'a, A: Real + 'a, D: Dimension + 'a> ArrayTangent<'a> for ndarray::ArrayView<'a, A, D> {
    type Zeros = Array<A, D>;
    fn zeros(&self) -> Array<A, D> {
        Array::zeros(self.raw_dim())
    }
    fn lend(z: &'a mut Array<A, D>) -> Self {
        z.view()
    }
    fn view_shape(&self) -> Vec<usize> {
        self.shape().to_vec()
    }
}

impl<'a, A: Real + 'a, D: Dimension + 'a> ArrayTangent<'a> for Array<A, D> {
    type Zeros = ();
    fn zeros(&self) {}
    fn lend(_: &'a mut ()) -> Self {
        unreachable!("an owned argument's zero tangent is made by `owned_or_zero`")
    }
    fn view_shape(&self) -> Vec<usize> {
        self.shape().to_vec()
    }
}

/// The tangent of an owned array argument: the one given, or zeros of its shape.
///
/// # Panics
/// If a given tangent does not have the argument's shape (the message names both).
pub fn owned_or_zero<A: Real, D: Dimension>(
    t: Option<Array<A, D>>,
    x: &Array<A, D>,
    name: &str,
) -> Array<A, D> {
    match t {
        Some(t) => {
            assert!(
                t.shape() == x.shape(),
                "jvp: the tangent of `{name}` has shape {}, the argument {}",
                shape_str(t.shape()),
                shape_str(x.shape())
            );
            t
        }
        None => Array::zeros(x.raw_dim()),
    }
}

/// The zero tangent of a constant value (an array made from data, a literal) where a
/// varying value of the same type meets it (a loop's state, a branch's result): zeros
/// of its shape, owned.
pub fn zeros_like<V: Value>(x: &V) -> V::Cot {
    super::tensor::zeros_like(x)
}

/// Panics, naming the op and both shapes, unless a tangent has its argument's shape.
#[track_caller]
pub fn check_same(op: &str, arg: &[usize], tangent: &[usize]) {
    assert!(
        arg == tangent,
        "{op} (tangent): the argument is {} but its tangent is {}",
        shape_str(arg),
        shape_str(tangent)
    );
}
