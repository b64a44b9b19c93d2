//! Scalar rules for `f32`, `f64` and any `T: num_traits::Float`.
//!
//! Naming: `<op>_vjp` for a one-input op; `<op>_vjp_<input>` for each input of a
//! many-input op, so the macro emits (and the tape keeps) only what an *active*
//! input's pullback needs. Arguments come in the order (saved values..., `d`), where
//! `x`, `a`, `b`, ... are the op's inputs, `y` its output and `d` the output
//! cotangent. Every function returns `d` times the local partial derivative.
//!
//! Formulas are the standard derivative table (Abramowitz & Stegun, ch. 4); the
//! conventions at kinks and the strong zeros are described in [`crate::rules`].
#![allow(clippy::needless_pass_by_value)]

use num_traits::Float;

/// `d · local`, but exactly 0 when `d` is 0, so a zero cotangent times an infinite
/// (or NaN) local derivative contributes nothing; and exactly 0 when `local` is 0 and
/// `d` is ±∞, so an infinite cotangent through a zero local derivative contributes
/// nothing either (`0 · ∞ = 0` whichever factor is the zero). A NaN cotangent stays
/// NaN (`NaN · 0` is NaN), and so does a NaN local derivative under a non-zero
/// cotangent. See "strong zeros" in [`crate::rules`] and `docs/RULES.md`.
#[inline(always)]
pub fn strong_mul<T: Float>(d: T, local: T) -> T {
    if d == T::zero() || (local == T::zero() && d.is_infinite()) {
        T::zero()
    } else {
        d * local
    }
}

/// This module's zero convention: strong (see [`strong_mul`]).
#[inline(always)]
fn times<T: Float>(d: T, local: T) -> T {
    strong_mul(d, local)
}

/// `value`, or exactly 0 when the cotangent `d` is 0, or when it is ±∞ and the local
/// derivative is exactly 0 (`local_is_zero`): the strong zeros of [`strong_mul`] for a
/// rule whose value is not a plain product, such as `d / b`.
#[inline(always)]
fn guard<T: Float>(d: T, local_is_zero: bool, value: T) -> T {
    if d == T::zero() || (local_is_zero && d.is_infinite()) {
        T::zero()
    } else {
        value
    }
}

#[inline(always)]
fn two<T: Float>() -> T {
    T::one() + T::one()
}

#[inline(always)]
fn half<T: Float>() -> T {
    T::one() / two::<T>()
}

/// `2/√π`, the derivative of `erf` at 0.
#[inline(always)]
fn frac_2_sqrt_pi<T: Float>() -> T {
    T::from(core::f64::consts::FRAC_2_SQRT_PI).unwrap_or_else(T::nan)
}

/// Generates one scalar rule function per rule body in the rule table
/// (`derive/src/rule_table.in`; each line given by `rules::rule_lines!`), using
/// the `times` and `guard` of the module it is invoked in: strong zeros here, none in
/// [`plain`].
macro_rules! scalar_rules {
    (@line $kind:ident $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $($read:ident $(: $rty:ty)?),* ) => $body:expr ;) => {
        $(#[doc = $doc])*
        #[inline(always)]
        pub fn $rule<T: Float>($($read: scalar_rules!(@ty $($rty)?)),*) -> T {
            $body
        }
    };
    // `identity`, `negate`, `zero`, and a rule whose body an earlier line gave.
    (@line $($line:tt)*) => {};
    (@ty) => { T };
    (@ty $t:ty) => { $t };
}

backprop_derive::__rule_table!(rule_lines, scalar_rules);

/// The same rules without strong zeros: `d · local` is a plain product, so `0 · ∞` (a
/// zero cotangent times an infinite derivative, or an infinite cotangent times a zero
/// one) is NaN here.
///
/// Only the value-and-gradient entry point (`f_grad`) uses these, and only as a first
/// try: a strong zero changes a result only where this module would produce a NaN
/// (`0 · ∞` or `0 · NaN`), and a NaN stays NaN through every later step of a reverse pass
/// (sums, products, pullbacks linear in the cotangent; branches choose by primal values,
/// never by cotangents). So when the gradient this module gives has no NaN, it is the
/// strong-zero gradient, up to the sign of a zero; when it has one, `f_grad` runs the
/// forward pass again and the reverse pass with strong zeros. Without the test of `d`
/// in every product the compiler keeps a reverse loop's products free of branches
/// (`docs/PERFORMANCE.md` has what that is worth on the ADBench GMM gradient).
pub mod plain {
    use super::{frac_2_sqrt_pi, half, two};
    use num_traits::Float;

    /// This module's zero convention: none, `d · local`.
    #[inline(always)]
    fn times<T: Float>(d: T, local: T) -> T {
        d * local
    }

    /// `value` as it is (no strong zero).
    #[inline(always)]
    fn guard<T: Float>(_d: T, _local_is_zero: bool, value: T) -> T {
        value
    }

    backprop_derive::__rule_table!(rule_lines, scalar_rules);
}
