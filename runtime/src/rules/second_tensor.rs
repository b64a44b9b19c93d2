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
use super::tensor::Value;
use crate::kernels::Real;
use crate::ops::XentOptions;
use ndarray::{Array2, ArrayView2, Ix2};
use num_traits::{One, Zero};

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
        (@line $($line:tt)*) => {};
    }

    backprop_derive::__rule_table!(rule_lines, tensor_second_rules);
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
    let one = Y::Elem::one();
    zip3("sigmoid (tangent)", t, y, t, |t, y, _| t * y * (one - y))
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

fn matrix<'a, V: Value>(what: &str, v: &'a V) -> ArrayView2<'a, V::Elem> {
    match v.dyn_view() {
        super::tensor::DynView::Array(a) => {
            let shape = a.shape().to_vec();
            a.into_dimensionality::<Ix2>().unwrap_or_else(|_| {
                panic!(
                    "softmax_cross_entropy ({what}): logits must be a matrix, found shape {}",
                    crate::ops::shape_str(&shape)
                )
            })
        }
        super::tensor::DynView::Scalar(_) => {
            panic!("softmax_cross_entropy ({what}): logits must be a matrix, found a scalar")
        }
    }
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
) -> Array2<Z::Elem> {
    let z = matrix("second order", z);
    let mut grad = Array2::zeros(z.raw_dim());
    crate::ops::softmax_cross_entropy_with_grad(&z, labels.as_ref(), *opts, *d, &mut grad);
    grad
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
) -> Array2<Z::Elem> {
    let z = matrix("second order", z);
    let t = matrix("second order", t);
    check_same("softmax_cross_entropy", z.shape(), t.shape());
    let (mut p, w) = xent_parts(z, labels.as_ref(), opts);
    for ((mut p, t), &w) in p.rows_mut().into_iter().zip(t.rows()).zip(&w) {
        let pt = p
            .iter()
            .zip(t.iter())
            .fold(Z::Elem::zero(), |s, (&p, &t)| s + p * t);
        let k = *d * w;
        p.zip_mut_with(&t, |p, &t| *p = k * *p * (t - pt));
    }
    p
}
