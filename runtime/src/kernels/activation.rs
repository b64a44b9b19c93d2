//! Elementwise activations: forward `y = f(x)` and backward `d_x = d_y · f′(saved)`.
//!
//! One generic body per direction, instantiated twice: with `std` math (the scalar
//! reference = fallback = oracle, in [`super::scalar`]) and with the branch-free math of
//! [`Real`] inside an `avx2,fma` shim, where LLVM vectorises every loop. Checked by the
//! `activation/f32/1M` group of `benches/softmax_xent.rs` (dispatched vs oracle, f32,
//! Gelem/s, shared machine): exp 3.3 vs 0.39, sigmoid 2.6 vs 0.37, tanh 1.9 vs 0.087,
//! gelu 1.6 vs 0.36; backward of sigmoid/tanh/exp ≈ 6 (L2-bound). Softplus and ln
//! forward still call libm (`ln_1p`, `ln`) and are not vectorised.
//!
//! Conventions (also in docs/RULES.md):
//! - kinks take the minimum-norm subgradient: `relu′(0) = 0`; `leaky_relu′(0) = slope`
//!   when `slope ≤ 1` (the element of `[slope, 1]` nearest 0 for `0 ≤ slope ≤ 1`).
//! - strong zeros: where `f′` can be infinite (`sqrt` at 0, `ln` at 0, `exp` past
//!   overflow), a zero cotangent gives exactly `0`, never `0·∞ = NaN` (Enzyme's
//!   `CheckedMul`).
//! - limits at ±∞: `gelu`, `silu` and `leaky_relu` (slope 0) give their limits there,
//!   for the value and the derivative (`gelu(−∞) = 0`, `gelu′(+∞) = 1`, ...), never
//!   the `∞·0 = NaN` of the plain formula; NaN stays NaN.

use super::{Arch, Real};
use core::mem::MaybeUninit;

/// An elementwise function with a known derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary<T> {
    /// `max(x, 0)`; saves y (`y > 0 ⇔ x > 0`); `f′ = 1[y > 0]`.
    Relu,
    /// `x` for `x > 0`, `slope·x` otherwise; saves x; `f′ = 1 if x > 0 else slope`.
    LeakyRelu(T),
    /// GELU, tanh form (Hendrycks & Gimpel 2016, eq. after (2)): `½x(1 + tanh u)`,
    /// `u = √(2/π)(x + 0.044715x³)`; saves x;
    /// `f′ = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)`, `t = tanh u`; computed as
    /// `x·σ(2u)` and `s + 2x·s(1 − s)·u′` with `s = σ(2u)` (same values, no cancellation).
    Gelu,
    /// GELU, exact form `x·Φ(x)` (Hendrycks & Gimpel 2016, §2; PyTorch's
    /// `gelu(approximate='none')`); saves x; `f′ = Φ(x) + x·φ(x)`. Evaluated in f64 and
    /// rounded: fdlibm's `erfc` on the reference path and for f64, a branch-free
    /// Chebyshev fit (fractional error < 1.2·10⁻⁷) for f32 on the SIMD path.
    GeluExact,
    /// SiLU / swish `x·σ(x)` (Elfwing et al. 2018); saves x; `f′ = σ(1 + x(1 − σ))`.
    Silu,
    /// `σ(x) = 1/(1 + e⁻ˣ)`; saves y; `f′ = y(1 − y)`.
    Sigmoid,
    /// `tanh x`; saves y; `f′ = 1 − y²`.
    Tanh,
    /// `ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|)` (stable form); saves x; `f′ = σ(x)`.
    Softplus,
    /// `eˣ`; saves y; `f′ = y` (strong zero).
    Exp,
    /// `ln x`; saves x; `f′ = 1/x` (strong zero at x = 0).
    Ln,
    /// `√x`; saves y; `f′ = 1/(2y)` (strong zero at y = 0).
    Sqrt,
}

impl<T> Unary<T> {
    /// Whether each element costs a transcendental evaluation (exp, erfc, tanh), so the
    /// kernel is compute-bound and worth splitting across threads from 64k elements;
    /// ReLU, leaky ReLU and √ are bound by memory bandwidth, so only large arrays gain
    /// from more threads (see [`Unary::parallel_min`]).
    pub fn is_transcendental(&self) -> bool {
        !matches!(self, Unary::Relu | Unary::LeakyRelu(_) | Unary::Sqrt)
    }

    /// Fewest elements at which this op is split across threads:
    /// [`PARALLEL_MIN_ELEMS`] or [`PARALLEL_MIN_ELEMS_MEMORY_BOUND`].
    pub fn parallel_min(&self) -> usize {
        if self.is_transcendental() {
            PARALLEL_MIN_ELEMS
        } else {
            PARALLEL_MIN_ELEMS_MEMORY_BOUND
        }
    }
}

/// Transcendental activations over at least this many elements are split into one
/// contiguous block per thread of rayon's global pool (elements are independent, so the
/// result is the same bit for bit). Exact GELU on `[768, 512]` f32, the GPT's MLP: 0.69
/// → 0.36 ms forward on 2 threads (docs/PERFORMANCE.md, "A character-level GPT").
pub const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// The memory-bound activations (ReLU, leaky ReLU, √) are split across threads from
/// this many elements (2 MiB of f32): one core streams a few GB/s, a socket's cores
/// together many times that (issue 16). The ReLU of a `[512, 2048]` layer is above.
pub const PARALLEL_MIN_ELEMS_MEMORY_BOUND: usize = 1 << 19;

/// Which value an activation's backward reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saves {
    /// The forward's input x.
    Input,
    /// The forward's output y.
    Output,
}

impl<T> Unary<T> {
    /// What [`backward`] expects as its `saved` argument for this function.
    pub fn saves(&self) -> Saves {
        match self {
            Unary::Relu | Unary::Sigmoid | Unary::Tanh | Unary::Exp | Unary::Sqrt => Saves::Output,
            Unary::LeakyRelu(_)
            | Unary::Gelu
            | Unary::GeluExact
            | Unary::Silu
            | Unary::Softplus
            | Unary::Ln => Saves::Input,
        }
    }
}

/// The transcendental functions a body uses: `std` (oracle) or the vectorisable ones.
pub(crate) trait Math {
    /// Hint that the cache line holding `p` is needed soon (a no-op on the reference
    /// path). Never dereferences `p`.
    #[inline(always)]
    fn prefetch<T>(_p: *const T) {}
    fn exp<T: Real>(x: T) -> T;
    /// `eˣ` for `x ≤ 0` (or −∞, NaN).
    #[inline(always)]
    fn exp_le0<T: Real>(x: T) -> T {
        Self::exp(x)
    }
    fn tanh<T: Real>(x: T) -> T;
    fn sigmoid<T: Real>(x: T) -> T;
    /// `Φ(x)`, the standard normal CDF, in f64 for a result of type `T`.
    fn normal_cdf<T: Real>(x: f64) -> f64;
}

/// `std`'s functions: correctly rounded or nearly, scalar calls.
pub(crate) struct StdMath;
impl Math for StdMath {
    #[inline(always)]
    fn exp<T: Real>(x: T) -> T {
        x.exp()
    }
    #[inline(always)]
    fn tanh<T: Real>(x: T) -> T {
        x.tanh()
    }
    #[inline(always)]
    fn sigmoid<T: Real>(x: T) -> T {
        T::one() / (T::one() + (-x).exp())
    }
    #[inline(always)]
    fn normal_cdf<T: Real>(x: f64) -> f64 {
        normal_cdf_fdlibm(x)
    }
}

/// [`Real`]'s branch-free functions, which vectorise.
pub(crate) struct VecMath;
impl Math for VecMath {
    #[inline(always)]
    fn prefetch<T>(p: *const T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch is a hint: it never faults and never reads into the program,
        // whatever the address (Intel SDM, PREFETCHh).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
    #[inline(always)]
    fn exp<T: Real>(x: T) -> T {
        x.exp_vec()
    }
    #[inline(always)]
    fn exp_le0<T: Real>(x: T) -> T {
        x.exp_le0_vec()
    }
    #[inline(always)]
    fn tanh<T: Real>(x: T) -> T {
        x.tanh_vec()
    }
    #[inline(always)]
    fn sigmoid<T: Real>(x: T) -> T {
        x.sigmoid_vec()
    }
    /// For an f32 result the branch-free [`normal_cdf_f32`]; for f64, fdlibm's (scalar).
    #[inline(always)]
    fn normal_cdf<T: Real>(x: f64) -> f64 {
        if core::mem::size_of::<T>() == 4 {
            normal_cdf_f32(x)
        } else {
            normal_cdf_fdlibm(x)
        }
    }
}

/// `Φ(x) = ½·erfc(−x/√2)` with fdlibm's `erfc` ([`super::erf::erfc`], about 1 ulp in
/// f64): the reference for every exact-GELU path, and the vectorised path's for f64.
#[inline(always)]
pub(crate) fn normal_cdf_fdlibm(x: f64) -> f64 {
    0.5 * super::erf::erfc(-x * core::f64::consts::FRAC_1_SQRT_2)
}

/// `Φ(x)` for a result that will be rounded to f32: branch-free, in f64 arithmetic, so it
/// vectorises. `erfc(z) ≈ t·e^(−z² + P(t))` with `t = 2/(2 + z)`, `z = |x|/√2`, `P` the
/// degree-9 Chebyshev fit of Press et al., *Numerical Recipes in C* (2nd ed., 1992,
/// §6.2, `erfcc`): fractional error below 1.2·10⁻⁷ for every `z ≥ 0`. `Φ = 1 − ½erfc(z)`
/// for `x ≥ 0` and `½erfc(z)` otherwise, so the left tail keeps its relative accuracy.
/// `Φ(−∞) = 0`, `Φ(+∞) = 1`, NaN stays NaN. Exact GELU rounded to f32 through it is
/// within 2 ulp of the fdlibm path (tested on a grid).
#[inline(always)]
pub(crate) fn normal_cdf_f32(x: f64) -> f64 {
    const P: [f64; 10] = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ];
    let z = x.abs() * core::f64::consts::FRAC_1_SQRT_2;
    let t = 2.0 / (2.0 + z);
    let mut p = P[9];
    for &c in P[..9].iter().rev() {
        p = p.mul_add(t, c);
    }
    let erfc = t * (-z).mul_add(z, p).exp_vec();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// `1/√(2π)`, the standard normal density's constant.
const INV_SQRT_2PI: f64 =
    0.5 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;

/// Exact GELU `x·Φ(x)` (Hendrycks & Gimpel 2016, §2), in f64 and rounded to `T`; the limit
/// 0 where `Φ` is exactly 0 (`x = −∞`), not `−∞·0`.
#[inline(always)]
pub(crate) fn gelu_exact_value<T: Real, M: Math>(x: T) -> T {
    let f = x.to_f64().unwrap_or(f64::NAN);
    let phi = M::normal_cdf::<T>(f);
    T::from(if phi == 0.0 { 0.0 } else { f * phi }).unwrap_or_else(T::nan)
}

/// Exact GELU's derivative `Φ(x) + x·φ(x)`, `φ(x) = e^(−x²/2)/√(2π)`, in f64 and rounded
/// to `T`; `Φ` where `φ` is exactly 0 (far tails, ±∞), not `∞·0`.
#[inline(always)]
pub(crate) fn gelu_exact_local<T: Real, M: Math>(x: T) -> T {
    let f = x.to_f64().unwrap_or(f64::NAN);
    let phi = M::normal_cdf::<T>(f);
    let e = M::exp::<f64>(-0.5 * f * f);
    T::from(if e == 0.0 {
        phi
    } else {
        phi + f * e * INV_SQRT_2PI
    })
    .unwrap_or_else(T::nan)
}

/// `d·f` with a strong zero: `d = 0` gives 0 even when `f` is infinite.
#[inline(always)]
fn strong_mul<T: Real>(d: T, f: T) -> T {
    if d == T::zero() { T::zero() } else { d * f }
}

/// GELU's cubic coefficient (Hendrycks & Gimpel 2016, tanh approximation).
const GELU_A: f64 = 0.044715;

/// GELU's value in its tanh form (Hendrycks & Gimpel 2016), written with σ:
/// `½x(1 + tanh u) = x·σ(2u)`, `u = √(2/π)(x + 0.044715x³)`, which has no cancellation
/// of `1 + tanh u → 0` for negative `x`. Where σ is exactly 0 (far left, and `x = −∞`)
/// the value is its limit 0, not `−∞·0`. The one formula behind `backprop::gelu`, its
/// rule, and both kernel paths, which differ only in the `sigmoid` they pass (std's
/// for the scalar function and oracle, [`Real`]'s vectorising one in the kernels).
#[inline(always)]
pub(crate) fn gelu_value<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let (k, a) = gelu_consts::<T>();
    let two = T::one() + T::one();
    let s = sigmoid(two * k * (x + a * x * x * x));
    if s == T::zero() { T::zero() } else { x * s }
}

/// GELU's local derivative (tanh form): with `s = σ(2u)`, `½(1 + t) = s` and
/// `½(1 − t²) = 2s(1 − s)`, so `f′ = s + 2x·s(1 − s)·u′`, `u′ = √(2/π)(1 + 3·0.044715x²)`.
/// Where σ has saturated (`s(1 − s) = 0` exactly, also at ±∞ and where `x²` overflows)
/// the second term is `0·x·u′` with `x` or `u′` possibly infinite: it is taken as 0.
#[inline(always)]
pub(crate) fn gelu_local<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let (k, a) = gelu_consts::<T>();
    let one = T::one();
    let two = one + one;
    let x2 = x * x;
    let sg = sigmoid(two * k * (x + a * x2 * x));
    let du = k * (one + (two + one) * a * x2);
    if sg * (one - sg) == T::zero() {
        sg
    } else {
        sg + two * x * sg * (one - sg) * du
    }
}

/// GELU's second derivative (tanh form), from `gelu = x·σ(2u)`, `u = k(x + a x³)`:
/// with `s = σ(2u)`, `u' = k(1 + 3a x²)`, `u'' = 6a k x`,
/// `gelu'' = s(1 − s)·(4u' + 2x(2(1 − 2s)u'² + u''))`. Zero where σ saturates.
#[inline]
pub(crate) fn gelu_second<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let (k, a) = gelu_consts::<T>();
    let one = T::one();
    let two = one + one;
    let x2 = x * x;
    let sg = sigmoid(two * k * (x + a * x2 * x));
    let s1 = sg * (one - sg);
    if s1 == T::zero() {
        return T::zero();
    }
    let du = k * (one + (two + one) * a * x2);
    let ddu = (two + two + two) * a * k * x;
    s1 * ((two + two) * du + two * x * (two * (one - two * sg) * du * du + ddu))
}

/// SiLU's second derivative, from `silu = x·σ(x)`: `σ(1 − σ)(2 + x(1 − 2σ))`. Zero
/// where σ saturates.
#[inline]
pub(crate) fn silu_second<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let one = T::one();
    let s = sigmoid(x);
    let s1 = s * (one - s);
    if s1 == T::zero() {
        return T::zero();
    }
    s1 * (one + one + x * (one - (one + one) * s))
}

/// `(√(2/π), 0.044715)`: √(2/π) from the constants, 0.044715 the paper's fitted cubic
/// coefficient.
#[inline(always)]
fn gelu_consts<T: num_traits::Float>() -> (T, T) {
    let k = core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
    (
        T::from(k).unwrap_or_else(T::nan),
        T::from(GELU_A).unwrap_or_else(T::nan),
    )
}

/// SiLU's value `x·σ(x)` (Elfwing et al. 2018); 0 where σ is exactly 0 (`x = −∞`),
/// not `−∞·0`. Shared as [`gelu_value`] is.
#[inline(always)]
pub(crate) fn silu_value<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let s = sigmoid(x);
    if s == T::zero() { T::zero() } else { x * s }
}

/// SiLU's local derivative `σ(x)(1 + x(1 − σ(x)))`; σ where `σ(1 − σ) = 0` exactly
/// (0 at −∞, 1 at +∞, not `∞·0`).
#[inline(always)]
pub(crate) fn silu_local<T: num_traits::Float>(x: T, sigmoid: impl Fn(T) -> T) -> T {
    let one = T::one();
    let s = sigmoid(x);
    if s * (one - s) == T::zero() {
        s
    } else {
        s * (one + x * (one - s))
    }
}

#[inline(always)]
fn map<T: Real>(x: &[T], y: &mut [T], f: impl Fn(T) -> T) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = f(xi);
    }
}

#[inline(always)]
fn map2<T: Real>(s: &[T], d_y: &[T], d_x: &mut [T], f: impl Fn(T, T) -> T) {
    for ((o, &si), &di) in d_x.iter_mut().zip(s).zip(d_y) {
        *o = f(si, di);
    }
}

#[inline(always)]
pub(crate) fn forward_body<T: Real, M: Math>(op: Unary<T>, x: &[T], y: &mut [T]) {
    let zero = T::zero();
    match op {
        // A NaN stays NaN (`NaN <= 0` is false), as `backprop::relu` and PyTorch's.
        Unary::Relu => map(x, y, |v| if v <= zero { zero } else { v }),
        // 0·(−∞) for slope 0 is the limit 0 (the slope-0 function is relu).
        Unary::LeakyRelu(a) => map(x, y, |v| {
            if v > zero {
                v
            } else if a == zero && v.is_infinite() {
                zero
            } else {
                a * v
            }
        }),
        Unary::Gelu => map(x, y, |v| gelu_value(v, M::sigmoid)),
        Unary::GeluExact => map(x, y, gelu_exact_value::<T, M>),
        Unary::Silu => map(x, y, |v| silu_value(v, M::sigmoid)),
        Unary::Sigmoid => map(x, y, M::sigmoid),
        Unary::Tanh => map(x, y, M::tanh),
        // PERF: ln_1p is a libm call, so this arm is not vectorised.
        Unary::Softplus => map(x, y, |v| v.max(zero) + M::exp(-v.abs()).ln_1p()),
        Unary::Exp => map(x, y, M::exp),
        // PERF: libm call, not vectorised.
        Unary::Ln => map(x, y, |v| v.ln()),
        Unary::Sqrt => map(x, y, |v| v.sqrt()),
    }
}

#[inline(always)]
pub(crate) fn backward_body<T: Real, M: Math>(op: Unary<T>, s: &[T], d_y: &[T], d_x: &mut [T]) {
    let zero = T::zero();
    let one = T::one();
    match op {
        // 0 where the saved value is NaN too (`d·1[y > 0]`, PyTorch's and JAX's); the
        // NaN is in the value. Leaky ReLU's gradient is NaN there, as its scalar rule's.
        Unary::Relu => map2(s, d_y, d_x, |y, d| if y > zero { d } else { zero }),
        Unary::LeakyRelu(a) => map2(s, d_y, d_x, |x, d| {
            if x > zero {
                d
            } else if x <= zero {
                a * d
            } else {
                x
            }
        }),
        Unary::Gelu => map2(s, d_y, d_x, |x, d| d * gelu_local(x, M::sigmoid)),
        Unary::GeluExact => map2(s, d_y, d_x, |x, d| d * gelu_exact_local::<T, M>(x)),
        Unary::Silu => map2(s, d_y, d_x, |x, d| d * silu_local(x, M::sigmoid)),
        Unary::Sigmoid => map2(s, d_y, d_x, |y, d| d * (y * (one - y))),
        Unary::Tanh => map2(s, d_y, d_x, |y, d| d * (one - y * y)),
        Unary::Softplus => map2(s, d_y, d_x, |x, d| d * M::sigmoid(x)),
        Unary::Exp => map2(s, d_y, d_x, |y, d| strong_mul(d, y)),
        Unary::Ln => map2(s, d_y, d_x, |x, d| if d == zero { zero } else { d / x }),
        Unary::Sqrt => map2(
            s,
            d_y,
            d_x,
            |y, d| if d == zero { zero } else { d / (y + y) },
        ),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2<T: Real>(op: Unary<T>, x: &[T], y: &mut [T]) {
    forward_body::<T, VecMath>(op, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2<T: Real>(op: Unary<T>, s: &[T], d_y: &[T], d_x: &mut [T]) {
    backward_body::<T, VecMath>(op, s, d_y, d_x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
fn forward_avx512<T: Real>(op: Unary<T>, x: &[T], y: &mut [T]) {
    forward_body::<T, VecMath>(op, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
fn backward_avx512<T: Real>(op: Unary<T>, s: &[T], d_y: &[T], d_x: &mut [T]) {
    backward_body::<T, VecMath>(op, s, d_y, d_x)
}

/// `y[i] = f(x[i])`, dispatched once on [`Arch::get`].
///
/// # Panics
/// If `x` and `y` differ in length.
///
/// # Example
/// ```
/// use backprop::kernels::activation::{backward, forward, Unary};
/// let x = [-1.0f32, 0.0, 2.0];
/// let mut y = [0.0; 3];
/// forward(Unary::Sigmoid, &x, &mut y);
/// assert_eq!(y[1], 0.5);
/// // Sigmoid saves its output: d_x = d_y·y(1 − y).
/// let mut d_x = [0.0; 3];
/// backward(Unary::Sigmoid, &y, &[1.0, 1.0, 1.0], &mut d_x);
/// assert_eq!(d_x[1], 0.25);
/// ```
pub fn forward<T: Real>(op: Unary<T>, x: &[T], y: &mut [T]) {
    // SAFETY: MaybeUninit<T> has T's layout, and forward_blocks writes only initialised
    // values (and with `zero: false` reads none of the slots before writing them).
    let y = unsafe { &mut *(y as *mut [T] as *mut [MaybeUninit<T>]) };
    forward_blocks(op, x, y, false)
}

/// [`forward`] into uninitialised memory (what `backprop::ops` allocates for a result):
/// each block is zeroed just before the kernel overwrites it (in cache, on the thread
/// that computes it), so the result costs no separate zero pass. The values are
/// `forward`'s, element for element.
///
/// # Panics
/// If `x` and `y` differ in length.
pub(crate) fn forward_uninit<T: Real>(op: Unary<T>, x: &[T], y: &mut [MaybeUninit<T>]) {
    forward_blocks(op, x, y, true)
}

/// The split behind [`forward`] and [`forward_uninit`]: blocks of [`BLOCK`] elements,
/// on rayon's threads from [`Unary::parallel_min`] elements up (elements are
/// independent, so the values do not depend on the split); `zero` writes 0 over a block
/// before the kernel (for uninitialised memory).
fn forward_blocks<T: Real>(op: Unary<T>, x: &[T], y: &mut [MaybeUninit<T>], zero: bool) {
    assert_eq!(
        x.len(),
        y.len(),
        "{op:?} forward: x has {} elements but y has {}",
        x.len(),
        y.len()
    );
    let run = |xb: &[T], yb: &mut [MaybeUninit<T>]| forward_serial(op, xb, init(yb, zero));
    if x.len() >= op.parallel_min() && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        x.par_chunks(BLOCK)
            .zip(y.par_chunks_mut(BLOCK))
            .for_each(|(xb, yb)| run(xb, yb));
    } else {
        x.chunks(BLOCK)
            .zip(y.chunks_mut(BLOCK))
            .for_each(|(xb, yb)| run(xb, yb));
    }
}

/// `d_x[i] = d_y[i]·f′(saved[i])` where `saved` is x or y as [`Unary::saves`] says;
/// split as [`forward`].
///
/// # Panics
/// If the three slices differ in length.
pub fn backward<T: Real>(op: Unary<T>, saved: &[T], d_y: &[T], d_x: &mut [T]) {
    // SAFETY: as in `forward`.
    let d_x = unsafe { &mut *(d_x as *mut [T] as *mut [MaybeUninit<T>]) };
    backward_blocks(op, saved, d_y, d_x, false)
}

/// [`backward`] into uninitialised memory, as [`forward_uninit`].
///
/// # Panics
/// If the three slices differ in length.
pub(crate) fn backward_uninit<T: Real>(
    op: Unary<T>,
    saved: &[T],
    d_y: &[T],
    d_x: &mut [MaybeUninit<T>],
) {
    backward_blocks(op, saved, d_y, d_x, true)
}

/// The split behind [`backward`] and [`backward_uninit`], as [`forward_blocks`].
fn backward_blocks<T: Real>(
    op: Unary<T>,
    saved: &[T],
    d_y: &[T],
    d_x: &mut [MaybeUninit<T>],
    zero: bool,
) {
    assert!(
        saved.len() == d_y.len() && d_y.len() == d_x.len(),
        "{op:?} backward: saved has {} elements, d_y {}, d_x {}",
        saved.len(),
        d_y.len(),
        d_x.len()
    );
    let run = |s: &[T], g: &[T], o: &mut [MaybeUninit<T>]| backward_serial(op, s, g, init(o, zero));
    if d_y.len() >= op.parallel_min() && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        saved
            .par_chunks(BLOCK)
            .zip(d_y.par_chunks(BLOCK))
            .zip(d_x.par_chunks_mut(BLOCK))
            .for_each(|((s, g), o)| run(s, g, o));
    } else {
        saved
            .chunks(BLOCK)
            .zip(d_y.chunks(BLOCK))
            .zip(d_x.chunks_mut(BLOCK))
            .for_each(|((s, g), o)| run(s, g, o));
    }
}

/// A block as initialised memory: zeroed first when `zero` (fresh memory), else taken
/// as it is (the caller's own initialised slice, seen as `MaybeUninit`).
fn init<T: Real>(block: &mut [MaybeUninit<T>], zero: bool) -> &mut [T] {
    if zero {
        return super::zeroed(block);
    }
    // SAFETY: with `zero` false the block is part of a `&mut [T]` the public entry points
    // were given, so every element is initialised.
    unsafe { std::slice::from_raw_parts_mut(block.as_mut_ptr().cast::<T>(), block.len()) }
}

/// Elements per block of the activation kernels' split: 16 KiB of f32, so a block
/// zeroed for [`forward_uninit`] is still in L1 when the kernel overwrites it.
const BLOCK: usize = 4096;

fn forward_serial<T: Real>(op: Unary<T>, x: &[T], y: &mut [T]) {
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
        Arch::Avx2Fma if super::has_avx512() => unsafe { forward_avx512(op, x, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
        Arch::Avx2Fma => unsafe { forward_avx2(op, x, y) },
        _ => forward_body::<T, StdMath>(op, x, y),
    }
}

fn backward_serial<T: Real>(op: Unary<T>, saved: &[T], d_y: &[T], d_x: &mut [T]) {
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
        Arch::Avx2Fma if super::has_avx512() => unsafe { backward_avx512(op, saved, d_y, d_x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
        Arch::Avx2Fma => unsafe { backward_avx2(op, saved, d_y, d_x) },
        _ => backward_body::<T, StdMath>(op, saved, d_y, d_x),
    }
}
