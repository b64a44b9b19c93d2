//! The element types kernels accept (`f32`, `f64`) and the vectorisable math they share.
//!
//! `libm`'s `exp` is an opaque call that LLVM cannot vectorise, so the SIMD paths use the
//! branch-free range reduction below instead; the scalar reference path (`kernels::scalar`)
//! keeps calling `std`, and the kernel tests compare the two.
//!
//! Range reduction (Cody & Waite; Muller, *Elementary Functions*, ch. 11):
//! `x = n·ln2 + r` with `n = round(x/ln2)`, `|r| ≤ ln2/2`, so `eˣ = 2ⁿ·eʳ` and
//! `eʳ − 1 = r + r²/2! + … ` (Taylor, evaluated by Horner; the first omitted term is
//! below half an ulp: (ln2/2)⁸/8! ≈ 5e-9 for f32 with 7 terms, (ln2/2)¹⁴/14! ≈ 4e-18 for f64
//! with 13 terms). `2ⁿ` is built from exponent bits as `2^⌊n/2⌋·2^(n−⌊n/2⌋)` so every `n`
//! from subnormal results to overflow stays representable.

use std::fmt::{Debug, Display};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element a kernel runs on: `f32` or `f64` (sealed).
pub trait Real:
    num_traits::Float
    + num_traits::FloatConst
    + num_traits::NumAssign
    + std::iter::Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// `"f32"` or `"f64"`, for messages and benchmark names.
    const NAME: &'static str;

    /// `eˣ` by range reduction, branch-free so loops over it vectorise. Exact `0` below the
    /// subnormal range (so `exp(−∞) = 0`), `+∞` above `ln(MAX)`, NaN stays NaN.
    /// Accuracy: a few ulp against `std`.
    fn exp_vec(self) -> Self;

    /// `eˣ − 1` with full relative accuracy near 0; valid for `x ≤ 80` (used by `tanh_vec`).
    fn expm1_vec(self) -> Self;

    /// `tanh(x) = sign(x)·e/(e + 2)` with `e = expm1(2|x|)`, `|x|` clamped at 20 where
    /// `tanh` rounds to 1 in both precisions. Branch-free.
    #[inline(always)]
    fn tanh_vec(self) -> Self {
        let twenty = Self::from(20.0).unwrap();
        let a = self.abs();
        let a = if a > twenty { twenty } else { a };
        let e = (a + a).expm1_vec();
        let t = e / (e + Self::from(2.0).unwrap());
        let t = if self < Self::zero() { -t } else { t };
        // NaN in, NaN out (the clamp above would have hidden it).
        if self.is_nan() {
            self
        } else {
            t
        }
    }

    /// Logistic `σ(x) = 1/(1 + e⁻ˣ)`: saturates to exactly 0 and 1, never NaN for finite x.
    #[inline(always)]
    fn sigmoid_vec(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_vec())
    }
}

macro_rules! impl_real {
    ($t:ty, $bits:ty, $ibits:ty, $mant:expr, $bias:expr, $magic:expr, $hi:expr, $lo:expr, $ln2_hi:expr, $ln2_lo:expr, [$($c:expr),*]) => {
        impl Real for $t {
            const NAME: &'static str = stringify!($t);

            #[inline(always)]
            fn exp_vec(self) -> Self {
                let p = exp_core_body!(self, $t, $bits, $ibits, $mant, $bias, $magic, $hi, $lo, $ln2_hi, $ln2_lo, [$($c),*]);
                let (s1, s2, q) = p;
                let y = (q + 1.0) * s1 * s2;
                let y = if self > $hi { <$t>::INFINITY } else { y };
                let y = if self < $lo { 0.0 } else { y };
                if self.is_nan() { self } else { y }
            }

            #[inline(always)]
            fn expm1_vec(self) -> Self {
                let (s1, s2, q) = exp_core_body!(self, $t, $bits, $ibits, $mant, $bias, $magic, $hi, $lo, $ln2_hi, $ln2_lo, [$($c),*]);
                let s = s1 * s2;
                // For n = 0, s = 1 exactly and the result is the polynomial itself.
                let y = q * s + (s - 1.0);
                let y = if self < $lo { -1.0 } else { y };
                if self.is_nan() { self } else { y }
            }
        }
    };
}

/// Shared reduction: returns `(2^h, 2^(n−h), eʳ − 1)` for the clamped argument.
macro_rules! exp_core_body {
    ($x:expr, $t:ty, $bits:ty, $ibits:ty, $mant:expr, $bias:expr, $magic:expr, $hi:expr, $lo:expr, $ln2_hi:expr, $ln2_lo:expr, [$($c:expr),*]) => {{
        let x: $t = $x;
        let x = if x > $hi { $hi } else { x };
        let x = if x < $lo { $lo } else { x };
        // Round-to-nearest by the 1.5·2^mant trick: the sum's low mantissa bits hold n.
        let magic: $t = $magic;
        let t = x * std::f64::consts::LOG2_E as $t + magic;
        let n = t - magic;
        let ni = (t.to_bits().wrapping_sub(magic.to_bits())) as $ibits;
        // ln2 split into a head with trailing zero bits (exact n·ln2_hi) and the rest
        // (Cody & Waite), so r keeps full precision for large |n|.
        let r = (x - n * $ln2_hi) - n * $ln2_lo;
        let coeffs: &[$t] = &[$($c),*];
        // Horner from the highest term: q = r(1 + r(1/2 + r(1/6 + …))).
        let mut q: $t = 0.0;
        let mut i = coeffs.len();
        while i > 0 {
            i -= 1;
            q = q * r + coeffs[i];
        }
        let q = q * r;
        let h = ni >> 1;
        let s1 = <$t>::from_bits(((h + $bias) as $bits) << $mant);
        let s2 = <$t>::from_bits(((ni - h + $bias) as $bits) << $mant);
        (s1, s2, q)
    }};
}

// Taylor coefficients 1/k!, k = 1..: written as exact fractions of factorials.
impl_real!(
    f32, u32, i32, 23, 127, 12_582_912.0, // 1.5·2²³
    88.72284, -103.97208, 0.693_145_75_f32, // ln2 head: 0x3f317200 (low 8 bits zero)
    1.428_606_8e-6_f32, // ln2 − head
    [1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0]
);
impl_real!(
    f64, u64, i64, 52, 1023, 6_755_399_441_055_744.0, // 1.5·2⁵²
    709.782712893384, -745.1332191019412, 0.693_147_180_369_123_8_f64, // ln2 head: 0x3fe62e42fee00000
    1.908_214_929_270_587_7e-10_f64, // ln2 − head, to 17 digits (ln2 = 0.693147180559945309417232…)
    [
        1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0,
        1.0 / 40320.0, 1.0 / 362880.0, 1.0 / 3628800.0, 1.0 / 39916800.0,
        1.0 / 479001600.0, 1.0 / 6227020800.0
    ]
);
