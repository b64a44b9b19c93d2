//! The tensor path: rules for values that may be ndarray arrays.
//!
//! `#[grad]` uses these where it cannot prove a value is a scalar (an ndarray
//! argument, and what is computed from it). They take their saved values and the
//! cotangent by reference and return an owned cotangent: `f32`/`f64` for a scalar,
//! `Array<A, D>` for an array of dimension `D`. They are implemented for scalars too,
//! so the scalar path is an optimisation, never a requirement.
//!
//! Broadcasting: `a + b`, `a * b`, ... follow NumPy's rules (ndarray's co-broadcasting).
//! The cotangent of a broadcast operand is the output cotangent summed back to the
//! operand's shape ([`ShapeOf::fit`]): leading axes the operand lacks and axes where it
//! has size 1 are summed over (the transpose of broadcasting; Tangent's `unbroadcast`).
//! This is why the forward pass saves `shape_of(&a)` for such an operand: a few
//! integers for an array, nothing (a zero-sized value) for a scalar.

pub use super::array_methods::*;
pub use super::element_writes::*;
pub use super::second_attention::*;
pub use super::second_norm::*;
pub use super::second_tensor::*;
use crate::kernels::Real;
use crate::rules::scalar;
use core::marker::PhantomData;
use ndarray::{
    Array, Array1, Array2, ArrayBase, ArrayD, ArrayViewD, Axis, Data, Dimension, Ix1, Ix2, IxDyn,
    RemoveAxis, Zip,
};

// ---- values, cotangents and shapes ------------------------------------------------

/// A value `#[grad]` can differentiate with respect to: a scalar or an array.
pub trait Value {
    /// Element type.
    type Elem: Real;
    /// The type of its cotangent (and gradient): the scalar itself, or an owned array of
    /// the same dimension.
    type Cot;
    /// What broadcasting's transpose needs to know about it.
    type Shape: ShapeOf<Self::Elem, Cot = Self::Cot>;
    /// Its shape.
    fn shape_of(&self) -> Self::Shape;
    /// A view of it for elementwise arithmetic.
    fn dyn_view(&self) -> DynView<'_, Self::Elem>;
}

/// `f32` and `f64` as values of the tensor path. (Implemented per type, not for every
/// `A: Real`: a blanket impl would overlap with the one for references.)
macro_rules! scalar_impls {
    ($($t:ty),*) => {$(
        impl Value for $t {
            type Elem = $t;
            type Cot = $t;
            type Shape = ScalarShape<$t>;
            fn shape_of(&self) -> ScalarShape<$t> {
                ScalarShape(PhantomData)
            }
            fn dyn_view(&self) -> DynView<'_, $t> {
                DynView::Scalar(*self)
            }
        }
        impl ElemOf for $t {
            type Elem = $t;
        }
        impl Elementwise<$t> for $t {
            fn zip_cot(&self, d: &$t, f: impl Fn($t, $t) -> $t) -> $t {
                f(*self, *d)
            }
        }
        impl Scalar for $t {}
    )*};
}
scalar_impls!(f32, f64);

/// A float the tensor rules accept as a scalar value (`f32` or `f64`). `#[grad]` adds
/// `T: Scalar` to a generic function's companions when a tensor rule may see `T`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not known to be `f32` or `f64`, the floats `#[grad]`'s tensor rules run on",
    label = "needs `{Self}: backprop::Real`",
    note = "in generic code, add `{Self}: backprop::Real` to the bounds (`f32` or `f64`)"
)]
pub trait Scalar:
    Real
    + Value<Elem = Self, Cot = Self, Shape = ScalarShape<Self>>
    + OwnedValue
    + ElemOf<Elem = Self>
    + Elementwise<Self>
{
}

impl<A: Real, S: Data<Elem = A>, D: Dimension> Value for ArrayBase<S, D> {
    type Elem = A;
    type Cot = Array<A, D>;
    type Shape = ArrayShape<A, D>;
    fn shape_of(&self) -> ArrayShape<A, D> {
        ArrayShape {
            dim: self.raw_dim(),
            elem: PhantomData,
        }
    }
    fn dyn_view(&self) -> DynView<'_, A> {
        DynView::Array(self.view().into_dyn())
    }
}

impl<V: Value + ?Sized> Value for &V {
    type Elem = V::Elem;
    type Cot = V::Cot;
    type Shape = V::Shape;
    fn shape_of(&self) -> V::Shape {
        (**self).shape_of()
    }
    fn dyn_view(&self) -> DynView<'_, V::Elem> {
        (**self).dyn_view()
    }
}

/// A scalar's shape: nothing (zero bytes on the tape).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScalarShape<A>(PhantomData<A>);

/// An array's shape, kept for summing a broadcast cotangent back to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayShape<A, D> {
    /// The array's dimension.
    pub dim: D,
    elem: PhantomData<A>,
}

/// A shape a cotangent can be fitted to.
pub trait ShapeOf<A: Real> {
    /// The cotangent type of a value of this shape.
    type Cot;
    /// Sums `g` (of this shape or broadcast from it) back to this shape.
    fn fit(&self, g: Dyn<A>) -> Self::Cot;
    /// [`fit`](Self::fit) from a borrowed cotangent: reductions read the view directly,
    /// and only a cotangent that already has this shape is copied.
    fn fit_view(&self, g: DynView<'_, A>) -> Self::Cot;
    /// A cotangent of this shape with every element `v`.
    fn fill(&self, v: A) -> Self::Cot;
    /// How many elements.
    fn len(&self) -> usize;
    /// Whether it has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<A: Real> ShapeOf<A> for ScalarShape<A> {
    type Cot = A;
    fn fit(&self, g: Dyn<A>) -> A {
        match g {
            Dyn::Scalar(v) => v,
            Dyn::Array(a) => a.sum(),
        }
    }
    fn fit_view(&self, g: DynView<'_, A>) -> A {
        match g {
            DynView::Scalar(v) => v,
            DynView::Array(a) => a.sum(),
        }
    }
    fn fill(&self, v: A) -> A {
        v
    }
    fn len(&self) -> usize {
        1
    }
}

impl<A: Real, D: Dimension> ShapeOf<A> for ArrayShape<A, D> {
    type Cot = Array<A, D>;
    fn fit(&self, g: Dyn<A>) -> Array<A, D> {
        match g {
            Dyn::Scalar(v) => Array::from_elem(self.dim.clone(), v),
            Dyn::Array(a) if a.shape() == self.dim.slice() => {
                a.into_dimensionality::<D>().expect("same shape")
            }
            Dyn::Array(a) => crate::ops::unbroadcast(&a, &self.dim),
        }
    }
    fn fit_view(&self, g: DynView<'_, A>) -> Array<A, D> {
        match g {
            DynView::Scalar(v) => Array::from_elem(self.dim.clone(), v),
            DynView::Array(a) => crate::ops::unbroadcast(&a, &self.dim),
        }
    }
    fn fill(&self, v: A) -> Array<A, D> {
        Array::from_elem(self.dim.clone(), v)
    }
    fn len(&self) -> usize {
        self.dim.size()
    }
}

/// A borrowed scalar or array, for elementwise arithmetic with broadcasting.
#[derive(Clone, Debug)]
pub enum DynView<'a, A> {
    /// A scalar.
    Scalar(A),
    /// An array of any dimension.
    Array(ArrayViewD<'a, A>),
}

/// An owned scalar or array: the result of elementwise arithmetic before it is fitted
/// to a shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Dyn<A> {
    /// A scalar.
    Scalar(A),
    /// An array of any dimension.
    Array(ArrayD<A>),
}

use crate::ops::shape_str;

/// `f(a, b)` elementwise with broadcasting.
fn zip_dyn<A: Real>(
    op: &str,
    a: DynView<'_, A>,
    b: DynView<'_, A>,
    f: impl Fn(A, A) -> A,
) -> Dyn<A> {
    match (a, b) {
        (DynView::Scalar(x), DynView::Scalar(y)) => Dyn::Scalar(f(x, y)),
        (DynView::Array(x), DynView::Scalar(y)) => Dyn::Array(x.mapv(|x| f(x, y))),
        (DynView::Scalar(x), DynView::Array(y)) => Dyn::Array(y.mapv(|y| f(x, y))),
        (DynView::Array(x), DynView::Array(y)) => {
            let shape = IxDyn(&crate::ops::broadcast_shape(op, x.shape(), y.shape()));
            let xb = x.broadcast(shape.clone()).expect("co-broadcast shape");
            let yb = y.broadcast(shape).expect("co-broadcast shape");
            Dyn::Array(Zip::from(&xb).and(&yb).map_collect(|&x, &y| f(x, y)))
        }
    }
}

fn map_dyn<A: Real>(a: DynView<'_, A>, f: impl Fn(A) -> A) -> Dyn<A> {
    match a {
        DynView::Scalar(x) => Dyn::Scalar(f(x)),
        DynView::Array(x) => Dyn::Array(x.mapv(f)),
    }
}

/// Shape of a value, saved in the forward pass for a broadcasting rule.
pub fn shape_of<V: Value>(x: &V) -> V::Shape {
    x.shape_of()
}

/// The zero cotangent of `x` (the gradient of an argument nothing flows to).
pub fn zeros_like<V: Value>(x: &V) -> V::Cot {
    x.shape_of().fill(<V::Elem as num_traits::Zero>::zero())
}

/// The zero cotangent of a value of shape `shape` (taken by [`shape_of`] in the forward
/// pass, where the value itself may be gone by the reverse pass).
pub fn zeros_of_shape<A: Real, Sh: ShapeOf<A>>(shape: &Sh) -> Sh::Cot {
    shape.fill(A::zero())
}

// ---- arithmetic with broadcasting -----------------------------------------------

/// `y = a ± b`: `∂a = Σ_broadcast d` (and `∂b` the same with the other shape).
pub fn add_vjp<A: Real, Sh: ShapeOf<A>, C: Value<Elem = A>>(shape: &Sh, d: &C) -> Sh::Cot {
    shape.fit_view(d.dyn_view())
}

/// `y = a + b` with both operands active: `(∂a, ∂b) = (Σ_broadcast d, Σ_broadcast d)`,
/// taking the cotangent by value (the two rules are its only readers). The operand with
/// more elements gets `d` itself where it has `d`'s shape; the other is summed (or
/// copied, when both have it) from a view. Same values as [`add_vjp`] twice.
pub fn add_vjp_pair<A: Real, Sa: ShapeOf<A>, Sb: ShapeOf<A>, C: OwnedValue<Elem = A>>(
    shape_a: &Sa,
    shape_b: &Sb,
    d: C,
) -> (Sa::Cot, Sb::Cot) {
    if shape_b.len() > shape_a.len() {
        let d_a = shape_a.fit_view(d.dyn_view());
        (d_a, shape_b.fit(d.into_dyn_value()))
    } else {
        let d_b = shape_b.fit_view(d.dyn_view());
        (shape_a.fit(d.into_dyn_value()), d_b)
    }
}

/// `y = a − b` with both operands active: `(∂a, ∂b) = (Σ_broadcast d, −Σ_broadcast d)`,
/// `d` by value and moved into `∂a` where it has `a`'s shape. Same values as
/// [`add_vjp`] and [`sub_vjp_rhs`].
pub fn sub_vjp_pair<A: Real, Sa: ShapeOf<A>, Sb: ShapeOf<A>, C: OwnedValue<Elem = A>>(
    shape_a: &Sa,
    shape_b: &Sb,
    d: C,
) -> (Sa::Cot, Sb::Cot) {
    let d_b = sub_vjp_rhs(shape_b, &d);
    (shape_a.fit(d.into_dyn_value()), d_b)
}

/// A cotangent owned by value: a float, or an owned array, which [`add_vjp_pair`] can
/// hand on without copying.
pub trait OwnedValue: Value {
    /// Itself as a [`Dyn`], an array without a copy.
    fn into_dyn_value(self) -> Dyn<Self::Elem>;
}

impl OwnedValue for f32 {
    fn into_dyn_value(self) -> Dyn<f32> {
        Dyn::Scalar(self)
    }
}

impl OwnedValue for f64 {
    fn into_dyn_value(self) -> Dyn<f64> {
        Dyn::Scalar(self)
    }
}

impl<A: Real, D: Dimension> OwnedValue for Array<A, D>
where
    Array<A, D>: Value<Elem = A>,
{
    fn into_dyn_value(self) -> Dyn<A> {
        Dyn::Array(self.into_dyn())
    }
}

/// `y = a − b`: `∂b = −Σ_broadcast d`.
pub fn sub_vjp_rhs<A: Real, Sh: ShapeOf<A>, C: Value<Elem = A>>(shape: &Sh, d: &C) -> Sh::Cot {
    shape.fit(map_dyn(d.dyn_view(), |d| -d))
}

/// `y = a · b` (elementwise): `∂a = Σ_broadcast d·b`. Strong zero.
pub fn mul_vjp_lhs<A: Real, Sh: ShapeOf<A>, B: Value<Elem = A>, C: Value<Elem = A>>(
    shape_a: &Sh,
    b: &B,
    d: &C,
) -> Sh::Cot {
    shape_a.fit(zip_dyn(
        "mul",
        d.dyn_view(),
        b.dyn_view(),
        scalar::strong_mul,
    ))
}

/// `y = a · b` (elementwise): `∂b = Σ_broadcast d·a`. Strong zero.
pub fn mul_vjp_rhs<A: Real, Sh: ShapeOf<A>, B: Value<Elem = A>, C: Value<Elem = A>>(
    shape_b: &Sh,
    a: &B,
    d: &C,
) -> Sh::Cot {
    shape_b.fit(zip_dyn(
        "mul",
        d.dyn_view(),
        a.dyn_view(),
        scalar::strong_mul,
    ))
}

/// `y = a / b` (elementwise): `∂a = Σ_broadcast d/b`. Strong zero.
pub fn div_vjp_lhs<A: Real, Sh: ShapeOf<A>, B: Value<Elem = A>, C: Value<Elem = A>>(
    shape_a: &Sh,
    b: &B,
    d: &C,
) -> Sh::Cot {
    shape_a.fit(zip_dyn("div", d.dyn_view(), b.dyn_view(), |d, b| {
        scalar::div_vjp_lhs(b, d)
    }))
}

/// `y = a / b` (elementwise): `∂b = −Σ_broadcast d·y/b`. Strong zero.
pub fn div_vjp_rhs<
    A: Real,
    Sh: ShapeOf<A>,
    B: Value<Elem = A>,
    Y: Value<Elem = A>,
    C: Value<Elem = A>,
>(
    shape_b: &Sh,
    b: &B,
    y: &Y,
    d: &C,
) -> Sh::Cot {
    let d_over_b = zip_dyn("div", d.dyn_view(), b.dyn_view(), |d, b| {
        if d == A::zero() { A::zero() } else { d / b }
    });
    let view = match &d_over_b {
        Dyn::Scalar(v) => DynView::Scalar(*v),
        Dyn::Array(a) => DynView::Array(a.view()),
    };
    // −(d/b)·y with strong zeros both ways: 0 for q = 0, and for q = ±∞ at y = 0.
    shape_b.fit(zip_dyn("div", view, y.dyn_view(), |q, y| {
        scalar::strong_mul(q, -y)
    }))
}

/// The identity's pullback where the cotangent is read again: a copy.
pub fn identity_vjp<C: Clone>(d: &C) -> C {
    d.clone()
}

/// Negation's pullback where the cotangent is read again.
pub fn neg_vjp<C: Clone + core::ops::Neg<Output = C>>(d: &C) -> C {
    -d.clone()
}

// ---- elementwise functions ------------------------------------------------------

/// A saved value and a cotangent of the same shape, combined elementwise.
pub trait Elementwise<C>: ElemOf {
    /// `f(saved, d)` for every element; the result has the cotangent's type.
    fn zip_cot(&self, d: &C, f: impl Fn(Self::Elem, Self::Elem) -> Self::Elem) -> C;
}

/// The element type of a value (helper for [`Elementwise`]).
pub trait ElemOf {
    /// Element type.
    type Elem: Real;
}

impl<A: Real, S: Data<Elem = A>, D: Dimension> ElemOf for ArrayBase<S, D> {
    type Elem = A;
}
impl<V: ElemOf + ?Sized> ElemOf for &V {
    type Elem = V::Elem;
}

impl<A: Real, S: Data<Elem = A>, D: Dimension> Elementwise<Array<A, D>> for ArrayBase<S, D> {
    fn zip_cot(&self, d: &Array<A, D>, f: impl Fn(A, A) -> A) -> Array<A, D> {
        assert_eq!(
            self.shape(),
            d.shape(),
            "elementwise rule: saved value is {} but cotangent is {}",
            shape_str(self.shape()),
            shape_str(d.shape())
        );
        Zip::from(self).and(d).map_collect(|&x, &d| f(x, d))
    }
}

impl<V: Elementwise<C> + ?Sized, C> Elementwise<C> for &V {
    fn zip_cot(&self, d: &C, f: impl Fn(V::Elem, V::Elem) -> V::Elem) -> C {
        (**self).zip_cot(d, f)
    }
}

/// Generates the array path's rule for each float method in the rule table
/// (`derive/src/rule_table.in`): a rule reading one value is elementwise
/// ([`Elementwise`]: an array's rule maps the scalar rule over the saved array and the
/// cotangent); a rule reading several is the scalar rule on scalars the tensor path
/// reaches (`x.sum().max(y)`), taking references. Operators (un-broadcasting, above) and
/// rules with a non-float argument (`powi`, below) are written here by hand.
macro_rules! tensor_rules {
    (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $x:ident, $dd:ident ) => $body:expr ;) => {
        #[doc = concat!("Elementwise [`", stringify!($rule), "`](crate::rules::scalar::", stringify!($rule), ") over a scalar or an array.")]
        #[inline]
        pub fn $rule<V: Elementwise<C>, C>(saved: &V, d: &C) -> C {
            saved.zip_cot(d, |s, d| scalar::$rule(s, d))
        }
    };
    (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $($x:ident),+ ) => $body:expr ;) => {
        #[doc = concat!("[`", stringify!($rule), "`](crate::rules::scalar::", stringify!($rule), ") on scalars reached by the tensor path (e.g. `x.sum().max(y)`).")]
        #[inline]
        pub fn $rule<A: Real>($($x: &A),+) -> A {
            scalar::$rule($(*$x),+)
        }
    };
    (@line $($line:tt)*) => {};
}

backprop_derive::__rule_table!(rule_lines, tensor_rules);

/// Elementwise `powi`: `∂x = d·n·xⁿ⁻¹`.
pub fn powi_vjp<V: Elementwise<C>, C>(x: &V, n: &i32, d: &C) -> C {
    x.zip_cot(d, |x, d| scalar::powi_vjp(x, *n, d))
}

// ---- linear algebra and reductions --------------------------------------------

/// `y = xᵀ` (`.t()`, `.reversed_axes()`): `∂x = dᵀ`, in row-major order (a gradient
/// the optimizers and `Params` take as it is, where `dᵀ`'s own order is column-major).
pub fn t_vjp<A: Real, D: Dimension>(d: &Array<A, D>) -> Array<A, D> {
    d.view().reversed_axes().as_standard_layout().into_owned()
}

/// `y = a.dot(b)`: `∂a` from the saved `b` and the cotangent, for each of ndarray's
/// `dot` shapes (matrix·matrix, matrix·vector, vector·matrix, vector·vector).
pub trait DotLhs<C> {
    /// The cotangent of `a`.
    type Out;
    /// `∂a`.
    fn dot_lhs(&self, d: &C) -> Self::Out;
}

/// `y = a.dot(b)`: `∂b` from the saved `a` and the cotangent.
pub trait DotRhs<C> {
    /// The cotangent of `b`.
    type Out;
    /// `∂b`.
    fn dot_rhs(&self, d: &C) -> Self::Out;
}

// (m×k)·(k×n): ∂a = d·bᵀ, ∂b = aᵀ·d (the lesson's matmul rule).
impl<A: Real, S: Data<Elem = A>> DotLhs<Array2<A>> for ArrayBase<S, Ix2> {
    type Out = Array2<A>;
    fn dot_lhs(&self, d: &Array2<A>) -> Array2<A> {
        crate::ops::matmul(d, &self.t())
    }
}
impl<A: Real, S: Data<Elem = A>> DotRhs<Array2<A>> for ArrayBase<S, Ix2> {
    type Out = Array2<A>;
    fn dot_rhs(&self, d: &Array2<A>) -> Array2<A> {
        crate::ops::matmul(&self.t(), d)
    }
}
// (m×k)·(k): a is a matrix, b and d vectors: ∂a = d⊗b (outer), ∂b = aᵀ·d.
impl<A: Real, S: Data<Elem = A>> DotLhs<Array1<A>> for ArrayBase<S, Ix1> {
    type Out = Array2<A>;
    fn dot_lhs(&self, d: &Array1<A>) -> Array2<A> {
        let (m, k) = (d.len(), self.len());
        Array2::from_shape_fn((m, k), |(i, j)| d[i] * self[j])
    }
}
impl<A: Real, S: Data<Elem = A>> DotRhs<Array1<A>> for ArrayBase<S, Ix2> {
    type Out = Array1<A>;
    fn dot_rhs(&self, d: &Array1<A>) -> Array1<A> {
        self.t().dot(d)
    }
}
// (k)·(k): ∂a = d·b, ∂b = d·a.
impl<A: Real, S: Data<Elem = A>> DotLhs<A> for ArrayBase<S, Ix1> {
    type Out = Array1<A>;
    fn dot_lhs(&self, d: &A) -> Array1<A> {
        self.mapv(|b| scalar::strong_mul(*d, b))
    }
}
impl<A: Real, S: Data<Elem = A>> DotRhs<A> for ArrayBase<S, Ix1> {
    type Out = Array1<A>;
    fn dot_rhs(&self, d: &A) -> Array1<A> {
        self.mapv(|a| scalar::strong_mul(*d, a))
    }
}
// (k)·(k×n): a and d are vectors, b a matrix: ∂a = b·d, ∂b = a⊗d (outer).
impl<A: Real, S: Data<Elem = A>> DotLhs<Array1<A>> for ArrayBase<S, Ix2> {
    type Out = Array1<A>;
    fn dot_lhs(&self, d: &Array1<A>) -> Array1<A> {
        self.dot(d)
    }
}
impl<A: Real, S: Data<Elem = A>> DotRhs<Array1<A>> for ArrayBase<S, Ix1> {
    type Out = Array2<A>;
    fn dot_rhs(&self, d: &Array1<A>) -> Array2<A> {
        let (k, n) = (self.len(), d.len());
        Array2::from_shape_fn((k, n), |(i, j)| self[i] * d[j])
    }
}
impl<V: DotLhs<C> + ?Sized, C> DotLhs<C> for &V {
    type Out = V::Out;
    fn dot_lhs(&self, d: &C) -> V::Out {
        (**self).dot_lhs(d)
    }
}
impl<V: DotRhs<C> + ?Sized, C> DotRhs<C> for &V {
    type Out = V::Out;
    fn dot_rhs(&self, d: &C) -> V::Out {
        (**self).dot_rhs(d)
    }
}

/// `y = a.dot(b)`: `∂a` (saves `b`), for each of ndarray's `dot` shapes.
pub fn dot_vjp_lhs<B: DotLhs<C>, C>(b: &B, d: &C) -> B::Out {
    b.dot_lhs(d)
}

/// `y = a.dot(b)`: `∂b` (saves `a`).
pub fn dot_vjp_rhs<Av: DotRhs<C>, C>(a: &Av, d: &C) -> Av::Out {
    a.dot_rhs(d)
}

/// `y = Σ x`: `∂x = d` in every element.
pub fn sum_vjp<A: Real, Sh: ShapeOf<A>>(shape: &Sh, d: &A) -> Sh::Cot {
    shape.fill(*d)
}

/// `y = mean x`: `∂x = d/n` in every element.
pub fn mean_vjp<A: Real, Sh: ShapeOf<A>>(shape: &Sh, d: &A) -> Sh::Cot {
    let n = A::from(shape.len()).unwrap_or_else(A::nan);
    shape.fill(*d / n)
}

/// `y = x.sum_axis(axis)`: `∂x` is `d` repeated along `axis`.
pub fn sum_axis_vjp<A: Real, D: Dimension + RemoveAxis>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    d: &Array<A, D::Smaller>,
) -> Array<A, D> {
    crate::ops::sum_axis_vjp(&shape.dim, *axis, d)
}

/// `y = x.mean_axis(axis).unwrap()`: `∂x` is `d/n` repeated along `axis`.
pub fn mean_axis_vjp<A: Real, D: Dimension + RemoveAxis>(
    shape: &ArrayShape<A, D>,
    axis: &Axis,
    d: &Array<A, D::Smaller>,
) -> Array<A, D> {
    crate::ops::mean_axis_vjp(&shape.dim, *axis, d)
}

/// Panics, naming the operation and both shapes, unless `a` and `b` broadcast together
/// (NumPy's rules). `#[grad]` calls it before each arithmetic operator on the tensor
/// path, where ndarray's own panic would name neither shape.
#[track_caller]
pub fn check_broadcast<A: Value, B: Value>(what: &str, a: &A, b: &B) {
    if let (DynView::Array(x), DynView::Array(y)) = (a.dyn_view(), b.dyn_view()) {
        crate::ops::broadcast_shape(what, x.shape(), y.shape());
    }
}

/// `a.dot(b)` in a `#[grad]` forward pass: matrix·matrix runs on the crate's matmul
/// kernel (gemm's microkernel, both cores for large products), the other shapes on
/// ndarray's `dot`. The value equals ndarray's up to the order of floating-point sums.
pub trait DotForward<B> {
    /// The product's type.
    type Out;
    /// `self · b`.
    fn dot_forward(&self, b: &B) -> Self::Out;
}

impl<A: Real, S1: Data<Elem = A>, S2: Data<Elem = A>> DotForward<ArrayBase<S2, Ix2>>
    for ArrayBase<S1, Ix2>
{
    type Out = Array2<A>;
    fn dot_forward(&self, b: &ArrayBase<S2, Ix2>) -> Array2<A> {
        crate::ops::matmul(self, b)
    }
}

impl<A: Real, S1: Data<Elem = A>, S2: Data<Elem = A>> DotForward<ArrayBase<S2, Ix1>>
    for ArrayBase<S1, Ix2>
{
    type Out = Array1<A>;
    fn dot_forward(&self, b: &ArrayBase<S2, Ix1>) -> Array1<A> {
        self.dot(b)
    }
}

impl<A: Real, S1: Data<Elem = A>, S2: Data<Elem = A>> DotForward<ArrayBase<S2, Ix2>>
    for ArrayBase<S1, Ix1>
{
    type Out = Array1<A>;
    fn dot_forward(&self, b: &ArrayBase<S2, Ix2>) -> Array1<A> {
        self.dot(b)
    }
}

impl<A: Real, S1: Data<Elem = A>, S2: Data<Elem = A>> DotForward<ArrayBase<S2, Ix1>>
    for ArrayBase<S1, Ix1>
{
    type Out = A;
    fn dot_forward(&self, b: &ArrayBase<S2, Ix1>) -> A {
        self.dot(b)
    }
}

/// An array or a reference to one, seen as a view.
pub trait Viewable {
    /// Element type.
    type Elem;
    /// Dimension.
    type Dim: Dimension;
    /// A view of the array.
    fn as_view(&self) -> ndarray::ArrayView<'_, Self::Elem, Self::Dim>;
}

impl<A, S: Data<Elem = A>, D: Dimension> Viewable for ArrayBase<S, D> {
    type Elem = A;
    type Dim = D;
    fn as_view(&self) -> ndarray::ArrayView<'_, A, D> {
        self.view()
    }
}

impl<V: Viewable + ?Sized> Viewable for &V {
    type Elem = V::Elem;
    type Dim = V::Dim;
    fn as_view(&self) -> ndarray::ArrayView<'_, V::Elem, V::Dim> {
        (**self).as_view()
    }
}

/// The product type of `a.dot(b)` for viewable operands.
pub type DotOut<'a, X, Y> =
    <ndarray::ArrayView<'a, <X as Viewable>::Elem, <X as Viewable>::Dim> as DotForward<
        ndarray::ArrayView<'a, <Y as Viewable>::Elem, <Y as Viewable>::Dim>,
    >>::Out;

/// `a.dot(b)` for the forward pass (see [`DotForward`]); operands may be arrays,
/// views or references to them.
#[inline]
pub fn dot<'a, X, Y>(a: &'a X, b: &'a Y) -> DotOut<'a, X, Y>
where
    X: Viewable,
    Y: Viewable,
    ndarray::ArrayView<'a, X::Elem, X::Dim>: DotForward<ndarray::ArrayView<'a, Y::Elem, Y::Dim>>,
{
    a.as_view().dot_forward(&b.as_view())
}

/// `a.dot(b)` in the plain function `f` a `#[grad]` attribute leaves beside its
/// companions (see `backprop-derive`'s `plain.rs`): the operands and the method as
/// written, as a closure. [`PlainDotKernel`] runs two matrices of a [`Real`] element
/// type on the crate's matmul, as the forward pass does; [`PlainDotMethod`] calls the
/// method for any other pair. The kernel's impl is on `PlainDot` and the method's on
/// `&PlainDot`, so `(&plain_dot(..)).plain_dot_product()` finds the kernel first where
/// it applies.
pub struct PlainDot<'a, R: ?Sized, B, F> {
    a: &'a R,
    /// The argument and the method, taken by whichever `product` runs (once).
    rest: core::cell::Cell<Option<(B, F)>>,
}

/// See [`PlainDot`]: `recv.dot(arg)` is
/// `(&plain_dot(&recv, arg, |r, b| r.dot(b))).plain_dot_product()`.
#[inline]
pub fn plain_dot<'a, R: ?Sized, B, O, F: FnOnce(&'a R, B) -> O>(
    a: &'a R,
    b: B,
    method: F,
) -> PlainDot<'a, R, B, F> {
    PlainDot {
        a,
        rest: core::cell::Cell::new(Some((b, method))),
    }
}

impl<R: ?Sized, B, F> PlainDot<'_, R, B, F> {
    fn take(&self) -> (B, F) {
        self.rest
            .take()
            .expect("`plain_dot_product` runs once, where `#[grad]` wrote it")
    }
}

/// The matrix·matrix product of [`PlainDot`], on the crate's matmul.
pub trait PlainDotKernel {
    /// The product's type.
    type Out;
    /// `a · b`.
    fn plain_dot_product(&self) -> Self::Out;
}

impl<R, B, F> PlainDotKernel for PlainDot<'_, R, B, F>
where
    R: Viewable<Dim = Ix2> + ?Sized,
    B: Viewable<Dim = Ix2, Elem = R::Elem>,
    R::Elem: Real,
{
    type Out = Array2<R::Elem>;
    #[inline]
    fn plain_dot_product(&self) -> Array2<R::Elem> {
        let (b, _) = self.take();
        // The forward pass's product (`DotForward`), so `f` and `f_grad` agree.
        self.a.as_view().dot_forward(&b.as_view())
    }
}

/// Any other `a.dot(b)` of [`PlainDot`]: the method as written.
pub trait PlainDotMethod {
    /// The method's result.
    type Out;
    /// `a.dot(b)`.
    fn plain_dot_product(&self) -> Self::Out;
}

impl<'a, R: ?Sized, B, O, F: FnOnce(&'a R, B) -> O> PlainDotMethod for &PlainDot<'a, R, B, F> {
    type Out = O;
    #[inline]
    fn plain_dot_product(&self) -> O {
        let (b, method) = self.take();
        method(self.a, b)
    }
}

/// A constant operand of a tensor rule (`x / 3.0`, `x * K`) in the element type of the
/// cotangent, so an f32 array divided by a literal (which alone would be f64) works.
pub fn like<C: Value, V: num_traits::ToPrimitive>(_: &C, v: V) -> C::Elem {
    <C::Elem as num_traits::NumCast>::from(v).expect("a numeric constant converts to f32/f64")
}

/// Panics, naming the operation and both shapes, unless `rhs` broadcasts to `lhs`'s
/// shape: what ndarray's `+=` requires (the result keeps `lhs`'s shape), which `#[grad]`
/// checks before evaluating `lhs += rhs` as `lhs + rhs`.
#[track_caller]
pub fn check_assign<A: Value, B: Value>(what: &str, lhs: &A, rhs: &B) {
    if let DynView::Array(x) = lhs.dyn_view() {
        let target = x.shape().to_vec();
        let source = match rhs.dyn_view() {
            DynView::Array(y) => y.shape().to_vec(),
            DynView::Scalar(_) => Vec::new(),
        };
        let fits = source.len() <= target.len()
            && source
                .iter()
                .rev()
                .zip(target.iter().rev())
                .all(|(s, t)| s == t || *s == 1);
        assert!(
            fits,
            "{what}: cannot broadcast {} into {}",
            shape_str(&source),
            shape_str(&target)
        );
    }
}

/// A value an operator may consume, borrowed if it is an array and copied if it is a
/// scalar: how the tensor path passes the result of a call, whose kind the macro
/// cannot see, to an operator without moving it away from the tape.
pub trait ByRef {
    /// `&Self` for an array, `Self` for a scalar.
    type Out<'a>
    where
        Self: 'a;
    /// The borrow or the copy.
    fn by_ref(&self) -> Self::Out<'_>;
}

impl ByRef for f32 {
    type Out<'a> = f32;
    fn by_ref(&self) -> f32 {
        *self
    }
}

impl ByRef for f64 {
    type Out<'a> = f64;
    fn by_ref(&self) -> f64 {
        *self
    }
}

impl<S: Data, D: Dimension> ByRef for ArrayBase<S, D> {
    type Out<'a>
        = &'a ArrayBase<S, D>
    where
        Self: 'a;
    fn by_ref(&self) -> &ArrayBase<S, D> {
        self
    }
}

/// A borrowed array operand (`&Array2` argument, `x.view()` by value borrowed by the
/// macro): the array reference itself, so `&a * by_ref(&b)` needs no `&&` impl.
impl<'b, S: Data, D: Dimension> ByRef for &'b ArrayBase<S, D> {
    type Out<'a>
        = &'b ArrayBase<S, D>
    where
        Self: 'a;
    fn by_ref(&self) -> &'b ArrayBase<S, D> {
        self
    }
}

/// See [`ByRef`].
pub fn by_ref<V: ByRef>(v: &V) -> V::Out<'_> {
    v.by_ref()
}

// ---- loops carrying arrays ---------------------------------------------------------

/// The running sum of a value's cotangents over a loop's iterations, started by the
/// first (a zero array would need a shape the macro does not know).
pub fn lazy_add<C: core::ops::Add<Output = C>>(sum: Option<C>, step: C) -> Option<C> {
    Some(match sum {
        Some(s) => s + step,
        None => step,
    })
}

/// The summed cotangent of `x`, or a zero of `x`'s shape when the loop never ran.
pub fn sum_or_zeros_like<V: Value>(sum: Option<V::Cot>, x: &V) -> V::Cot {
    sum.unwrap_or_else(|| zeros_like(x))
}

/// An owned copy of a view (a runtime op's input that is a view of a local array).
pub fn owned_view<A: Clone, S: ndarray::Data<Elem = A>, D: ndarray::Dimension>(
    x: &ArrayBase<S, D>,
) -> Array<A, D> {
    x.to_owned()
}
