//! The float methods with several inputs, elementwise on arrays: `x.powf(p)`,
//! `x.clamp(lo, hi)`, `x.hypot(b)`, `x.log(base)` (ndarray's own methods, with float
//! arguments), and, inside `x.mapv(|v| ..)`, the same and `v.max(c)`, `v.min(c)` (ReLU as
//! `v.max(0.0)`, leaky ReLU as `v.max(0.01 * v)`).
//!
//! `#[grad]` lowers a call here when one of its operands is an array: each argument is
//! a float (a literal, a constant, or a captured scalar, which may be active),
//! broadcast to every element, or an array of the one shape. The forward functions
//! apply the float method at every element. The pullbacks are the rule
//! table's scalar rules (`derive/src/rule_table.in`: one formula, with its kinks and
//! strong zeros) applied element by element, the scalar arguments broadcast; the
//! generated code sums the elementwise result with [`sum`] where the target is a
//! scalar argument (`∂/∂p` of `x.powf(p)` is `Σᵢ d_i·yᵢ ln xᵢ`).

use super::scalar;
use crate::kernels::Real;
use crate::ops::shape_str;
use ndarray::{Array, ArrayBase, CowArray, Data, Dimension};

/// One argument of an elementwise rule: a float broadcast to every element, or an
/// array in standard layout.
pub enum Elem<'a, A, D> {
    /// A float, the same for every element.
    Scalar(A),
    /// An array's elements in row-major order, with its shape.
    Array(CowArray<'a, A, D>),
}

impl<A: Real, D: Dimension> Elem<'_, A, D> {
    #[inline]
    fn at(&self, i: usize) -> A {
        match self {
            Elem::Scalar(a) => *a,
            Elem::Array(x) => x.as_slice().expect("standard layout")[i],
        }
    }
}

/// A value that can stand as an argument of an elementwise rule over arrays of
/// dimension `D`: a float, or an array of that dimension.
pub trait AsElem<A, D> {
    /// The value as an elementwise argument.
    fn elem(&self) -> Elem<'_, A, D>;
}

impl<A: Real, D: Dimension> AsElem<A, D> for A {
    fn elem(&self) -> Elem<'_, A, D> {
        Elem::Scalar(*self)
    }
}

impl<A: Real, S: Data<Elem = A>, D: Dimension> AsElem<A, D> for ArrayBase<S, D> {
    fn elem(&self) -> Elem<'_, A, D> {
        Elem::Array(self.as_standard_layout())
    }
}

// References to arrays, spelled out: a blanket `impl for &V` would overlap the scalar
// impl above (`&V` could be a `Real` for all coherence knows).
impl<A: Real, S: Data<Elem = A>, D: Dimension> AsElem<A, D> for &ArrayBase<S, D> {
    fn elem(&self) -> Elem<'_, A, D> {
        Elem::Array(self.as_standard_layout())
    }
}

impl<A: Real, S: Data<Elem = A>, D: Dimension> AsElem<A, D> for &&ArrayBase<S, D> {
    fn elem(&self) -> Elem<'_, A, D> {
        Elem::Array(self.as_standard_layout())
    }
}

impl<A: Real, D: Dimension> AsElem<A, D> for &A {
    fn elem(&self) -> Elem<'_, A, D> {
        Elem::Scalar(**self)
    }
}

/// `f` applied at every element to the arguments' elements (floats broadcast), in
/// row-major order, over the shape of the array arguments.
///
/// # Panics
/// If two array arguments differ in shape (naming the rule and both shapes), or none is
/// an array.
pub fn zip_with<A: Real, D: Dimension>(
    rule: &str,
    args: &[Elem<'_, A, D>],
    f: impl Fn(&[A]) -> A,
) -> Array<A, D> {
    let mut shape: Option<&CowArray<'_, A, D>> = None;
    for a in args {
        if let Elem::Array(x) = a {
            match shape {
                Some(s) if s.shape() != x.shape() => panic!(
                    "{rule}: one argument is {} but another is {} (elementwise arguments must have one shape)",
                    shape_str(s.shape()),
                    shape_str(x.shape())
                ),
                Some(_) => {}
                None => shape = Some(x),
            }
        }
    }
    let dim = shape
        .unwrap_or_else(|| panic!("{rule}: no array argument"))
        .raw_dim();
    let n = dim.size();
    let mut vals = Vec::with_capacity(args.len());
    let out: Vec<A> = (0..n)
        .map(|i| {
            vals.clear();
            vals.extend(args.iter().map(|a| a.at(i)));
            f(&vals)
        })
        .collect();
    Array::from_shape_vec(dim, out).expect("one element per position")
}

/// `Σᵢ cᵢ`: an elementwise contribution to a scalar argument.
pub fn sum<A: Real, D: Dimension>(c: Array<A, D>) -> A {
    c.sum()
}

/// Generates, for each float method of the rule table with several inputs, the
/// elementwise pullback over arrays: the scalar rule at every element, its arguments
/// (the values it reads, last the cotangent) floats or arrays of one shape.
macro_rules! elementwise_rules {
    (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $x:ident, $dd:ident ) => $body:expr ;) => {};
    (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $($x:ident),+ ) => $body:expr ;) => {
        #[doc = concat!("[`", stringify!($rule), "`](crate::rules::scalar::", stringify!($rule), ") at every element; floats broadcast.")]
        #[allow(unused_assignments)]
        pub fn $rule<A: Real, D: Dimension>($($x: &impl AsElem<A, D>),+) -> Array<A, D> {
            let args = [$($x.elem()),+];
            zip_with(stringify!($rule), &args, |v| {
                let mut k = 0;
                $( let $x = v[k]; k += 1; )+
                scalar::$rule($($x),+)
            })
        }
    };
    (@line $($line:tt)*) => {};
}

backprop_derive::__rule_table!(rule_lines, elementwise_rules);

/// `x.max(c)` at every element (`f64::max`: a NaN on one side gives the other).
///
/// # Panics
/// If two array arguments differ in shape (naming both), or none is an array.
pub fn max<A: Real, D: Dimension>(x: &impl AsElem<A, D>, c: &impl AsElem<A, D>) -> Array<A, D> {
    zip_with("max", &[x.elem(), c.elem()], |v| v[0].max(v[1]))
}

/// `x.min(c)` at every element (`f64::min`). Panics as [`max`].
pub fn min<A: Real, D: Dimension>(x: &impl AsElem<A, D>, c: &impl AsElem<A, D>) -> Array<A, D> {
    zip_with("min", &[x.elem(), c.elem()], |v| v[0].min(v[1]))
}

/// `x.powf(p)` at every element (as ndarray's `powf`). Panics as [`max`].
pub fn powf<A: Real, D: Dimension>(x: &impl AsElem<A, D>, p: &impl AsElem<A, D>) -> Array<A, D> {
    zip_with("powf", &[x.elem(), p.elem()], |v| v[0].powf(v[1]))
}

/// `x.hypot(b)` at every element (as ndarray's `hypot`). Panics as [`max`].
pub fn hypot<A: Real, D: Dimension>(x: &impl AsElem<A, D>, b: &impl AsElem<A, D>) -> Array<A, D> {
    zip_with("hypot", &[x.elem(), b.elem()], |v| v[0].hypot(v[1]))
}

/// `x.log(base)` at every element (as ndarray's `log`). Panics as [`max`].
pub fn log<A: Real, D: Dimension>(x: &impl AsElem<A, D>, base: &impl AsElem<A, D>) -> Array<A, D> {
    zip_with("log", &[x.elem(), base.elem()], |v| v[0].log(v[1]))
}

/// `x.clamp(lo, hi)` at every element (as ndarray's `clamp`).
///
/// # Panics
/// Where `lo > hi` (as ndarray's and `f64::clamp`), and as [`max`].
pub fn clamp<A: Real, D: Dimension>(
    x: &impl AsElem<A, D>,
    lo: &impl AsElem<A, D>,
    hi: &impl AsElem<A, D>,
) -> Array<A, D> {
    zip_with("clamp", &[x.elem(), lo.elem(), hi.elem()], |v| {
        assert!(
            v[1] <= v[2],
            "clamp: lo = {} must be at most hi = {}",
            v[1],
            v[2]
        );
        num_traits::clamp(v[0], v[1], v[2])
    })
}
