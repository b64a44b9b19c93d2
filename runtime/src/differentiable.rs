//! Values `#[grad]` differentiates as one argument: a struct of parameters.
//!
//! A `#[grad]` argument whose type is a struct (`p: &Mlp`) is differentiated as a whole:
//! its gradient is a value of the same type, each field holding the derivative of the
//! loss with respect to that field (JAX's pytrees, PyTorch's `module.parameters()`
//! gradients, as one typed value). The reverse pass starts from [`Differentiable::zero_like`]
//! and adds each field's contributions in place (`d_p.w[i] += ..`, `d_p.b += ..`).
//!
//! `#[derive(Differentiable)]` implements it for a struct whose fields are floats,
//! `Vec`s or arrays of floats, ndarray arrays, other `Differentiable` structs, and
//! `Vec`s, arrays and `Box`es of those (`layers: Vec<Layer>`), generic structs
//! (`Layer<T>`) included; the derive also implements [`Params`](crate::params::Params),
//! so the same struct is what the optimizers step, clipping clips and the memory report
//! counts, its tensors named by path (`layers.0.w`).
//!
//! ```
//! use backprop::{grad, Differentiable};
//!
//! #[derive(Clone, Debug, PartialEq, Differentiable)]
//! struct Line { w: Vec<f64>, b: f64 }
//!
//! /// Mean squared error of w·x + b against y over a batch of rows.
//! #[grad(p)]
//! fn mse(p: &Line, xs: &[f64], ys: &[f64]) -> f64 {
//!     let d = p.w.len();
//!     let mut s = 0.0;
//!     for i in 0..ys.len() {
//!         let mut z = p.b;
//!         for j in 0..d {
//!             z += p.w[j] * xs[i * d + j];
//!         }
//!         let e = z - ys[i];
//!         s += e * e;
//!     }
//!     s / ys.len() as f64
//! }
//!
//! let p = Line { w: vec![1.0, -1.0], b: 0.5 };
//! let (loss, g) = mse_grad(&p, &[1.0, 2.0, 3.0, 1.0], &[0.0, 1.0]);
//! // Residuals: (1 − 2 + 0.5) − 0 = −0.5 and (3 − 1 + 0.5) − 1 = 1.5.
//! assert_eq!(loss, (0.25 + 2.25) / 2.0);
//! // ∂/∂w = mean 2e·x, ∂/∂b = mean 2e: the gradient is a `Line`.
//! assert_eq!(g.p, Line { w: vec![-0.5 + 4.5, -1.0 + 1.5], b: -0.5 + 1.5 });
//! ```

pub use backprop_derive::Differentiable;

/// A value whose gradient has its own type: floats, buffers of floats, ndarray arrays,
/// and structs of those (`#[derive(Differentiable)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Differentiable`, so `#[grad]` cannot differentiate an argument of this type",
    label = "differentiated as a struct of parameters",
    note = "derive it (`#[derive(backprop::Differentiable)]`) if it holds parameters, or list the differentiated arguments in `#[grad(...)]` to keep it as data"
)]
pub trait Differentiable: Sized {
    /// A value shaped like `self` with every float 0: where a reverse pass starts.
    fn zero_like(&self) -> Self;

    /// A zero that may leave its arrays unallocated (empty) until a cotangent arrives,
    /// which then moves in instead of being added to zeros ([`Accumulate`] on an empty
    /// array): what a reverse pass starts from. Followed by
    /// [`fill_missing`](Differentiable::fill_missing) before the gradient is returned.
    /// The default is [`zero_like`](Differentiable::zero_like).
    #[doc(hidden)]
    fn lazy_zero(&self) -> Self {
        self.zero_like()
    }

    /// Allocates, as zeros shaped like `like`, the arrays of a
    /// [`lazy_zero`](Differentiable::lazy_zero) that no cotangent reached.
    ///
    /// # Panics
    /// If an array has another non-empty shape than its counterpart in `like`.
    #[doc(hidden)]
    fn fill_missing(&mut self, like: &Self) {
        let _ = like;
    }

    /// Where `self` and `like` differ in shape (a buffer's length, an array's shape, a
    /// list's length), named by its dotted path under `path`: forward mode checks a
    /// tangent against its argument with it. `None` when they match.
    #[doc(hidden)]
    fn shape_mismatch(&self, like: &Self, path: &str) -> Option<String> {
        let _ = (like, path);
        None
    }
}

/// `path.field`, or `field` at the root.
#[doc(hidden)]
pub fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// "`layers.0.w`" for a field, "list" (`what`) for the value itself.
fn named(path: &str, what: &str) -> String {
    if path.is_empty() {
        what.to_string()
    } else {
        format!("`{path}`")
    }
}

/// Lists (a `Vec` or array of parameters): the lengths, then each element.
pub(crate) fn list_mismatch<T: Differentiable>(a: &[T], b: &[T], path: &str) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!(
            "{} has {} elements, the argument's {}",
            named(path, "list"),
            a.len(),
            b.len()
        ));
    }
    a.iter()
        .zip(b)
        .enumerate()
        .find_map(|(k, (x, y))| x.shape_mismatch(y, &child_path(path, &k.to_string())))
}

impl Differentiable for f32 {
    fn zero_like(&self) -> Self {
        0.0
    }
}

impl Differentiable for f64 {
    fn zero_like(&self) -> Self {
        0.0
    }
}

impl<T: Differentiable> Differentiable for Vec<T> {
    fn zero_like(&self) -> Self {
        self.iter().map(Differentiable::zero_like).collect()
    }
    fn lazy_zero(&self) -> Self {
        self.iter().map(Differentiable::lazy_zero).collect()
    }
    fn fill_missing(&mut self, like: &Self) {
        for (x, l) in self.iter_mut().zip(like) {
            x.fill_missing(l);
        }
    }
    fn shape_mismatch(&self, like: &Self, path: &str) -> Option<String> {
        list_mismatch(self, like, path)
    }
}

impl<T: Differentiable, const N: usize> Differentiable for [T; N] {
    fn zero_like(&self) -> Self {
        core::array::from_fn(|k| self[k].zero_like())
    }
    fn lazy_zero(&self) -> Self {
        core::array::from_fn(|k| self[k].lazy_zero())
    }
    fn fill_missing(&mut self, like: &Self) {
        for (x, l) in self.iter_mut().zip(like) {
            x.fill_missing(l);
        }
    }
    fn shape_mismatch(&self, like: &Self, path: &str) -> Option<String> {
        list_mismatch(self, like, path)
    }
}

impl<T: Differentiable> Differentiable for Box<T> {
    fn zero_like(&self) -> Self {
        Box::new((**self).zero_like())
    }
    fn lazy_zero(&self) -> Self {
        Box::new((**self).lazy_zero())
    }
    fn fill_missing(&mut self, like: &Self) {
        (**self).fill_missing(like)
    }
    fn shape_mismatch(&self, like: &Self, path: &str) -> Option<String> {
        (**self).shape_mismatch(like, path)
    }
}

impl<A: Clone + num_traits::Zero, D: ndarray::Dimension> Differentiable for ndarray::Array<A, D> {
    fn zero_like(&self) -> Self {
        ndarray::Array::zeros(self.raw_dim())
    }
    /// Empty (no allocation): the first cotangent moves in.
    fn lazy_zero(&self) -> Self {
        ndarray::Array::zeros(D::zeros(self.ndim()))
    }
    fn fill_missing(&mut self, like: &Self) {
        if self.shape() == like.shape() {
            return;
        }
        assert!(
            self.is_empty(),
            "a parameter's gradient has shape {:?}, the parameter {:?}",
            self.shape(),
            like.shape()
        );
        *self = ndarray::Array::zeros(like.raw_dim());
    }
    fn shape_mismatch(&self, like: &Self, path: &str) -> Option<String> {
        (self.shape() != like.shape()).then(|| {
            format!(
                "{} has shape {:?}, the argument's {:?}",
                named(path, "array"),
                self.shape(),
                like.shape()
            )
        })
    }
}

/// The float bound for generic code over arrays: `f32` or `f64`, as `#[grad]`, the
/// tensor rules, [`crate::ops`], the optimizers and `gradcheck!` need it, and as ndarray
/// needs it (`dot` wants [`ndarray::LinalgScalar`], `&a * t` [`ndarray::ScalarOperand`],
/// `mean` [`num_traits::FromPrimitive`]).
///
/// The bounds a user writes for ndarray code (`T: Float + LinalgScalar + ScalarOperand`)
/// are enough for a `#[grad]` function over arrays: its companions add what the rules
/// need. This trait is for code that also calls [`crate::ops`], steps an optimizer or
/// calls the companions from another generic function, where `T` must be one of the
/// two floats the kernels are written for. It also gives a generic parameter struct
/// (`#[derive(Differentiable)] struct Layer<T> { w: Array2<T>, b: T }`) its traits in
/// generic code: `Layer<T>: Differentiable + Params<T>` for `T: Real`.
///
///
/// ```
/// use backprop::{Real, grad};
/// use ndarray::{Array1, Array2};
///
/// #[grad(w, b)]
/// fn dense<T: Real>(w: &Array2<T>, b: &Array1<T>, x: &Array2<T>) -> T {
///     let h = backprop::ops::relu(&(x.dot(w) + b));
///     (&h * &h).mean().unwrap()
/// }
///
/// fn loss_and_grad<T: Real>(w: &Array2<T>, b: &Array1<T>, x: &Array2<T>) -> T {
///     dense_grad(w, b, x).0
/// }
///
/// let x = Array2::<f64>::from_elem((2, 3), 1.0);
/// assert_eq!(loss_and_grad(&Array2::eye(3), &Array1::zeros(3), &x), 1.0);
/// let x = x.mapv(|v| v as f32);
/// assert_eq!(loss_and_grad(&Array2::eye(3), &Array1::zeros(3), &x), 1.0);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not known to be `f32` or `f64`: the bound `backprop::Real` is missing",
    label = "needs `{Self}: backprop::Real`",
    note = "in generic code, add `{Self}: backprop::Real` to the bounds (`f32` or `f64`; it implies `num_traits::Float` and ndarray's `LinalgScalar` and `ScalarOperand`)"
)]
pub trait Real:
    crate::kernels::Real
    + crate::params::Real
    + crate::rules::tensor::Scalar
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + num_traits::FromPrimitive
    + crate::gradcheck::GradValue
    + Differentiable
    + Accumulate
    + crate::params::Params<Self>
    + crate::functions::Erf<Output = Self>
{
}

impl Real for f32 {}
impl Real for f64 {}

/// Adds a field's cotangent into the field's adjoint, in place (what the reverse pass
/// does for `p.b`, `&p.w`).
#[doc(hidden)]
pub trait Accumulate<Rhs = Self> {
    /// `*self += rhs`, elementwise.
    fn accumulate(&mut self, rhs: Rhs);
}

impl Accumulate for f32 {
    #[inline(always)]
    fn accumulate(&mut self, rhs: f32) {
        *self += rhs;
    }
}

impl Accumulate for f64 {
    #[inline(always)]
    fn accumulate(&mut self, rhs: f64) {
        *self += rhs;
    }
}

/// Elementwise: a list of buffers or of parameter structs (`Vec<Layer>`) accumulates
/// each element into its own, as a `Vec<f64>` does each float.
///
/// # Panics
/// If the lengths differ (naming both).
impl<T: Accumulate> Accumulate for Vec<T> {
    fn accumulate(&mut self, rhs: Vec<T>) {
        assert_eq!(
            self.len(),
            rhs.len(),
            "a list's cotangent has {} elements, the list it is added into {}",
            rhs.len(),
            self.len()
        );
        for (t, r) in self.iter_mut().zip(rhs) {
            t.accumulate(r);
        }
    }
}

impl<T: Accumulate, const N: usize> Accumulate for [T; N] {
    fn accumulate(&mut self, rhs: [T; N]) {
        for (t, r) in self.iter_mut().zip(rhs) {
            t.accumulate(r);
        }
    }
}

/// A callee's cotangent for an array argument passed as a buffer (`g(&p.w)` with
/// `w: [f64; 3]`) is a `Vec`.
///
/// # Panics
/// If the lengths differ (naming both).
impl<T: Accumulate, const N: usize> Accumulate<Vec<T>> for [T; N] {
    fn accumulate(&mut self, rhs: Vec<T>) {
        assert_eq!(
            N,
            rhs.len(),
            "a list's cotangent has {} elements, the array it is added into {}",
            rhs.len(),
            N
        );
        for (t, r) in self.iter_mut().zip(rhs) {
            t.accumulate(r);
        }
    }
}

impl<T: Accumulate> Accumulate for Box<T> {
    fn accumulate(&mut self, rhs: Box<T>) {
        (**self).accumulate(*rhs);
    }
}

/// A boxed field lent to a `#[grad]` function (`dense(x, &p.head)` with `head:
/// Box<Layer>`): the callee's cotangent is a `Layer`.
impl<T: Accumulate> Accumulate<T> for Box<T> {
    fn accumulate(&mut self, rhs: T) {
        (**self).accumulate(rhs);
    }
}

impl<A, D> Accumulate for ndarray::Array<A, D>
where
    A: Clone + core::ops::AddAssign,
    D: ndarray::Dimension,
{
    fn accumulate(&mut self, rhs: Self) {
        // The lazy zero a reverse pass starts from (`Differentiable::lazy_zero`): the
        // first cotangent moves in, with no zeros to add it to.
        if self.is_empty() && !rhs.is_empty() {
            // In row-major order, as `zero_like` makes it: `Params` hands a gradient to
            // the optimizers as a flat buffer beside the parameter's, element for element
            // (a transposed cotangent moved in as it was paired them wrongly).
            *self = if rhs.is_standard_layout() {
                rhs
            } else {
                rhs.as_standard_layout().into_owned()
            };
            return;
        }
        assert_eq!(
            self.shape(),
            rhs.shape(),
            "a field's cotangent has shape {:?}, the field {:?}",
            rhs.shape(),
            self.shape()
        );
        *self += &rhs;
    }
}

/// The adjoint of a buffer or array field, ready for element access `d[i]`: an ndarray
/// array left unallocated by [`Differentiable::lazy_zero`] becomes zeros of the primal's
/// shape; a `Vec` or a fixed-size array of floats is returned as it is.
#[doc(hidden)]
pub trait ElementsOf<P: ?Sized> {
    /// `self`, with elements to index.
    fn elements_of(&mut self, primal: &P) -> &mut Self;
}

impl<A: Clone + num_traits::Zero, D: ndarray::Dimension> ElementsOf<ndarray::Array<A, D>>
    for ndarray::Array<A, D>
{
    fn elements_of(&mut self, primal: &ndarray::Array<A, D>) -> &mut Self {
        if self.is_empty() && !primal.is_empty() {
            *self = ndarray::Array::zeros(primal.raw_dim());
        }
        self
    }
}

impl<T> ElementsOf<Vec<T>> for Vec<T> {
    fn elements_of(&mut self, _: &Vec<T>) -> &mut Self {
        self
    }
}

impl<T, const N: usize> ElementsOf<[T; N]> for [T; N] {
    fn elements_of(&mut self, _: &[T; N]) -> &mut Self {
        self
    }
}

/// [`ElementsOf::elements_of`] as a function, for generated code.
#[doc(hidden)]
pub fn elements_of<'a, C: ElementsOf<P>, P: ?Sized>(d: &'a mut C, primal: &P) -> &'a mut C {
    d.elements_of(primal)
}
