// The scalar rule table, included twice by `scalar.rs`: once with strong zeros
// (`crate::rules::scalar`) and once without (`crate::rules::scalar::plain`). Every
// product of a cotangent and a local derivative goes through `times(d, local)`, every
// other expression that strong zeros guard through `guard(d, local_is_zero, value)`;
// the including module defines both.

// ---- arithmetic -------------------------------------------------------------------

/// `y = a · b`: `∂y/∂a = b`. Strong zero (`b` may be infinite).
#[inline(always)]
pub fn mul_vjp_lhs<T: Float>(b: T, d: T) -> T {
    times(d, b)
}

/// `y = a · b`: `∂y/∂b = a`. Strong zero (`a` may be infinite).
#[inline(always)]
pub fn mul_vjp_rhs<T: Float>(a: T, d: T) -> T {
    times(d, a)
}

/// `y = a / b`: `∂y/∂a = 1/b`. Strong zero (infinite at `b = 0`; zero at `b = ±∞`).
#[inline(always)]
pub fn div_vjp_lhs<T: Float>(b: T, d: T) -> T {
    guard(d, b.is_infinite(), d / b)
}

/// `y = a / b`: `∂y/∂b = −a/b² = −y/b`. Strong zero (infinite at `b = 0`; zero where
/// `y = 0` or `b = ±∞` with `y` finite).
#[inline(always)]
pub fn div_vjp_rhs<T: Float>(b: T, y: T, d: T) -> T {
    guard(
        d,
        y == T::zero() || (b.is_infinite() && y.is_finite()),
        -(d * y / b),
    )
}

// ---- exponentials and logarithms --------------------------------------------------

/// `y = eˣ`: `∂y/∂x = y`.
#[inline(always)]
pub fn exp_vjp<T: Float>(y: T, d: T) -> T {
    times(d, y)
}

/// `y = 2ˣ`: `∂y/∂x = y · ln 2`.
#[inline(always)]
pub fn exp2_vjp<T: Float>(y: T, d: T) -> T {
    times(d, y * two::<T>().ln())
}

/// `y = eˣ − 1`: `∂y/∂x = eˣ = y + 1`.
#[inline(always)]
pub fn exp_m1_vjp<T: Float>(y: T, d: T) -> T {
    times(d, y + T::one())
}

/// `y = ln x`: `∂y/∂x = 1/x`. Strong zero (infinite at 0).
#[inline(always)]
pub fn ln_vjp<T: Float>(x: T, d: T) -> T {
    times(d, x.recip())
}

/// `y = ln(1 + x)`: `∂y/∂x = 1/(1 + x)`. Strong zero (infinite at −1).
#[inline(always)]
pub fn ln_1p_vjp<T: Float>(x: T, d: T) -> T {
    times(d, (T::one() + x).recip())
}

/// `y = log₂ x`: `∂y/∂x = 1/(x ln 2)`. Strong zero.
#[inline(always)]
pub fn log2_vjp<T: Float>(x: T, d: T) -> T {
    times(d, (x * two::<T>().ln()).recip())
}

/// `y = log₁₀ x`: `∂y/∂x = 1/(x ln 10)`. Strong zero.
#[inline(always)]
pub fn log10_vjp<T: Float>(x: T, d: T) -> T {
    let ten = T::from(10.0).unwrap_or_else(T::nan);
    times(d, (x * ten.ln()).recip())
}

/// `y = log_b x = ln x / ln b`: `∂y/∂x = 1/(x ln b)`. Strong zero.
#[inline(always)]
pub fn log_vjp_x<T: Float>(x: T, base: T, d: T) -> T {
    times(d, (x * base.ln()).recip())
}

/// `y = log_b x = ln x / ln b`: `∂y/∂b = −ln x/(b (ln b)²) = −y/(b ln b)`. Strong zero.
#[inline(always)]
pub fn log_vjp_base<T: Float>(base: T, y: T, d: T) -> T {
    times(d, -(y / (base * base.ln())))
}

// ---- powers and roots -------------------------------------------------------------

/// `y = √x`: `∂y/∂x = 1/(2√x) = 1/(2y)`: `+∞` at 0 (the true one-sided derivative),
/// strong zero.
#[inline(always)]
pub fn sqrt_vjp<T: Float>(y: T, d: T) -> T {
    times(d, half::<T>() / y)
}

/// `y = ∛x`: `∂y/∂x = 1/(3y²)`, infinite at 0, strong zero.
#[inline(always)]
pub fn cbrt_vjp<T: Float>(y: T, d: T) -> T {
    let three = two::<T>() + T::one();
    times(d, (three * y * y).recip())
}

/// `y = xⁿ` for an integer `n`: `∂y/∂x = n xⁿ⁻¹` (0 for `n = 0`, including at `x = 0`).
/// Strong zero.
#[inline(always)]
pub fn powi_vjp<T: Float>(x: T, n: i32, d: T) -> T {
    if n == 0 {
        return T::zero();
    }
    let n_t = T::from(n).unwrap_or_else(T::nan);
    // xⁿ⁻¹ without overflowing n − 1 at i32::MIN.
    let x_n_minus_1 = match n.checked_sub(1) {
        Some(m) => x.powi(m),
        None => x.powi(n) / x,
    };
    times(d, n_t * x_n_minus_1)
}

/// `y = xᵖ`: `∂y/∂x = p xᵖ⁻¹`; 0 when `p = 0` (also at `0⁰`, as PyTorch). Strong zero.
#[inline(always)]
pub fn powf_vjp_x<T: Float>(x: T, p: T, d: T) -> T {
    if p == T::zero() {
        return T::zero();
    }
    times(d, p * x.powf(p - T::one()))
}

/// `y = xᵖ`: `∂y/∂p = xᵖ ln x = y ln x`; 0 at `x = 0` for `p ≥ 0` (where `y ln x`
/// would be `0 · (−∞)`; the minimum-norm choice, as PyTorch). Strong zero.
#[inline(always)]
pub fn powf_vjp_p<T: Float>(x: T, y: T, d: T) -> T {
    if x == T::zero() && y.is_finite() {
        return T::zero();
    }
    times(d, y * x.ln())
}

/// `y = 1/x`: `∂y/∂x = −1/x² = −y²`. Strong zero.
#[inline(always)]
pub fn recip_vjp<T: Float>(y: T, d: T) -> T {
    times(d, -(y * y))
}

/// `y = √(a² + b²)`: `∂y/∂a = a/y`; 0 at the origin (minimum-norm subgradient).
#[inline(always)]
pub fn hypot_vjp_a<T: Float>(a: T, y: T, d: T) -> T {
    if y == T::zero() {
        T::zero()
    } else {
        times(d, a / y)
    }
}

/// `y = √(a² + b²)`: `∂y/∂b = b/y`; 0 at the origin (minimum-norm subgradient).
#[inline(always)]
pub fn hypot_vjp_b<T: Float>(b: T, y: T, d: T) -> T {
    hypot_vjp_a(b, y, d)
}

// ---- piecewise-linear -------------------------------------------------------------

/// `y = |x|`: `∂y/∂x = sign(x)`, 0 at `x = 0` (minimum-norm subgradient of [−1, 1]).
#[inline(always)]
pub fn abs_vjp<T: Float>(x: T, d: T) -> T {
    if x > T::zero() {
        d
    } else if x < T::zero() {
        -d
    } else {
        T::zero()
    }
}

/// `y = max(a, b)`: `∂y/∂a` is 1 where `a > b`, 0 where `a < b`, ½ at a tie (even
/// split: the minimum-norm subgradient). Where `b` is NaN, `max` returns `a`, so `a`
/// gets all of `d`.
#[inline(always)]
pub fn max_vjp_a<T: Float>(a: T, b: T, d: T) -> T {
    if a > b || b.is_nan() {
        d
    } else if a == b {
        d * half::<T>()
    } else {
        T::zero()
    }
}

/// `y = max(a, b)`: `∂y/∂b`, the mirror of [`max_vjp_a`].
#[inline(always)]
pub fn max_vjp_b<T: Float>(a: T, b: T, d: T) -> T {
    max_vjp_a(b, a, d)
}

/// `y = min(a, b)`: `∂y/∂a` is 1 where `a < b`, 0 where `a > b`, ½ at a tie.
#[inline(always)]
pub fn min_vjp_a<T: Float>(a: T, b: T, d: T) -> T {
    if a < b || b.is_nan() {
        d
    } else if a == b {
        d * half::<T>()
    } else {
        T::zero()
    }
}

/// `y = min(a, b)`: `∂y/∂b`, the mirror of [`min_vjp_a`].
#[inline(always)]
pub fn min_vjp_b<T: Float>(a: T, b: T, d: T) -> T {
    min_vjp_a(b, a, d)
}

/// `y = clamp(x, lo, hi)`: `∂y/∂x` is 1 strictly inside `(lo, hi)` and 0 outside and
/// at either bound (minimum-norm subgradient at the kink).
#[inline(always)]
pub fn clamp_vjp_x<T: Float>(x: T, lo: T, hi: T, d: T) -> T {
    if x > lo && x < hi { d } else { T::zero() }
}

/// `y = clamp(x, lo, hi)`: `∂y/∂lo` is 1 where `x < lo`, else 0.
#[inline(always)]
pub fn clamp_vjp_lo<T: Float>(x: T, lo: T, d: T) -> T {
    if x < lo { d } else { T::zero() }
}

/// `y = clamp(x, lo, hi)`: `∂y/∂hi` is 1 where `x > hi`, else 0.
#[inline(always)]
pub fn clamp_vjp_hi<T: Float>(x: T, hi: T, d: T) -> T {
    if x > hi { d } else { T::zero() }
}

// ---- trigonometric and hyperbolic -------------------------------------------------

/// `y = sin x`: `∂y/∂x = cos x`.
#[inline(always)]
pub fn sin_vjp<T: Float>(x: T, d: T) -> T {
    times(d, x.cos())
}

/// `y = cos x`: `∂y/∂x = −sin x`.
#[inline(always)]
pub fn cos_vjp<T: Float>(x: T, d: T) -> T {
    times(d, -x.sin())
}

/// `y = tan x`: `∂y/∂x = 1 + tan² x = 1 + y²`.
#[inline(always)]
pub fn tan_vjp<T: Float>(y: T, d: T) -> T {
    times(d, T::one() + y * y)
}

/// `y = asin x`: `∂y/∂x = 1/√(1 − x²)`, infinite at ±1, strong zero.
#[inline(always)]
pub fn asin_vjp<T: Float>(x: T, d: T) -> T {
    times(d, (T::one() - x * x).sqrt().recip())
}

/// `y = acos x`: `∂y/∂x = −1/√(1 − x²)`, infinite at ±1, strong zero.
#[inline(always)]
pub fn acos_vjp<T: Float>(x: T, d: T) -> T {
    times(d, -(T::one() - x * x).sqrt().recip())
}

/// `y = atan x`: `∂y/∂x = 1/(1 + x²)`.
#[inline(always)]
pub fn atan_vjp<T: Float>(x: T, d: T) -> T {
    times(d, (T::one() + x * x).recip())
}

/// `θ = atan2(y, x)` (Rust: `y.atan2(x)`): `∂θ/∂y = x/(x² + y²)`; 0 at the origin.
#[inline(always)]
pub fn atan2_vjp_y<T: Float>(y: T, x: T, d: T) -> T {
    let r2 = x * x + y * y;
    if r2 == T::zero() {
        T::zero()
    } else {
        times(d, x / r2)
    }
}

/// `θ = atan2(y, x)`: `∂θ/∂x = −y/(x² + y²)`; 0 at the origin.
#[inline(always)]
pub fn atan2_vjp_x<T: Float>(y: T, x: T, d: T) -> T {
    let r2 = x * x + y * y;
    if r2 == T::zero() {
        T::zero()
    } else {
        times(d, -(y / r2))
    }
}

/// `y = sinh x`: `∂y/∂x = cosh x`.
#[inline(always)]
pub fn sinh_vjp<T: Float>(x: T, d: T) -> T {
    times(d, x.cosh())
}

/// `y = cosh x`: `∂y/∂x = sinh x`.
#[inline(always)]
pub fn cosh_vjp<T: Float>(x: T, d: T) -> T {
    times(d, x.sinh())
}

/// `y = tanh x`: `∂y/∂x = 1 − tanh² x = 1 − y²`.
#[inline(always)]
pub fn tanh_vjp<T: Float>(y: T, d: T) -> T {
    times(d, T::one() - y * y)
}
