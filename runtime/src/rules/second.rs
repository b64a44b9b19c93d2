//! Second derivatives: each scalar rule of the rule table as a differentiable function.
//!
//! A scalar rule is linear in its cotangent: `r(reads.., d) = d · J(reads..)`, `J` being
//! the local derivative (`sin_vjp(x, d) = d · cos x`). The forward mode calls it with a
//! tangent in place of `d` (`t_y = sin_vjp(x, t_x)`), so a Hessian-vector product, the
//! reverse pass run over that tangent program (`f_hvp`, see `docs/DESIGN.md`, "Second
//! order"), needs each rule's own pullback:
//!
//! ```text
//! ∂r/∂d     = J(reads..)           the rule itself, called with the new cotangent
//! ∂r/∂readₖ = d · ∂J/∂readₖ        the second derivative, declared here
//! ```
//!
//! Each rule of `derive/src/rule_table.in` has an entry here under the same name. Only
//! `∂J/∂readₖ` is written here, once per read; the value and `∂r/∂d` are the table's
//! rule. The tangent program's reverse pass calls `second::sin_vjp::d0(x, t, d)` (the
//! pullback of `t_y = sin_vjp(x, t)` into `x`, `d · t · ∂J/∂x`) as it calls any scalar
//! rule. Piecewise-linear rules (`abs`,
//! `max`, `min`, `clamp`) have `∂J = 0` away from their kinks. A missing entry fails to
//! compile (`every_rule_has_a_second_derivative` below), and
//! `tests/runtime/second_order.rs` checks every entry against central differences of
//! its rule.
//!
//! Strong zeros carry over: `d · ∂J` is 0 when `d` or the incoming cotangent is 0, even
//! where `∂J` is infinite (`ln` at 0).

use super::scalar;
use num_traits::Float;

#[inline(always)]
fn times<T: Float>(d: T, local: T) -> T {
    scalar::strong_mul(d, local)
}

#[inline(always)]
fn two<T: Float>() -> T {
    T::one() + T::one()
}

#[inline(always)]
fn cst<T: Float>(c: f64) -> T {
    T::from(c).unwrap_or_else(T::nan)
}

/// Declares the companions: `rule(reads..) => [∂J/∂read₁, ..];`, one expression per read
/// (in the order the rule reads them).
macro_rules! second_order {
    ($(
        $(#[doc = $doc:literal])*
        $rule:ident ( $($read:ident),+ ) => [ $($partial:expr),+ $(,)? ];
    )*) => {$(
        $(#[doc = $doc])*
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        pub struct $rule {}

        impl $rule {
            second_order!(@each ($($read),+) [d0 d1 d2 d3] $($read => $partial,)+);

            /// `∂J/∂readₖ`, one per read: the second derivatives this entry declares.
            #[doc(hidden)]
            #[inline]
            #[allow(unused_variables)]
            pub fn partials<T: Float>($($read: T),+) -> Vec<T> {
                vec![$($partial),+]
            }
        }
    )*};
    // `dK(reads.., t, d) = d · t · ∂J/∂readₖ`: the pullback of `t_y = rule(reads.., t)`
    // into its `k`-th read, as a plain function (the tangent program's reverse pass calls
    // these as it calls any scalar rule; the cotangent of `t` is the rule itself).
    (@each ($($all:ident),+) [$name:ident $($names:ident)*] $read:ident => $partial:expr, $($rest:tt)*) => {
        #[doc(hidden)]
        #[inline(always)]
        #[allow(unused_variables)]
        pub fn $name<T: Float>($($all: T,)+ t: T, d: T) -> T {
            times(times(d, t), $partial)
        }
        second_order!(@each ($($all),+) [$($names)*] $($rest)*);
    };
    (@each ($($all:ident),+) [$($names:ident)*]) => {};
}

second_order! {
    /// `J = b`.
    mul_vjp_lhs(b) => [T::one()];
    /// `J = a`.
    mul_vjp_rhs(a) => [T::one()];
    /// `J = 1/b`.
    div_vjp_lhs(b) => [-(b * b).recip()];
    /// `J = −y/b`.
    div_vjp_rhs(b, y) => [y / (b * b), -b.recip()];
    /// `J = y` (`y = eˣ`).
    exp_vjp(y) => [T::one()];
    /// `J = y ln 2`.
    exp2_vjp(y) => [two::<T>().ln()];
    /// `J = y + 1`.
    exp_m1_vjp(y) => [T::one()];
    /// `J = 1/x`.
    ln_vjp(x) => [-(x * x).recip()];
    /// `J = 1/(1 + x)`.
    ln_1p_vjp(x) => [-((T::one() + x) * (T::one() + x)).recip()];
    /// `J = 1/(x ln 2)`.
    log2_vjp(x) => [-(x * x * two::<T>().ln()).recip()];
    /// `J = 1/(x ln 10)`.
    log10_vjp(x) => [-(x * x * cst::<T>(10.0).ln()).recip()];
    /// `J = 1/(x ln b)`.
    log_vjp_x(x, base) => [
        -(x * x * base.ln()).recip(),
        -(x * base * base.ln() * base.ln()).recip(),
    ];
    /// `J = −y/(b ln b)`.
    log_vjp_base(base, y) => [
        y * (base.ln() + T::one()) / ((base * base.ln()) * (base * base.ln())),
        -(base * base.ln()).recip(),
    ];
    /// `J = 1/(2y)` (`y = √x`).
    sqrt_vjp(y) => [-(two::<T>() * y * y).recip()];
    /// `J = 1/(3y²)` (`y = ∛x`).
    cbrt_vjp(y) => [-two::<T>() / (cst::<T>(3.0) * y * y * y)];
    /// `J = p xᵖ⁻¹` (0 at `p = 0`, the rule's convention, which is also its limit).
    /// `∂J/∂x = p(p − 1) xᵖ⁻²` is 0 where `p(p − 1) = 0` (`J` is constant in `x`
    /// there; the formula would be `0 · ∞` at `x = 0`), and `∂J/∂p = xᵖ⁻¹(1 + p ln x)`
    /// is its limit 0 at `x = 0` for `p > 1` (not `0 · (−∞)`), as the first rule takes
    /// `0ᵖ ln 0` as 0.
    powf_vjp_x(x, p) => [
        if p == T::zero() || p == T::one() {
            T::zero()
        } else {
            p * (p - T::one()) * x.powf(p - two::<T>())
        },
        if x == T::zero() && p > T::one() {
            T::zero()
        } else {
            x.powf(p - T::one()) * (T::one() + p * x.ln())
        },
    ];
    /// `J = y ln x` (0 at `x = 0`).
    powf_vjp_p(x, y) => [
        if x == T::zero() { T::zero() } else { y / x },
        if x == T::zero() { T::zero() } else { x.ln() },
    ];
    /// `J = −y²` (`y = 1/x`).
    recip_vjp(y) => [-two::<T>() * y];
    /// `J = sign x`: piecewise constant.
    abs_vjp(x) => [T::zero()];
    /// Piecewise constant.
    max_vjp_a(a, b) => [T::zero(), T::zero()];
    /// Piecewise constant.
    max_vjp_b(a, b) => [T::zero(), T::zero()];
    /// Piecewise constant.
    min_vjp_a(a, b) => [T::zero(), T::zero()];
    /// Piecewise constant.
    min_vjp_b(a, b) => [T::zero(), T::zero()];
    /// Piecewise constant.
    clamp_vjp_x(x, lo, hi) => [T::zero(), T::zero(), T::zero()];
    /// Piecewise constant.
    clamp_vjp_lo(x, lo) => [T::zero(), T::zero()];
    /// Piecewise constant.
    clamp_vjp_hi(x, hi) => [T::zero(), T::zero()];
    /// `J = a/y` (`y = hypot(a, b)`; 0 at the origin).
    hypot_vjp_a(a, y) => [
        if y == T::zero() { T::zero() } else { y.recip() },
        if y == T::zero() { T::zero() } else { -a / (y * y) },
    ];
    /// `J = b/y`.
    hypot_vjp_b(b, y) => [
        if y == T::zero() { T::zero() } else { y.recip() },
        if y == T::zero() { T::zero() } else { -b / (y * y) },
    ];
    /// `J = x/r²`, `r² = x² + y²` (0 at the origin).
    atan2_vjp_y(y, x) => [
        atan2_second(y, x, |r2| -(two::<T>() * x * y) / (r2 * r2)),
        atan2_second(y, x, |r2| (y * y - x * x) / (r2 * r2)),
    ];
    /// `J = −y/r²`.
    atan2_vjp_x(y, x) => [
        atan2_second(y, x, |r2| (y * y - x * x) / (r2 * r2)),
        atan2_second(y, x, |r2| two::<T>() * x * y / (r2 * r2)),
    ];
    /// `J = cos x`.
    sin_vjp(x) => [-x.sin()];
    /// `J = −sin x`.
    cos_vjp(x) => [-x.cos()];
    /// `J = 1 + y²` (`y = tan x`).
    tan_vjp(y) => [two::<T>() * y];
    /// `J = (1 − x²)^(−½)`.
    asin_vjp(x) => [x * (T::one() - x * x).powf(cst::<T>(-1.5))];
    /// `J = −(1 − x²)^(−½)`.
    acos_vjp(x) => [-x * (T::one() - x * x).powf(cst::<T>(-1.5))];
    /// `J = 1/(1 + x²)`.
    atan_vjp(x) => [-two::<T>() * x / ((T::one() + x * x) * (T::one() + x * x))];
    /// `J = cosh x`.
    sinh_vjp(x) => [x.sinh()];
    /// `J = sinh x`.
    cosh_vjp(x) => [x.cosh()];
    /// `J = 1 − y²` (`y = tanh x`).
    tanh_vjp(y) => [-two::<T>() * y];
    /// `J = (2/√π) e^(−x²)`.
    erf_vjp(x) => [-two::<T>() * x * cst::<T>(core::f64::consts::FRAC_2_SQRT_PI) * (-(x * x)).exp()];
    /// `J = −(2/√π) e^(−x²)`.
    erfc_vjp(x) => [two::<T>() * x * cst::<T>(core::f64::consts::FRAC_2_SQRT_PI) * (-(x * x)).exp()];
}

/// `atan2`'s second derivatives, 0 at the origin (where its first derivative is 0 by
/// convention).
#[inline(always)]
fn atan2_second<T: Float>(y: T, x: T, f: impl FnOnce(T) -> T) -> T {
    let r2 = x * x + y * y;
    if r2 == T::zero() { T::zero() } else { f(r2) }
}

/// `y = xⁿ`: `J = n xⁿ⁻¹`, `∂J/∂x = n(n − 1) xⁿ⁻²`; `n` is an integer, with no
/// cotangent.
#[doc(hidden)]
#[allow(non_camel_case_types)]
pub struct powi_vjp {}

impl powi_vjp {
    /// `d · t · ∂J/∂x` (see the other rules' `d0`).
    #[doc(hidden)]
    #[inline(always)]
    pub fn d0<T: Float>(x: T, n: i32, t: T, d: T) -> T {
        times(times(d, t), Self::partial(x, n))
    }

    /// `∂J/∂x = n(n − 1) xⁿ⁻²` (0 for `n` = 0 or 1).
    #[doc(hidden)]
    #[inline]
    pub fn partial<T: Float>(x: T, n: i32) -> T {
        if n == 0 || n == 1 {
            return T::zero();
        }
        let (nf, n1) = (cst::<T>(n as f64), cst::<T>(n as f64 - 1.0));
        let x_n_minus_2 = match n.checked_sub(2) {
            Some(m) => x.powi(m),
            None => x.powi(n) / (x * x),
        };
        nf * n1 * x_n_minus_2
    }
}

/// Compiles only when every rule of the table has its companion here.
macro_rules! every_rule_has_a_second_derivative {
    (@line $kind:ident $(#[doc = $doc:literal])* $d:ident = $rule:ident
        ( $($read:ident $(: $rty:ty)?),* ) $(=> $body:expr)? ;) => {
        const _: $rule = $rule {};
    };
    (@line $($line:tt)*) => {};
}

backprop_derive::__rule_table!(rule_lines, every_rule_has_a_second_derivative);
