//! Second order on the tensor path: the pullbacks of the tangent rules of array code.
//!
//! `f_hvp` of ndarray code is the reverse pass of `f`'s tangent program (see
//! [`super::second`] for scalars, `docs/DESIGN.md`, "Second order"). Where an array
//! operation is linear in an input (a sum, a slice, a transpose) or bilinear (`*`,
//! `dot`), its tangent is written with the same operations, whose pullbacks the rule
//! table already has. What is left is declared here:
//!
//! - an elementwise method's tangent `t_y = r(s, t)` (the rule at `d = t`, `s` the value
//!   the rule reads): its pullback into `t` is the rule itself (the tensor path's
//!   `tanh_vjp`), into `s` the scalar second derivative at every element,
//!   [`second::tanh_vjp::d0`](super::second) mapped over the arrays (this module's
//!   `second`);
//! - the runtime ops' tangents: ReLU (`t ⊙ 1[x > 0]`, linear in `t`, zero second
//!   derivative), the sigmoid (`t ⊙ y(1 − y)`), and the fused softmax cross-entropy,
//!   whose tangent `⟨∇L, t⟩` pulls back into the logits through the softmax Hessian
//!   `w_i (diag(p_i) − p_i p_iᵀ)` of each row (Bishop, *Pattern Recognition and Machine
//!   Learning*, 2006, eq. 4.110, with `w_i` the row's weight in the mean).
//!
//! Every function takes its values by reference and returns an owned cotangent, as the
//! tensor path's rules do.

use super::tangent::{check_same, zip3};
use super::tensor::ShapeOf;
use super::tensor::Value;
use crate::kernels::Real;
use crate::ops::XentOptions;
use ndarray::{Array2, ArrayView2, CowArray, Ix2};
use num_traits::{Float, One, ToPrimitive, Zero};

/// The second derivatives of the rule table's one-read elementwise rules, on arrays:
/// `second::<rule>::d0(s, t, d) = d ⊙ t ⊙ ∂J/∂s`, element by element, the pullback of
/// `t_y = <rule>(s, t)` into `s`.
pub mod second {
    use super::super::tensor::Value;

    macro_rules! tensor_second_rules {
        (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
            ( $x:ident, $dd:ident ) => $body:expr ;) => {
            #[doc = concat!("`", stringify!($rule), "`'s second derivative, elementwise.")]
            #[allow(non_camel_case_types)]
            pub struct $rule {}
            impl $rule {
                /// `d ⊙ t ⊙ ∂J/∂s` at every element (all three of one shape).
                ///
                /// # Panics
                /// If the three shapes differ (the message names them).
                #[inline]
                pub fn d0<V: Value, T: Value<Elem = V::Elem>, C: Value<Elem = V::Elem>>(
                    saved: &V,
                    t: &T,
                    d: &C,
                ) -> V::Cot {
                    crate::rules::tangent::zip3(
                        stringify!($rule),
                        saved,
                        t,
                        d,
                        crate::rules::second::$rule::d0,
                    )
                }
            }
        };
        // A rule reading the array and float constants (`v.max(0.0)`, `x.powf(p)`,
        // `x.clamp(lo, hi)` with constant floats): into the tangent the rule, into the
        // array the second derivative, both with the constants broadcast.
        (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
            ( $x:ident, $($c:ident),+ ; $dd:ident ) => $body:expr ;) => {
            #[doc = concat!("`", stringify!($rule), "` on an array with float constants, and its second derivative.")]
            #[allow(non_camel_case_types)]
            pub struct $rule {}
            impl $rule {
                /// The rule at every element of the array (the pullback into the tangent).
                ///
                /// # Panics
                /// If the shapes differ.
                #[inline]
                pub fn t<V: Value, C: Value<Elem = V::Elem>>(
                    saved: &V,
                    $($c: &V::Elem,)+
                    d: &C,
                ) -> C::Cot {
                    crate::rules::tangent::zip3(stringify!($rule), d, saved, d, |d, s, _| {
                        crate::rules::scalar::$rule(s, $(*$c,)+ d)
                    })
                }

                /// `d ⊙ t ⊙ ∂J/∂x` at every element (the pullback into the array).
                ///
                /// # Panics
                /// If the shapes differ.
                #[inline]
                pub fn s<V: Value, T: Value<Elem = V::Elem>, C: Value<Elem = V::Elem>>(
                    saved: &V,
                    $($c: &V::Elem,)+
                    t: &T,
                    d: &C,
                ) -> V::Cot {
                    crate::rules::tangent::zip3(stringify!($rule), saved, t, d, |s, t, d| {
                        crate::rules::second::$rule::d0(s, $(*$c,)+ t, d)
                    })
                }
            }
        };
        (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
            ( $x:ident, $c1:ident, $dd:ident ) => $body:expr ;) => {
            tensor_second_rules!(@line method $d = $rule ( $x, $c1 ; $dd ) => $body ;);
        };
        (@line method $(#[doc = $doc:literal])* $d:ident = $rule:ident
            ( $x:ident, $c1:ident, $c2:ident, $dd:ident ) => $body:expr ;) => {
            tensor_second_rules!(@line method $d = $rule ( $x, $c1, $c2 ; $dd ) => $body ;);
        };
        (@line $($line:tt)*) => {};
    }

    backprop_derive::__rule_table!(rule_lines, tensor_second_rules);

    /// `x.powi(n)` on an array (`n` an integer): the rule and its second derivative.
    #[allow(non_camel_case_types)]
    pub struct powi_vjp {}
    impl powi_vjp {
        /// `n xⁿ⁻¹ ⊙ d` (the pullback into the tangent).
        ///
        /// # Panics
        /// If the shapes differ.
        #[inline]
        pub fn t<V: Value, C: Value<Elem = V::Elem>>(saved: &V, n: &i32, d: &C) -> C::Cot {
            crate::rules::tangent::zip3("powi_vjp", d, saved, d, |d, s, _| {
                crate::rules::scalar::powi_vjp(s, *n, d)
            })
        }

        /// `d ⊙ t ⊙ n(n − 1) xⁿ⁻²` (the pullback into the array).
        ///
        /// # Panics
        /// If the shapes differ.
        #[inline]
        pub fn s<V: Value, T: Value<Elem = V::Elem>, C: Value<Elem = V::Elem>>(
            saved: &V,
            n: &i32,
            t: &T,
            d: &C,
        ) -> V::Cot {
            crate::rules::tangent::zip3("powi_vjp", saved, t, d, |s, t, d| {
                crate::rules::second::powi_vjp::d0(s, *n, t, d)
            })
        }
    }
}

/// ReLU's tangent `t ⊙ 1[x > 0]` (`ops::relu`'s derivative at 0 is 0, as its pullback
/// takes it). Linear in `t`, and its own transpose, so it is also the pullback into `t`
/// (called with the cotangent); ReLU's second derivative is zero.
///
/// # Panics
/// If `x` and `t` differ in shape.
pub fn relu_tangent<X: Value, T: Value<Elem = X::Elem>>(x: &X, t: &T) -> T::Cot {
    let zero = X::Elem::zero();
    zip3(
        "relu (tangent)",
        t,
        x,
        t,
        |t, x, _| if x > zero { t } else { zero },
    )
}

/// The sigmoid's tangent `t ⊙ y(1 − y)`, `y = σ(x)`; also the pullback into `t`.
///
/// # Panics
/// If `y` and `t` differ in shape.
pub fn sigmoid_tangent<Y: Value, T: Value<Elem = Y::Elem>>(y: &Y, t: &T) -> T::Cot {
    zip3("sigmoid (tangent)", t, y, t, |t, y, _| {
        crate::functions::vjp::sigmoid_vjp(y, t)
    })
}

/// The pullback of [`sigmoid_tangent`] into `y`: `d ⊙ t ⊙ (1 − 2y)`.
///
/// # Panics
/// If the shapes differ.
pub fn sigmoid_tangent_y<Y: Value, T: Value<Elem = Y::Elem>, C: Value<Elem = Y::Elem>>(
    y: &Y,
    t: &T,
    d: &C,
) -> Y::Cot {
    let one = Y::Elem::one();
    zip3("sigmoid (second order)", y, t, d, |y, t, d| {
        d * t * (one - (one + one) * y)
    })
}

/// Elementwise runtime activations that read `x`: the tangent `t ⊙ f′(x)` (also the
/// pullback into `t`) and its pullback into `x`, `d ⊙ t ⊙ f″(x)`. `f′` and `f″` are the
/// scalar functions' own (`backprop::gelu`, `silu`, `softplus`; their second derivatives
/// are checked against differences in `tests/runtime/second_order.rs`).
macro_rules! activation_second {
    ($($(#[doc = $doc:literal])* $tangent:ident, $second:ident: |$x:ident| $first:expr, $hess:expr;)*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Panics
        /// If `x` and `t` differ in shape.
        pub fn $tangent<X: Value, T: Value<Elem = X::Elem>>(x: &X, t: &T) -> T::Cot {
            zip3(stringify!($tangent), t, x, t, |t, $x, _| crate::rules::scalar::strong_mul(t, $first))
        }

        #[doc = concat!("The pullback of [`", stringify!($tangent), "`] into `x`: `d ⊙ t ⊙ f″(x)`.")]
        ///
        /// # Panics
        /// If the shapes differ.
        pub fn $second<X: Value, T: Value<Elem = X::Elem>, C: Value<Elem = X::Elem>>(
            x: &X,
            t: &T,
            d: &C,
        ) -> X::Cot {
            zip3(stringify!($second), x, t, d, |$x, t, d| {
                crate::rules::scalar::strong_mul(crate::rules::scalar::strong_mul(d, t), $hess)
            })
        }
    )*};
}

activation_second! {
    /// GELU's (tanh form) tangent, `t ⊙ gelu′(x)`.
    gelu_tangent, gelu_tangent_x: |x| crate::kernels::activation::gelu_local(x, crate::sigmoid),
        crate::kernels::activation::gelu_second(x, crate::sigmoid);
    /// SiLU's tangent, `t ⊙ silu′(x)`.
    silu_tangent, silu_tangent_x: |x| crate::kernels::activation::silu_local(x, crate::sigmoid),
        crate::kernels::activation::silu_second(x, crate::sigmoid);
    /// Softplus's tangent, `t ⊙ σ(x)`; `f″ = σ(x)(1 − σ(x))`.
    softplus_tangent, softplus_tangent_x: |x| crate::sigmoid(x), {
        let s = crate::sigmoid(x);
        s * (X::Elem::one() - s)
    };
    /// Exact GELU's tangent, `t ⊙ (Φ(x) + xφ(x))`; `f″ = φ(x)(2 − x²)`.
    gelu_exact_tangent, gelu_exact_tangent_x: |x| crate::kernels::activation::gelu_exact_local::<_, crate::kernels::activation::StdMath>(x), {
        let f = x.to_f64().unwrap_or(f64::NAN);
        let phi = (-0.5f64 * f * f).exp() * 0.5 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
        <X::Elem as num_traits::NumCast>::from(phi * (2.0 - f * f)).unwrap_or_else(<X::Elem as Float>::nan)
    };
}

/// `f(out_row, a_row, b_row, c_row)` over the last axis of three values of one shape,
/// into an array of `a`'s shape (as `a`'s cotangent).
fn rows3<A: Value, B: Value<Elem = A::Elem>, C: Value<Elem = A::Elem>>(
    op: &str,
    a: &A,
    b: &B,
    c: &C,
    f: impl Fn(&mut [A::Elem], &[A::Elem], &[A::Elem], &[A::Elem]),
) -> A::Cot {
    use super::tensor::DynView;
    fn array<'v, E>(op: &str, v: DynView<'v, E>) -> ndarray::ArrayViewD<'v, E> {
        match v {
            DynView::Array(a) => a,
            DynView::Scalar(_) => panic!("{op}: a row-wise op needs an array, found a float"),
        }
    }
    let shape = a.shape_of();
    let (va, vb, vc) = (
        array(op, a.dyn_view()),
        array(op, b.dyn_view()),
        array(op, c.dyn_view()),
    );
    // A copy only where an operand is not row-major already.
    let (a, b, c) = (
        va.as_standard_layout(),
        vb.as_standard_layout(),
        vc.as_standard_layout(),
    );
    for other in [b.shape(), c.shape()] {
        assert!(
            other == a.shape(),
            "{op}: operands of shapes {} and {} differ",
            crate::ops::shape_str(a.shape()),
            crate::ops::shape_str(other)
        );
    }
    let last = a.shape().last().copied().unwrap_or(1).max(1);
    let mut out = ndarray::ArrayD::zeros(a.raw_dim());
    let (sa, sb, sc) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
        c.as_slice().expect("standard layout"),
    );
    let so = out.as_slice_mut().expect("standard layout");
    for (((o, a), b), c) in so
        .chunks_mut(last)
        .zip(sa.chunks(last))
        .zip(sb.chunks(last))
        .zip(sc.chunks(last))
    {
        f(o, a, b, c);
    }
    shape.fit(super::tensor::Dyn::Array(out))
}

/// The softmax's tangent over the last axis, `y ⊙ (t − ⟨y, t⟩)` per row (its Jacobian
/// `diag(y) − yyᵀ` is symmetric, so this is also the pullback into `t`).
///
/// # Panics
/// If `y` and `t` differ in shape.
pub fn softmax_tangent<Y: Value, T: Value<Elem = Y::Elem>>(y: &Y, t: &T) -> T::Cot {
    rows3("softmax (tangent)", t, y, t, |o, t, y, _| {
        let s = y
            .iter()
            .zip(t)
            .fold(Y::Elem::zero(), |s, (&y, &t)| s + y * t);
        for ((o, &y), &t) in o.iter_mut().zip(y).zip(t) {
            *o = y * (t - s);
        }
    })
}

/// The pullback of [`softmax_tangent`] into `y`: `t ⊙ (d − ⟨d, y⟩) − d·⟨y, t⟩` per row.
///
/// # Panics
/// If the shapes differ.
pub fn softmax_tangent_y<Y: Value, T: Value<Elem = Y::Elem>, C: Value<Elem = Y::Elem>>(
    y: &Y,
    t: &T,
    d: &C,
) -> Y::Cot {
    rows3("softmax (second order)", y, t, d, |o, y, t, d| {
        let dot = |a: &[Y::Elem], b: &[Y::Elem]| {
            a.iter()
                .zip(b)
                .fold(Y::Elem::zero(), |s, (&a, &b)| s + a * b)
        };
        let (dy, yt) = (dot(d, y), dot(y, t));
        for (((o, &t), &d), _) in o.iter_mut().zip(t).zip(d).zip(y) {
            *o = t * (d - dy) - d * yt;
        }
    })
}

/// `log_softmax`'s tangent over the last axis, `t − ⟨e^y, t⟩` per row (`y` the
/// log-probabilities).
///
/// # Panics
/// If `y` and `t` differ in shape.
pub fn log_softmax_tangent<Y: Value, T: Value<Elem = Y::Elem>>(y: &Y, t: &T) -> T::Cot {
    rows3("log_softmax (tangent)", t, y, t, |o, t, y, _| {
        let s = y
            .iter()
            .zip(t)
            .fold(Y::Elem::zero(), |s, (&y, &t)| s + y.exp() * t);
        for (o, &t) in o.iter_mut().zip(t) {
            *o = t - s;
        }
    })
}

/// The pullback of [`log_softmax_tangent`] into `t`: `d − e^y Σ d` per row.
///
/// # Panics
/// If `y` and `d` differ in shape.
pub fn log_softmax_tangent_t<Y: Value, C: Value<Elem = Y::Elem>>(y: &Y, d: &C) -> C::Cot {
    rows3("log_softmax (tangent)", d, y, d, |o, d, y, _| {
        let s = d.iter().fold(Y::Elem::zero(), |s, &d| s + d);
        for ((o, &y), &d) in o.iter_mut().zip(y).zip(d) {
            *o = d - y.exp() * s;
        }
    })
}

/// The pullback of [`log_softmax_tangent`] into `y`: `−(Σ d) e^y ⊙ t` per row.
///
/// # Panics
/// If the shapes differ.
pub fn log_softmax_tangent_y<Y: Value, T: Value<Elem = Y::Elem>, C: Value<Elem = Y::Elem>>(
    y: &Y,
    t: &T,
    d: &C,
) -> Y::Cot {
    rows3("log_softmax (second order)", y, t, d, |o, y, t, d| {
        let s = d.iter().fold(Y::Elem::zero(), |s, &d| s + d);
        for ((o, &y), &t) in o.iter_mut().zip(y).zip(t) {
            *o = -(s * y.exp() * t);
        }
    })
}

fn matrix<'a, V: Value>(what: &str, v: &'a V) -> CowArray<'a, V::Elem, Ix2> {
    match v.dyn_view() {
        // `[B, T, V]` logits (`cross_entropy`) are rows of their last axis.
        super::tensor::DynView::Array(a) if a.ndim() >= 2 => {
            let last = a.shape()[a.ndim() - 1];
            let rows = a.len() / last.max(1);
            if a.ndim() == 2 {
                return a.into_dimensionality::<Ix2>().expect("two axes").into();
            }
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order((rows, last))
                .expect("row-major")
                .into()
        }
        super::tensor::DynView::Array(a) => panic!(
            "softmax_cross_entropy ({what}): logits must have rows, found shape {}",
            crate::ops::shape_str(a.shape())
        ),
        super::tensor::DynView::Scalar(_) => {
            panic!("softmax_cross_entropy ({what}): logits must be a matrix, found a scalar")
        }
    }
}

/// A matrix of rows back in the logits' own shape, as their cotangent.
fn unflatten<Z: Value>(z: &Z, rows: Array2<Z::Elem>) -> Z::Cot {
    let shape = z.shape_of();
    let dims = match z.dyn_view() {
        super::tensor::DynView::Array(a) => a.shape().to_vec(),
        super::tensor::DynView::Scalar(_) => unreachable!("checked by `matrix`"),
    };
    let nd = rows
        .into_shape_with_order(dims)
        .expect("the logits' own number of elements");
    shape.fit(super::tensor::Dyn::Array(nd))
}

/// Each row's softmax `p_i` and weight `w_i` in the loss (`1/n` over the `n` rows not
/// ignored, 0 for an ignored row).
fn xent_parts<A: Real>(
    z: ArrayView2<'_, A>,
    labels: &[usize],
    opts: &XentOptions<A>,
) -> (Array2<A>, Vec<A>) {
    let p = crate::ops::softmax(&z);
    let kept = labels
        .iter()
        .filter(|&&l| Some(l) != opts.ignore_index)
        .count();
    let w = labels
        .iter()
        .map(|&l| {
            if Some(l) == opts.ignore_index || kept == 0 {
                A::zero()
            } else {
                A::one() / A::from(kept).unwrap()
            }
        })
        .collect();
    (p, w)
}

/// A copy of the labels a tangent program's tape keeps (they may be a temporary).
pub fn owned_labels<L: AsRef<[usize]> + ?Sized>(labels: &L) -> Vec<usize> {
    labels.as_ref().to_vec()
}

/// The fused softmax cross-entropy's tangent: `⟨∂L/∂z, t⟩`, a float.
///
/// # Panics
/// If `z` is not a matrix, or `t` has another shape, or a label is out of range.
pub fn xent_tangent<Z: Value, L: AsRef<[usize]> + ?Sized, T: Value<Elem = Z::Elem>>(
    z: &Z,
    labels: &L,
    opts: &XentOptions<Z::Elem>,
    t: &T,
) -> Z::Elem {
    let z = matrix("tangent", z);
    let t = matrix("tangent", t);
    check_same("softmax_cross_entropy", z.shape(), t.shape());
    let mut grad = Array2::zeros(z.raw_dim());
    crate::ops::softmax_cross_entropy_with_grad(
        &z,
        labels.as_ref(),
        *opts,
        Z::Elem::one(),
        &mut grad,
    );
    ndarray::Zip::from(&grad)
        .and(&t)
        .fold(Z::Elem::zero(), |s, &g, &t| {
            s + crate::rules::scalar::strong_mul(t, g)
        })
}

/// The pullback of [`xent_tangent`] into `t`: `d · ∂L/∂z`.
pub fn xent_tangent_t<Z: Value, L: AsRef<[usize]> + ?Sized>(
    z: &Z,
    labels: &L,
    opts: &XentOptions<Z::Elem>,
    d: &Z::Elem,
) -> Z::Cot {
    let rows = matrix("second order", z);
    let mut grad = Array2::zeros(rows.raw_dim());
    crate::ops::softmax_cross_entropy_with_grad(&rows, labels.as_ref(), *opts, *d, &mut grad);
    unflatten(z, grad)
}

/// The pullback of [`xent_tangent`] into the logits: `d · w_i (p_i ⊙ t_i − p_i ⟨p_i, t_i⟩)`
/// per row, the softmax's Hessian applied to the tangent (label smoothing does not
/// change it: the target is constant).
pub fn xent_tangent_z<Z: Value, L: AsRef<[usize]> + ?Sized, T: Value<Elem = Z::Elem>>(
    z: &Z,
    labels: &L,
    opts: &XentOptions<Z::Elem>,
    t: &T,
    d: &Z::Elem,
) -> Z::Cot {
    let logits = z;
    let z = matrix("second order", logits);
    let t = matrix("second order", t);
    check_same("softmax_cross_entropy", z.shape(), t.shape());
    let (mut p, w) = xent_parts(z.view(), labels.as_ref(), opts);
    for ((mut p, t), &w) in p.rows_mut().into_iter().zip(t.rows()).zip(&w) {
        let pt = p
            .iter()
            .zip(t.iter())
            .fold(Z::Elem::zero(), |s, (&p, &t)| s + p * t);
        let k = *d * w;
        p.zip_mut_with(&t, |p, &t| *p = k * *p * (t - pt));
    }
    unflatten(logits, p)
}

/// The labels of `cross_entropy` (any shape of ids) as one row-major list, the rows of
/// its logits' last axis, kept by the tape.
pub fn owned_ids<I: crate::ops::Ids + ?Sized>(ids: &I) -> Vec<usize> {
    ids.ids().iter().copied().collect()
}

/// Leaky ReLU's tangent `t ⊙ (1 if x > 0 else slope)` (`ops::leaky_relu`'s derivative at
/// 0 is `slope`, as its pullback takes it). Linear in `t` and its own transpose, so also
/// the pullback into `t`; the second derivative is zero.
///
/// # Panics
/// If `x` and `t` differ in shape.
pub fn leaky_relu_tangent<X: Value, T: Value<Elem = X::Elem>>(
    x: &X,
    slope: &X::Elem,
    t: &T,
) -> T::Cot {
    let (zero, slope) = (X::Elem::zero(), *slope);
    zip3("leaky_relu (tangent)", t, x, t, |t, x, _| {
        if x > zero { t } else { slope * t }
    })
}

/// A value as an array of `shape`: itself (which must have that shape), or a float
/// broadcast (a constant's tangent, 0).
fn dense<V: Value>(op: &str, v: &V, shape: &[usize]) -> ndarray::ArrayD<V::Elem> {
    match v.dyn_view() {
        super::tensor::DynView::Array(a) => {
            check_same(op, shape, a.shape());
            a.to_owned()
        }
        super::tensor::DynView::Scalar(s) => ndarray::ArrayD::from_elem(shape, s),
    }
}

fn shape_of<V: Value>(v: &V) -> Vec<usize> {
    match v.dyn_view() {
        super::tensor::DynView::Array(a) => a.shape().to_vec(),
        super::tensor::DynView::Scalar(_) => Vec::new(),
    }
}

/// The number of elements of an array value, as a float (`1` for a float).
fn count<V: Value>(v: &V) -> V::Elem {
    let n: usize = shape_of(v).iter().product();
    <V::Elem as num_traits::NumCast>::from(n).expect("a count")
}

/// `(2/n) Σ (a − b) ⊙ (ta − tb)`: `ops::mse`'s tangent along `(ta, tb)` at `(a, b)` (a
/// float operand is a constant's tangent, 0).
///
/// # Panics
/// If the shapes differ.
pub fn mse_tangent<
    A: Value,
    B: Value<Elem = A::Elem>,
    TA: Value<Elem = A::Elem>,
    TB: Value<Elem = A::Elem>,
>(
    a: &A,
    b: &B,
    ta: &TA,
    tb: &TB,
) -> A::Elem {
    let sh = shape_of(a);
    let op = "mse (tangent)";
    let (a, b, ta, tb) = (
        dense(op, a, &sh),
        dense(op, b, &sh),
        dense(op, ta, &sh),
        dense(op, tb, &sh),
    );
    let two = A::Elem::one() + A::Elem::one();
    let mut dot = A::Elem::zero();
    ndarray::Zip::from(&a)
        .and(&b)
        .and(&ta)
        .and(&tb)
        .for_each(|&a, &b, &ta, &tb| {
            dot += (a - b) * (ta - tb);
        });
    two * dot / <A::Elem as num_traits::NumCast>::from(a.len().max(1)).expect("a count")
}

/// A pullback of [`mse_tangent`]: `(2/n)·d·(x − y)`, shaped like `x` (into `a` read
/// with `(ta, tb)`, into `b` with `(tb, ta)`, into `ta` with `(a, b)`, into `tb` with
/// `(b, a)`).
///
/// # Panics
/// If the shapes differ.
pub fn mse_tangent_into<X: Value, Y: Value<Elem = X::Elem>>(x: &X, y: &Y, d: &X::Elem) -> X::Cot {
    let two = X::Elem::one() + X::Elem::one();
    let k = two * *d / count(x);
    zip3("mse (second order)", x, x, y, |x, _, y| k * (x - y))
}

/// `ops::bce_with_logits`' tangent along `(tx, ty)`:
/// `(1/n) Σ (σ(x) − y) ⊙ tx − x ⊙ ty`.
///
/// # Panics
/// If the shapes differ.
pub fn bce_tangent<
    X: Value,
    Y: Value<Elem = X::Elem>,
    TX: Value<Elem = X::Elem>,
    TY: Value<Elem = X::Elem>,
>(
    x: &X,
    y: &Y,
    tx: &TX,
    ty: &TY,
) -> X::Elem {
    let sh = shape_of(x);
    let op = "bce_with_logits (tangent)";
    let (x, y, tx, ty) = (
        dense(op, x, &sh),
        dense(op, y, &sh),
        dense(op, tx, &sh),
        dense(op, ty, &sh),
    );
    let one = X::Elem::one();
    let mut sum = X::Elem::zero();
    ndarray::Zip::from(&x)
        .and(&y)
        .and(&tx)
        .and(&ty)
        .for_each(|&x, &y, &tx, &ty| {
            sum = sum + (one / (one + (-x).exp()) - y) * tx - x * ty;
        });
    sum / <X::Elem as num_traits::NumCast>::from(x.len().max(1)).expect("a count")
}

/// The pullback of [`bce_tangent`] into `x`: `(d/n)(σ′(x) ⊙ tx − ty)`.
///
/// # Panics
/// If the shapes differ.
pub fn bce_tangent_x<X: Value, TX: Value<Elem = X::Elem>, TY: Value<Elem = X::Elem>>(
    x: &X,
    tx: &TX,
    ty: &TY,
    d: &X::Elem,
) -> X::Cot {
    let (one, k) = (X::Elem::one(), *d / count(x));
    zip3("bce_with_logits (second order)", x, tx, ty, |x, tx, ty| {
        let s = one / (one + (-x).exp());
        k * (s * (one - s) * tx - ty)
    })
}

/// The pullback of [`bce_tangent`] into `tx`: `(d/n)(σ(x) − y)`.
///
/// # Panics
/// If the shapes differ.
pub fn bce_tangent_tx<X: Value, Y: Value<Elem = X::Elem>>(x: &X, y: &Y, d: &X::Elem) -> X::Cot {
    let (one, k) = (X::Elem::one(), *d / count(x));
    zip3("bce_with_logits (second order)", x, x, y, |x, _, y| {
        k * (one / (one + (-x).exp()) - y)
    })
}

/// The pullback of [`bce_tangent`] into `y` (read with `tx`) and into `ty` (read with
/// `x`): `−(d/n)·v`.
///
/// # Panics
/// If `v` is not an array.
pub fn bce_tangent_neg<V: Value>(v: &V, d: &V::Elem) -> V::Cot {
    let k = -*d / count(v);
    zip3("bce_with_logits (second order)", v, v, v, |v, _, _| k * v)
}
