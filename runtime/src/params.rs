//! A set of parameter buffers: the one abstraction the training toolbox works on.
//!
//! Optimizers, clipping, initialisation and memory accounting all take "some parameters"
//! (a `Vec<f32>`, a tuple of arrays, a user struct of tensors). Rather than a tensor type
//! of their own they see any such value through [`Params`]: a walk over its buffers in a
//! stable order, each buffer a contiguous `[F]` with a name and a shape.
//!
//! Why a visitor and not a trait object or an iterator:
//! - A struct of tensors is heterogeneous (an `Array2` beside an `Array1` beside a `Vec`);
//!   a visit callback sees each through the same [`BufferRef`] without boxing the fields.
//! - The `'a` on the callback lets a caller collect the borrowed buffers
//!   ([`Params::buffers`], [`Params::buffers_mut`]) and pair the i-th parameter with the
//!   i-th gradient, which is how an optimizer steps: the gradient of a parameter set has
//!   the same type as the set (the `#[grad]` convention), so both walks agree.
//! - It is simple to implement by hand and to derive: a struct visits its fields in
//!   declaration order, prefixing their names with the field name (`layer1.w`). The
//!   derive in `backprop-derive` will emit exactly that.
//!
//! The order of the walk is the identity of a buffer in optimizer state: it must not
//! depend on values, only on the type (and on lengths of `Vec`s of buffers).

use std::fmt::Debug;

use num_traits::{Float, FromPrimitive, ToPrimitive};

/// Element types the toolbox works in: `f32` and `f64`.
///
/// Beyond [`Float`] it knows its byte width and little-endian encoding (for state
/// save/load) and its fused AdamW step (`f32` takes the SIMD kernel, `f64` the scalar
/// loop).
pub trait Real:
    Float + FromPrimitive + ToPrimitive + Debug + Default + Send + Sync + 'static + crate::kernels::Real
{
    /// The dtype tag stored in saved state.
    const DTYPE: Dtype;

    /// Converts from `f64`, rounding to nearest for `f32`.
    fn of(x: f64) -> Self;
    /// Converts to `f64` exactly.
    fn f64(self) -> f64;
    /// Appends the little-endian bytes of `self` to `out`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one value from the first `DTYPE.bytes()` bytes of `b` (little-endian).
    fn read_le(b: &[u8]) -> Self;

    /// Whether any value is NaN or ±∞. `f32` takes the AVX2, multi-threaded check of
    /// [`crate::kernels::adamw::any_non_finite`]; `f64` an exponent-bit OR-reduction (a
    /// `position` search with an early exit does not vectorise, and cost more than the
    /// AdamW kernel itself at 100M).
    fn any_non_finite(xs: &[Self]) -> bool {
        xs.iter().any(|x| !x.is_finite())
    }

    /// One Adam/AdamW step over a buffer; see [`crate::kernels::adamw`] for the formula.
    /// `f32` dispatches to the fused SIMD kernel, `f64` runs the scalar reference.
    #[doc(hidden)]
    fn adamw_step(
        w: &mut [Self],
        g: &[Self],
        m: &mut [Self],
        v: &mut [Self],
        k: &crate::kernels::adamw::AdamWConsts,
    ) {
        crate::kernels::adamw::step_scalar(w, g, m, v, k);
    }
}

/// Element type of a buffer or of saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// IEEE binary16 (only for memory accounting).
    F16,
    /// bfloat16 (only for memory accounting).
    Bf16,
}

impl Dtype {
    /// Bytes per element.
    pub const fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

impl Real for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn of(x: f64) -> f32 {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn any_non_finite(xs: &[f32]) -> bool {
        crate::kernels::adamw::any_non_finite(xs)
    }
    fn adamw_step(
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        k: &crate::kernels::adamw::AdamWConsts,
    ) {
        crate::kernels::adamw::step(w, g, m, v, k);
    }
}

impl Real for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn any_non_finite(xs: &[f64]) -> bool {
        const EXP: u64 = 0x7ff0_0000_0000_0000;
        xs.iter()
            .fold(0u64, |acc, x| acc | u64::from(x.to_bits() & EXP == EXP))
            != 0
    }
    fn of(x: f64) -> f64 {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_le(b: &[u8]) -> f64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        f64::from_le_bytes(a)
    }
}

/// A read-only view of one buffer: its path name, its logical shape and its values
/// (contiguous, in memory order; `values.len()` is the product of `shape`).
#[derive(Debug)]
pub struct BufferRef<'a, F> {
    /// Dotted path from the root of the set (`"layer1.w"`, `"0"`); `""` for a lone buffer.
    pub name: String,
    /// Logical shape; `[len]` for flat buffers.
    pub shape: Vec<usize>,
    /// The values.
    pub values: &'a [F],
}

/// A mutable view of one buffer; see [`BufferRef`].
#[derive(Debug)]
pub struct BufferMut<'a, F> {
    /// Dotted path from the root of the set.
    pub name: String,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// The values.
    pub values: &'a mut [F],
}

/// A set of parameter buffers of element type `F`, walked in a stable order.
///
/// Implemented for single buffers (`Vec<F>`, `[F; N]`, `[F]`, `ndarray::Array<F, D>`),
/// lists of sets (`Vec`, arrays and slices of `Vec<F>`, of `Array<F, D>`, of
/// `#[derive(Differentiable)]` structs, of such lists; element `i` is named `i`, see
/// [`ListItem`]), tuples of up to six sets (named `0`, `1`, ...), lists of named sets
/// (`Vec<(String, P)>`, `Vec<(&str, P)>`, `[(&str, P); N]`), `Box<P>` and `&mut P`.
/// A user struct implements it by visiting its fields in declaration order under their
/// names (see [`Named`]):
///
/// ```
/// use backprop::params::{BufferMut, BufferRef, Named, Params};
/// struct Linear { w: Vec<f64>, b: Vec<f64> }
/// impl Params<f64> for Linear {
///     fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, f64>)) {
///         Named("w", &self.w).visit(prefix, f);
///         Named("b", &self.b).visit(prefix, f);
///     }
///     fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, f64>)) {
///         Named("w", &mut self.w).visit_mut(prefix, f);
///         Named("b", &mut self.b).visit_mut(prefix, f);
///     }
/// }
/// let l = Linear { w: vec![1.0; 6], b: vec![0.0; 2] };
/// let names: Vec<String> = l.buffers().into_iter().map(|b| b.name).collect();
/// assert_eq!(names, ["w", "b"]);
/// assert_eq!(l.num_scalars(), 8);
/// ```
pub trait Params<F> {
    /// Calls `f` once per buffer, in the set's stable order, names prefixed by `prefix`.
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>));
    /// Same walk as [`Params::visit`], with mutable values.
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>));

    /// The buffers in walk order.
    fn buffers(&self) -> Vec<BufferRef<'_, F>> {
        let mut out = Vec::new();
        self.visit("", &mut |b| out.push(b));
        out
    }
    /// The mutable buffers in walk order.
    fn buffers_mut(&mut self) -> Vec<BufferMut<'_, F>> {
        let mut out = Vec::new();
        self.visit_mut("", &mut |b| out.push(b));
        out
    }
    /// Total number of scalars over all buffers.
    fn num_scalars(&self) -> usize {
        let mut n = 0;
        self.visit("", &mut |b| n += b.values.len());
        n
    }
    /// `(name, shape)` of every buffer, in walk order.
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.buffers()
            .into_iter()
            .map(|b| (b.name, b.shape))
            .collect()
    }
}

/// Joins a path prefix and a component with a dot, dropping empty parts.
pub fn join_name(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{name}"),
    }
}

/// A set under a name: visiting `Named("w", &x)` under prefix `p` visits `x` under `p.w`.
/// The building block for hand-written (and derived) struct impls.
pub struct Named<'n, T>(pub &'n str, pub T);

impl<'x, P: ?Sized> Named<'_, &'x P> {
    /// Visits the inner set under `prefix.name`.
    pub fn visit<'a, F>(self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>))
    where
        P: Params<F>,
        'x: 'a,
    {
        self.1.visit(&join_name(prefix, self.0), f);
    }
}

impl<'x, P: ?Sized> Named<'_, &'x mut P> {
    /// Visits the inner set mutably under `prefix.name`.
    pub fn visit_mut<'a, F>(self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>))
    where
        P: Params<F>,
        'x: 'a,
    {
        self.1.visit_mut(&join_name(prefix, self.0), f);
    }
}

/// A float is one buffer of one value (shape `[]`): a scalar field of a parameter struct
/// (a bias, a temperature).
macro_rules! scalar_params {
    ($($t:ty),*) => {$(
        impl Params<$t> for $t {
            fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, $t>)) {
                f(BufferRef {
                    name: prefix.to_string(),
                    shape: Vec::new(),
                    values: core::slice::from_ref(self),
                })
            }
            fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, $t>)) {
                f(BufferMut {
                    name: prefix.to_string(),
                    shape: Vec::new(),
                    values: core::slice::from_mut(self),
                })
            }
        }
    )*};
}
scalar_params!(f32, f64);

/// How a list of `Self` (a `Vec<Self>`, `[Self; N]`, `[Self]`) is visited: a list of
/// floats is one buffer of shape `[len]`; a list of anything else (buffers, arrays,
/// parameter structs, named entries) is one set per element, element `i` named `i`
/// (`layers.0.w`, `layers.1.w`), or by its name for a `(name, set)` entry.
///
/// Why a trait on the element and not two impls on `Vec`: `Vec<F>` (one buffer) and
/// `Vec<P: Params<F>>` (a list of sets) would overlap, since a float is a set of its own
/// (`f64: Params<f64>`, a scalar field). With this trait there is one impl of
/// [`Params`] for `Vec<P>`, and the element decides. `#[derive(Differentiable)]`
/// implements it for a struct (a list of structs is a list of sets), so `Vec<Layer>`
/// and `[Layer; 3]` fields are parameters like any other.
pub trait ListItem<F> {
    /// Visits `list` under `prefix`.
    fn visit_list<'a>(list: &'a [Self], prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>))
    where
        Self: Sized;
    /// Visits `list` mutably under `prefix`.
    fn visit_list_mut<'a>(list: &'a mut [Self], prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>))
    where
        Self: Sized;
}

/// Visits each element of a list as a set of its own, element `i` under `prefix.i`: the
/// [`ListItem`] walk of everything but floats (and of derived structs).
pub fn visit_each<'a, F, P: Params<F>>(
    list: &'a [P],
    prefix: &str,
    f: &mut dyn FnMut(BufferRef<'a, F>),
) {
    for (i, p) in list.iter().enumerate() {
        p.visit(&join_name(prefix, &i.to_string()), f);
    }
}

/// The mutable walk of [`visit_each`].
pub fn visit_each_mut<'a, F, P: Params<F>>(
    list: &'a mut [P],
    prefix: &str,
    f: &mut dyn FnMut(BufferMut<'a, F>),
) {
    for (i, p) in list.iter_mut().enumerate() {
        p.visit_mut(&join_name(prefix, &i.to_string()), f);
    }
}

/// A list of floats is one buffer.
impl<F: Real> ListItem<F> for F {
    fn visit_list<'a>(list: &'a [F], prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        f(BufferRef {
            name: prefix.to_string(),
            shape: vec![list.len()],
            values: list,
        })
    }
    fn visit_list_mut<'a>(list: &'a mut [F], prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        let shape = vec![list.len()];
        f(BufferMut {
            name: prefix.to_string(),
            shape,
            values: list,
        })
    }
}

/// Lists whose elements are sets: element `i` is named `i`.
macro_rules! list_of_sets {
    ($(impl[$($gen:tt)*] $ty:ty;)*) => {$(
        impl<$($gen)*> ListItem<F> for $ty {
            fn visit_list<'a>(list: &'a [Self], prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
                visit_each(list, prefix, f)
            }
            fn visit_list_mut<'a>(list: &'a mut [Self], prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
                visit_each_mut(list, prefix, f)
            }
        }
    )*};
}
list_of_sets! {
    impl[F, P: ListItem<F>] Vec<P>;
    impl[F, P: ListItem<F>, const N: usize] [P; N];
    impl[F: Real, D: ndarray::Dimension] ndarray::Array<F, D>;
}

/// Named entries: entry `(name, set)` is visited under `prefix.name`, in list order.
///
/// (A lone `(String, P)` is not a set of its own: it would overlap the 2-tuple impl.)
macro_rules! named_entries {
    ($(impl[$($gen:tt)*] $ty:ty;)*) => {$(
        impl<$($gen)*> ListItem<F> for $ty {
            fn visit_list<'a>(list: &'a [Self], prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
                for (name, p) in list.iter() {
                    p.visit(&join_name(prefix, name), f);
                }
            }
            fn visit_list_mut<'a>(list: &'a mut [Self], prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
                for (name, p) in list.iter_mut() {
                    p.visit_mut(&join_name(prefix, name), f);
                }
            }
        }
    )*};
}
named_entries! {
    impl[F, P: Params<F>] (String, P);
    impl[F, P: Params<F>] (&'static str, P);
}

impl<F, P: ListItem<F>> Params<F> for Vec<P> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        P::visit_list(self, prefix, f)
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        P::visit_list_mut(self, prefix, f)
    }
}

impl<F, P: ListItem<F>, const N: usize> Params<F> for [P; N] {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        P::visit_list(self, prefix, f)
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        P::visit_list_mut(self, prefix, f)
    }
}

/// A flat slice is one buffer; a slice of sets is a list of them.
impl<F, P: ListItem<F>> Params<F> for [P] {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        P::visit_list(self, prefix, f)
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        P::visit_list_mut(self, prefix, f)
    }
}

impl<F, P: Params<F> + ?Sized> Params<F> for &mut P {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        (**self).visit(prefix, f)
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        (**self).visit_mut(prefix, f)
    }
}

/// A boxed set is the set (a `Box<Layer>` field names its buffers as the layer would).
impl<F, P: Params<F> + ?Sized> Params<F> for Box<P> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        (**self).visit(prefix, f)
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        (**self).visit_mut(prefix, f)
    }
}

macro_rules! impl_tuple {
    ($(($($T:ident $i:tt),+)),*) => {$(
        /// A tuple of sets: element `i` is named `i`.
        impl<F, $($T: Params<F>),+> Params<F> for ($($T,)+) {
            fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
                $( self.$i.visit(&join_name(prefix, stringify!($i)), f); )+
            }
            fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
                $( self.$i.visit_mut(&join_name(prefix, stringify!($i)), f); )+
            }
        }
    )*};
}
impl_tuple!(
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, G 5)
);

/// An owned ndarray is one buffer with the array's shape, its values in row-major
/// order, so that a parameter and its gradient pair element for element whatever
/// layouts they were made in.
///
/// # Panics
/// `visit` if the array is not in standard (row-major, contiguous) layout: a transposed
/// array (`a.t().to_owned()`) is column-major; call `.as_standard_layout().into_owned()`
/// first. `visit_mut` makes such an array row-major itself.
impl<F: Real, D: ndarray::Dimension> Params<F> for ndarray::Array<F, D> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, F>)) {
        let values = self.as_slice().unwrap_or_else(|| {
            panic!(
                "backprop::Params: `{prefix}` (shape {:?}) is not in row-major layout; \
                 call .as_standard_layout().into_owned() on it first",
                self.shape()
            )
        });
        f(BufferRef {
            name: prefix.to_string(),
            shape: self.shape().to_vec(),
            values,
        })
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, F>)) {
        let shape = self.shape().to_vec();
        if !self.is_standard_layout() {
            *self = self.as_standard_layout().into_owned();
        }
        let values = self.as_slice_mut().expect("row-major, made so above");
        f(BufferMut {
            name: prefix.to_string(),
            shape,
            values,
        })
    }
}
