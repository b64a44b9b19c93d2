//! The element types kernels accept (`f32`, `f64`) and the vectorisable math they share.
//!
//! `libm`'s `exp` is an opaque call that LLVM cannot vectorise, so the SIMD paths use the
//! branch-free range reduction below instead; the scalar reference path (`kernels::scalar`)
//! keeps calling `std`, and the kernel tests compare the two.
//!
//! Range reduction (Cody & Waite; Muller, *Elementary Functions*, ch. 11):
//! `x = n·ln2 + r` with `n = round(x/ln2)`, `|r| ≤ ln2/2`, so `eˣ = 2ⁿ·eʳ` and
//! `eʳ − 1 = r + r²/2! + …` (Taylor, evaluated by Horner with FMA; the first omitted
//! term is (ln2/2)⁷/7! ≈ 1.2e-7, about one f32 ulp, with 6 terms for f32, and
//! (ln2/2)¹⁴/14! ≈ 4e-18 with 13 terms for f64). `2ⁿ` is applied by adding n to the
//! exponent bits of `eʳ`, which stays a normal number on the clamped range.

use std::fmt::{Debug, Display};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element a kernel runs on: `f32` or `f64` (sealed).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not known to be `f32` or `f64`, the element types backprop's kernels and tensor rules run on",
    label = "needs `{Self}: backprop::Real`",
    note = "in generic code, add `{Self}: backprop::Real` to the bounds (`f32` or `f64`; it implies `num_traits::Float`, ndarray's `LinalgScalar` and `ScalarOperand`, and what `backprop::ops`, the optimizers and `#[grad]`'s companions need)"
)]
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

    /// `eˣ` by range reduction, branch-free so loops over it vectorise. Uses `mul_add`:
    /// call it from code compiled with `fma` (the SIMD shims), else each is a libm call.
    /// Exact `0` where eˣ is below about 1.6e-38 (f32) / 3.3e-308 (f64) — results that
    /// would be (near-)subnormal are flushed, so `exp(−∞) = 0` —; `+∞` above `ln(MAX)`;
    /// NaN stays NaN. Accuracy: a few ulp against `std`.
    fn exp_vec(self) -> Self;

    /// [`Real::exp_vec`] without the overflow select, for arguments known to be ≤ 0
    /// (softmax's `x − max`); larger arguments are wrong past `ln(MAX)`.
    fn exp_le0_vec(self) -> Self;

    /// `eˣ − 1` with full relative accuracy near 0; valid for `x ≤ 80` (used by
    /// `tanh_vec`); −1 below the `exp_vec` cut-off.
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
        // NaN passes the clamp (comparisons are false) and stays NaN.
        if self < Self::zero() { -t } else { t }
    }

    /// Logistic `σ(x) = 1/(1 + e⁻ˣ)`: saturates to exactly 0 and 1, never NaN for finite x.
    #[inline(always)]
    fn sigmoid_vec(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_vec())
    }
}

macro_rules! impl_real {
    ($t:ty, $bits:ty, $mant:expr, $magic:expr, $hi:expr, $lo:expr, $ln2_hi:expr, $ln2_lo:expr, [$($c:expr),*]) => {
        impl Real for $t {
            const NAME: &'static str = stringify!($t);

            #[inline(always)]
            fn exp_vec(self) -> Self {
                let y = self.exp_le0_vec();
                if self > $hi { <$t>::INFINITY } else { y }
            }

            #[inline(always)]
            fn exp_le0_vec(self) -> Self {
                let (n_exp, q, r) = exp_core_body!(self, $t, $bits, $mant, $magic, $ln2_hi, $ln2_lo, [$($c),*]);
                // 2ⁿ·eʳ by adding n to the exponent field of eʳ = 1 + q·r ∈ [0.7, 1.5]:
                // stays a normal number for every x in [lo, hi].
                let y = <$t>::from_bits(q.mul_add(r, 1.0).to_bits().wrapping_add(n_exp));
                // Below lo the reduction is meaningless (even NaN for −∞); this select
                // replaces it. NaN compares false and stays NaN through q.
                if self < $lo { 0.0 } else { y }
            }

            #[inline(always)]
            fn expm1_vec(self) -> Self {
                let (n_exp, q, r) = exp_core_body!(self, $t, $bits, $mant, $magic, $ln2_hi, $ln2_lo, [$($c),*]);
                let q = q * r;
                let s = <$t>::from_bits((1.0 as $t).to_bits().wrapping_add(n_exp));
                // For n = 0, s = 1 exactly and the result is the polynomial itself.
                let y = q.mul_add(s, s - 1.0);
                if self < $lo { -1.0 } else { y }
            }
        }
    };
}

/// Shared reduction: returns `(n << mant, q, r)` with `x = n·ln2 + r` and
/// `eʳ − 1 = q·r`; the first is n moved into the exponent field, ready to add to a
/// float's bits.
macro_rules! exp_core_body {
    ($x:expr, $t:ty, $bits:ty, $mant:expr, $magic:expr, $ln2_hi:expr, $ln2_lo:expr, [$($c:expr),*]) => {{
        let x: $t = $x;
        // Round-to-nearest by the 1.5·2^mant trick: the sum's low mantissa bits hold n.
        let magic: $t = $magic;
        let t = x.mul_add(std::f64::consts::LOG2_E as $t, magic);
        let n = t - magic;
        // n·2^mant = (bits(t) − bits(magic)) << mant, and bits(magic) << mant wraps to 0
        // (its low 32−23 / 64−52 bits are zero), so the subtraction can be skipped.
        let n_exp: $bits = t.to_bits() << $mant;
        // ln2 split into a head with trailing zero bits (exact n·ln2_hi) and the rest
        // (Cody & Waite), so r keeps full precision for large |n|.
        // PERF: mul_add is one vfmadd where the caller enables `fma` (every SIMD shim
        // does); LLVM never contracts a·b + c on its own.
        let r = (-n).mul_add($ln2_lo, (-n).mul_add($ln2_hi, x));
        let coeffs: &[$t] = &[$($c),*];
        // Horner from the highest term: q = 1 + r(1/2 + r(1/6 + …)), eʳ − 1 = q·r.
        let mut i = coeffs.len() - 1;
        let mut q: $t = coeffs[i];
        while i > 0 {
            i -= 1;
            q = q.mul_add(r, coeffs[i]);
        }
        (n_exp, q, r)
    }};
}

// Taylor coefficients 1/k!, k = 1..: written as exact fractions of factorials.
impl_real!(
    f32,
    u32,
    23,
    12_582_912.0, // 1.5·2²³
    88.72284,
    -87.0,              // ln(f32::MAX); e⁻⁸⁷ ≈ 1.6e-38 is just above the smallest normal
    0.693_145_75_f32,   // ln2 head: 0x3f317200 (low 8 bits zero)
    1.428_606_8e-6_f32, // ln2 − head
    [
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0
    ]
);
impl_real!(
    f64,
    u64,
    52,
    6_755_399_441_055_744.0, // 1.5·2⁵²
    709.782712893384,
    -708.0, // ln(f64::MAX); e⁻⁷⁰⁸ ≈ 3.3e-308 is just above the smallest normal
    0.693_147_180_369_123_8_f64, // ln2 head: 0x3fe62e42fee00000
    1.908_214_929_270_587_7e-10_f64, // ln2 − head, to 17 digits (ln2 = 0.693147180559945309417232…)
    [
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362880.0,
        1.0 / 3628800.0,
        1.0 / 39916800.0,
        1.0 / 479001600.0,
        1.0 / 6227020800.0
    ]
);
