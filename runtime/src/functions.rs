//! Differentiable scalar functions users call inside `#[grad]` functions: the
//! activations of the lesson's table.
//!
//! Each is an ordinary function (call it anywhere) plus a companion of the same name
//! in the type namespace that carries its rule, declared exactly the way a user's own
//! rule or another `#[grad]` function is: `name::forward(args) -> (value, tape)` where
//! the tape's backward pass returns one cotangent per argument. That is how
//! `#[grad]` differentiates a call `sigmoid(z)`: it calls `sigmoid::forward(z)`, which
//! rustc resolves through whatever `use` brought `sigmoid` into scope.

use num_traits::Float;

/// Declares a function's rule companion: a type-namespace item with the function's
/// name whose `forward` returns the value and a [`crate::Tape`].
macro_rules! rule_companion {
    ($name:ident ( $($arg:ident),* ) -> $y:ident => |$d:ident| ( $($vjp:expr),* ) ) => {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        pub struct $name {}

        impl $name {
            /// Forward pass: the value and the tape of the rule's pullback (which
            /// captures exactly the saved values its cotangent expressions read).
            #[inline(always)]
            #[allow(clippy::type_complexity, clippy::unused_unit)]
            pub fn forward<T: Float>($($arg: T),*) -> (T, crate::Tape<impl FnOnce(T) -> ($(rule_companion!(@ty $arg T)),*,)>) {
                let $y = Self::value($($arg),*);
                ($y, crate::Tape::new(move |$d: T| ($($vjp),*,)))
            }

            /// Forward mode: the value and `Σ ∂y/∂argₖ · tₖ` over the arguments given a
            /// tangent (`None`: a constant). A scalar rule's Jacobian is one number per
            /// argument, its pullback at `d = 1`; a zero tangent contributes nothing
            /// even where that number is infinite (the strong zero of the rules).
            #[inline(always)]
            pub fn jvp<T: Float>($($arg: T,)* tangents: ($(rule_companion!(@slot $arg T),)*)) -> (T, T) {
                let $y = Self::value($($arg),*);
                let $d = T::one();
                let partials = [$($vjp),*];
                let ($($arg,)*) = tangents;
                let mut tangent = T::zero();
                for (p, t) in partials.into_iter().zip([$($arg),*]) {
                    if let Some(t) = t.filter(|t| *t != T::zero()) {
                        tangent = tangent + p * t;
                    }
                }
                ($y, tangent)
            }
        }
    };
    // A one-argument function with its second derivative `f''`, an expression of `x`
    // and `y`: also its `tangent_forward` (how a tangent program calls it, `f_hvp`).
    ($name:ident ( $x:ident ) -> $y:ident => |$d:ident| ( $vjp:expr ) ; second $second:expr) => {
        rule_companion!($name ( $x ) -> $y => |$d| ( $vjp ));

        impl $name {
            /// The tangent program: `t_y = f'(x)·t_x` and its tape, which pulls a
            /// cotangent back to `x` (`f''(x)·t_x`) and to `t_x` (`f'(x)`).
            #[inline(always)]
            #[allow(clippy::type_complexity, unused_variables)]
            pub fn tangent_forward<T: Float>($x: T, t: impl crate::private::jvp::ScalarSlot<T>) -> (T, crate::Tape<impl FnOnce(T) -> (T, T)>) {
                let $y = Self::value($x);
                let $d = T::one();
                let first: T = $vjp;
                let second: T = $second;
                crate::private::jvp::tangent_of_unary(first, second, t.tangent())
            }

            /// `tangent_forward` again (its arguments are floats: nothing to copy).
            #[inline(always)]
            #[allow(clippy::type_complexity)]
            pub fn tangent_rebuild<T: Float>($x: T, t: impl crate::private::jvp::ScalarSlot<T>, _value: T) -> (T, crate::Tape<impl FnOnce(T) -> (T, T)>) {
                Self::tangent_forward($x, t)
            }
        }
    };
    (@ty $arg:ident $t:ty) => { $t };
    (@slot $arg:ident $t:ty) => { Option<$t> };
}

/// The logistic sigmoid σ(x) = 1/(1 + e⁻ˣ), computed without overflow for large |x|.
///
/// Derivative σ'(x) = σ(x)(1 − σ(x)) (the lesson's local Jacobian table). The rule
/// saves the output y.
///
/// ```
/// assert_eq!(backprop::sigmoid(0.0_f64), 0.5);
/// assert!(backprop::sigmoid(-1000.0_f64) >= 0.0);
/// ```
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        (T::one() + (-x).exp()).recip()
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// The rectified linear unit max(x, 0). NaN stays NaN (never hidden as 0).
///
/// Derivative 1 for x > 0, 0 for x < 0, and 0 at the kink x = 0 (the minimum-norm
/// subgradient; PyTorch and JAX agree). The rule saves the output y (y > 0 ⇔ x > 0).
///
/// ```
/// assert_eq!(backprop::relu(-2.0_f32), 0.0);
/// assert_eq!(backprop::relu(3.0_f64), 3.0);
/// ```
#[inline]
pub fn relu<T: Float>(x: T) -> T {
    if x > T::zero() || x.is_nan() {
        x
    } else {
        T::zero()
    }
}

/// Leaky ReLU: x for x > 0, `slope · x` otherwise (Maas et al. 2013; PyTorch's default
/// slope is 0.01).
///
/// Derivative 1 for x > 0 and `slope` for x ≤ 0 (at the kink, `slope` is the
/// minimum-norm element of [slope, 1] for 0 ≤ slope ≤ 1). ∂/∂slope = min(x, 0).
/// At x = −∞ the value is the limit: −∞·slope, and 0 for slope = 0.
///
/// ```
/// assert_eq!(backprop::leaky_relu(-2.0_f64, 0.1), -0.2);
/// ```
#[inline]
pub fn leaky_relu<T: Float>(x: T, slope: T) -> T {
    if x > T::zero() {
        x
    } else if slope == T::zero() && x.is_infinite() {
        // 0·(−∞): the limit of 0·x as x → −∞ is 0 (the slope-0 function is relu).
        T::zero()
    } else {
        slope * x
    }
}

/// Softplus ln(1 + eˣ), computed stably as max(x, 0) + ln(1 + e^(−|x|)).
///
/// Derivative σ(x) (Dugas et al. 2001). The rule saves x.
///
/// ```
/// assert!((backprop::softplus(0.0_f64) - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(backprop::softplus(1000.0_f64), 1000.0);
/// ```
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// GELU in its tanh form (Hendrycks & Gimpel 2016, eq. in §2; GPT-2's choice):
/// ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
///
/// With u = √(2/π)(x + 0.044715x³) and t = tanh u, the derivative is
/// ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²). √(2/π) comes from matching the
/// slope of the Gaussian CDF Φ at 0 (Φ'(0) = 1/√(2π), and tanh'(0) = 1, so the
/// argument is scaled by 2·1/√(2π) = √(2/π)). The rule saves x.
///
/// At ±∞ the value and the derivative are their limits: gelu(−∞) = 0, gelu′(−∞) = 0,
/// gelu(+∞) = +∞, gelu′(+∞) = 1 (the products x·(1 + t) and x·(1 − t²) are 0·∞ there,
/// and are taken as 0 wherever the saturated factor is exactly 0).
///
/// Computed as `x·σ(2u)` (equal to `½x(1 + tanh u)`, without its cancellation for
/// negative x) by the same formula as `backprop::ops::gelu`'s kernels
/// (`kernels::activation::gelu_value`/`gelu_local`), so the scalar function, its rule
/// and the array op agree.
///
/// ```
/// assert_eq!(backprop::gelu(0.0_f64), 0.0);
/// assert_eq!(backprop::gelu(f64::NEG_INFINITY), 0.0);
/// assert!((backprop::gelu(1.0_f64) - 0.8411919906082768).abs() < 1e-12);
/// ```
#[inline]
pub fn gelu<T: Float>(x: T) -> T {
    crate::kernels::activation::gelu_value(x, sigmoid)
}

/// SiLU (swish) x·σ(x) (Elfwing et al. 2018; Ramachandran et al. 2017).
///
/// Derivative σ(x)(1 + x(1 − σ(x))). The rule saves x. At ±∞ both are their limits:
/// silu(−∞) = 0, silu′(−∞) = 0, silu(+∞) = +∞, silu′(+∞) = 1.
///
/// ```
/// assert_eq!(backprop::silu(0.0_f64), 0.0);
/// assert_eq!(backprop::silu(f64::NEG_INFINITY), 0.0);
/// ```
#[inline]
pub fn silu<T: Float>(x: T) -> T {
    crate::kernels::activation::silu_value(x, sigmoid)
}

/// log Σᵢ exp(xᵢ) of a slice, shifted by its maximum m (m + log Σᵢ exp(xᵢ − m)) so it
/// neither overflows nor underflows: the normaliser of a softmax, a mixture's
/// log-likelihood.
///
/// - Input: `x`, any length; `f32` or `f64`.
/// - Value: −∞ for an empty slice or one of only −∞ (the log of an empty sum), +∞ if
///   any element is +∞, NaN if any is NaN.
/// - Rule (in `#[grad]` code): ∂y/∂xᵢ = exp(xᵢ − y) = softmax(x)ᵢ, from the input and
///   the value alone, so a call inside a loop on a buffer the loop overwrites keeps a
///   copy of the input and the value, and its reverse pass computes nothing forward
///   again (`logsumexp::rebuild`). A zero cotangent gives a zero gradient (strong zero).
///   The shift and the derivative: Bishop, *Pattern Recognition and Machine Learning*
///   (2006), eq. 4.104 for the softmax as the gradient of log Σ exp.
///
/// ```
/// use backprop::{grad, logsumexp};
///
/// #[grad]
/// fn lse(v: &[f64]) -> f64 {
///     logsumexp(v)
/// }
///
/// let (y, g) = lse_grad(&[0.0, 0.0]);
/// assert!((y - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(g.v, vec![0.5, 0.5]);
/// assert_eq!(logsumexp(&[1000.0, 1000.0]), 1000.0 + 2f64.ln());
/// ```
pub fn logsumexp<T: Float>(x: &[T]) -> T {
    let (m, s) = shifted_sum(x);
    if m.is_infinite() {
        // −∞: empty, or every term is 0; +∞: one term is infinite (unless one is NaN).
        return if x.iter().any(|v| v.is_nan()) {
            T::nan()
        } else {
            m
        };
    }
    m + s.ln()
}

/// `(m, Σᵢ exp(xᵢ − m))` with m = max x: logsumexp's shift and sum (the sum is only
/// meaningful for a finite m). `max` passes over NaN; a NaN term makes the sum NaN.
fn shifted_sum<T: Float>(x: &[T]) -> (T, T) {
    let m = x.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
    if !m.is_finite() {
        return (m, T::zero());
    }
    (m, x.iter().fold(T::zero(), |s, &v| s + (v - m).exp()))
}

/// Pullbacks of the functions above, one per input (the same naming as
/// [`crate::rules::scalar`]).
pub mod vjp {
    use super::*;
    use crate::rules::scalar::strong_mul;

    /// ∂ logsumexp(x)/∂xᵢ · d = exp(xᵢ − y) · d: the softmax of `x` times the
    /// cotangent, from the input and the value `y`. Zero for a zero cotangent.
    ///
    /// `y` is rounded: `exp(xᵢ − y)` is off by a relative `|y|·ε/2` at most (ε the
    /// type's epsilon). That is used only while it is at most 2⁻⁴⁶ (|y| ≤ 128 in f64);
    /// beyond it (and always in f32) the sum is formed again, shifted by the maximum
    /// m: `exp(xᵢ − m) / Σⱼ exp(xⱼ − m)`, exact to a few ulps at any magnitude (at
    /// `[1e16, 1e16]` the rounded `y` would give `[1, 1]`, not `[½, ½]`).
    pub fn logsumexp_vjp<T: Float>(x: &[T], y: T, d: T) -> Vec<T> {
        if d == T::zero() {
            return vec![T::zero(); x.len()];
        }
        let tolerance = T::from(2f64.powi(-46)).unwrap_or_else(T::epsilon);
        if y.is_finite() && y.abs() * T::epsilon() <= tolerance {
            return x.iter().map(|&v| d * (v - y).exp()).collect();
        }
        let (m, s) = super::shifted_sum(x);
        if !m.is_finite() || !y.is_finite() {
            // ±∞ or NaN: the same expression, whose NaNs and zeros are the answer.
            return x.iter().map(|&v| d * (v - y).exp()).collect();
        }
        x.iter().map(|&v| d * ((v - m).exp() / s)).collect()
    }

    /// σ'(x) = y(1 − y) from the saved output.
    #[inline(always)]
    pub fn sigmoid_vjp<T: Float>(y: T, d: T) -> T {
        strong_mul(d, y * (T::one() - y))
    }

    /// 1 where y > 0, else 0 (0 at the kink, and at a NaN input, whose value is NaN:
    /// PyTorch's and JAX's `d·1[y > 0]`, which the array op's one-byte mask keeps too).
    #[inline(always)]
    pub fn relu_vjp<T: Float>(y: T, d: T) -> T {
        if y > T::zero() { d } else { T::zero() }
    }

    /// 1 where x > 0, else `slope`; NaN where x is.
    #[inline(always)]
    pub fn leaky_relu_vjp_x<T: Float>(x: T, slope: T, d: T) -> T {
        if x > T::zero() {
            d
        } else if x.is_nan() {
            x
        } else {
            strong_mul(d, slope)
        }
    }

    /// ∂/∂slope = x where x ≤ 0, else 0.
    #[inline(always)]
    pub fn leaky_relu_vjp_slope<T: Float>(x: T, d: T) -> T {
        if x > T::zero() {
            T::zero()
        } else {
            strong_mul(d, x)
        }
    }

    /// softplus'(x) = σ(x).
    #[inline(always)]
    pub fn softplus_vjp<T: Float>(x: T, d: T) -> T {
        strong_mul(d, sigmoid(x))
    }

    /// See [`gelu`] for the derivation.
    #[inline(always)]
    pub fn gelu_vjp<T: Float>(x: T, d: T) -> T {
        strong_mul(d, crate::kernels::activation::gelu_local(x, sigmoid))
    }

    /// silu'(x) = σ(x)(1 + x(1 − σ(x))); σ(x) where σ(1 − σ) is exactly 0 (σ saturated,
    /// and at ±∞, where x·(1 − σ) would be ∞·0): 0 at −∞, 1 at +∞.
    #[inline(always)]
    pub fn silu_vjp<T: Float>(x: T, d: T) -> T {
        strong_mul(d, crate::kernels::activation::silu_local(x, sigmoid))
    }
}

/// The error function `erf x = (2/√π) ∫₀ˣ e^(−t²) dt`, for `f32`, `f64` or any
/// `T: Float` (evaluated in f64 by [`crate::kernels::erf::erf`], fdlibm's algorithm,
/// within about one ulp, then rounded to `T`).
///
/// Differentiable inside `#[grad]`: `∂ erf x/∂x = (2/√π)·e^(−x²)` (DLMF 7.10.1), the
/// rule `erf_vjp` of the rule table. On arrays and in generic code, use the method
/// form of [`Erf`] (`a.erf()`), which has the same rule elementwise.
///
/// ```
/// assert!((backprop::erf(0.5_f64) - 0.520_499_877_813_046_5).abs() < 1e-15);
/// assert_eq!(backprop::erf(0.0_f32), 0.0);
/// ```
#[inline]
pub fn erf<T: Float>(x: T) -> T {
    x.to_f64().map_or_else(T::nan, |v| {
        T::from(crate::kernels::erf::erf(v)).unwrap_or_else(T::nan)
    })
}

/// The complementary error function `erfc x = 1 − erf x`, computed without the
/// cancellation for large `x` (see [`crate::kernels::erf::erfc`]).
///
/// Differentiable inside `#[grad]`: `∂ erfc x/∂x = −(2/√π)·e^(−x²)` (DLMF 7.10.1), the
/// rule `erfc_vjp` of the rule table.
///
/// ```
/// assert!((backprop::erfc(3.0_f64) - 2.209_049_699_858_544e-5).abs() < 1e-19);
/// ```
#[inline]
pub fn erfc<T: Float>(x: T) -> T {
    x.to_f64().map_or_else(T::nan, |v| {
        T::from(crate::kernels::erf::erfc(v)).unwrap_or_else(T::nan)
    })
}

/// `erf` and `erfc` as methods: on `f32`/`f64` (and so in generic code bounded by
/// [`crate::Real`]) and elementwise on ndarray arrays (`a.erf()` returns a new array
/// of the same shape).
///
/// Inside `#[grad]`, `x.erf()` and `x.erfc()` have the rule table's rules on scalars and
/// elementwise on arrays (`a.erf()`, `a.mapv(|v| v.erf())`). On a concrete `f64` or
/// `f32`, prefer the functions [`erf`]/[`erfc`]: the standard library has an unstable
/// `f64::erf`, so rustc warns (`unstable_name_collisions`) that the method may change
/// meaning once that is stabilised (to the same function).
///
/// ```
/// use backprop::Erf;
/// use ndarray::array;
/// let a = array![-1.0_f64, 0.0, 2.0];
/// let y = a.erf();
/// assert_eq!(y[1], 0.0);
/// assert!((y[0] + 0.842_700_792_949_714_9).abs() < 1e-15);
/// fn generic<T: backprop::Real>(x: T) -> T {
///     x.erfc()
/// }
/// assert_eq!(generic(0.0_f32), 1.0);
/// ```
pub trait Erf {
    /// The result: `Self` for a float, an owned array for an array.
    type Output;
    /// The error function, [`erf`].
    fn erf(self) -> Self::Output;
    /// The complementary error function, [`erfc`].
    fn erfc(self) -> Self::Output;
}

macro_rules! erf_for_float {
    ($($t:ty),*) => {$(
        impl Erf for $t {
            type Output = $t;
            #[inline]
            fn erf(self) -> $t {
                erf(self)
            }
            #[inline]
            fn erfc(self) -> $t {
                erfc(self)
            }
        }
    )*};
}
erf_for_float!(f32, f64);

impl<A, S, D> Erf for &ndarray::ArrayBase<S, D>
where
    A: Float,
    S: ndarray::Data<Elem = A>,
    D: ndarray::Dimension,
{
    type Output = ndarray::Array<A, D>;
    fn erf(self) -> Self::Output {
        self.mapv(erf)
    }
    fn erfc(self) -> Self::Output {
        self.mapv(erfc)
    }
}

/// The rule companions. Each `value` is the plain function; `forward` pairs it with
/// the pullback capturing only what that pullback reads.
pub mod companions {
    use super::vjp::*;
    use num_traits::Float;

    use crate::kernels::activation::{gelu_second, silu_second};
    use crate::rules::scalar::strong_mul;

    // Each with its second derivative (`tests/runtime/second_order.rs` checks them
    // against differences of the first).
    rule_companion!(sigmoid(x) -> y => |d| (sigmoid_vjp(y, d)); second y * (T::one() - y) * (T::one() - (y + y)));
    rule_companion!(relu(x) -> y => |d| (relu_vjp(y, d)); second T::zero());
    rule_companion!(leaky_relu(x, slope) -> y => |d| (leaky_relu_vjp_x(x, slope, d), leaky_relu_vjp_slope(x, d)));
    rule_companion!(softplus(x) -> y => |d| (softplus_vjp(x, d)); second {
        let s = super::sigmoid(x);
        s * (T::one() - s)
    });
    rule_companion!(gelu(x) -> y => |d| (gelu_vjp(x, d)); second gelu_second(x, super::sigmoid));
    rule_companion!(silu(x) -> y => |d| (silu_vjp(x, d)); second silu_second(x, super::sigmoid));
    // The rule table's rules (`derive/src/rule_table.in`): the function spelling of the
    // methods `x.erf()`, `x.erfc()`; their second derivatives are the table's.
    rule_companion!(erf(x) -> y => |d| (crate::rules::scalar::erf_vjp(x, d)); second crate::rules::second::erf_vjp::partials(x)[0]);
    rule_companion!(erfc(x) -> y => |d| (crate::rules::scalar::erfc_vjp(x, d)); second crate::rules::second::erfc_vjp::partials(x)[0]);

    impl leaky_relu {
        /// The tangent program (see the one-argument companions): leaky ReLU is
        /// piecewise linear in `x` and linear in `slope`, so its only second derivative
        /// is the mixed one, `∂²y/∂x∂slope` = 1 where `x ≤ 0`.
        #[inline(always)]
        #[allow(clippy::type_complexity)]
        pub fn tangent_forward<T: Float>(
            x: T,
            slope: T,
            t_x: impl crate::private::jvp::ScalarSlot<T>,
            t_slope: impl crate::private::jvp::ScalarSlot<T>,
        ) -> (T, crate::Tape<impl FnOnce(T) -> (T, T, T, T)>) {
            let (t_x, t_slope) = (t_x.tangent(), t_slope.tangent());
            let (j_x, j_slope) = (
                leaky_relu_vjp_x(x, slope, T::one()),
                leaky_relu_vjp_slope(x, T::one()),
            );
            let mixed = if x > T::zero() { T::zero() } else { T::one() };
            let t_y = strong_mul(t_x, j_x) + strong_mul(t_slope, j_slope);
            let tape = crate::Tape::new(move |dd: T| {
                (
                    strong_mul(strong_mul(dd, t_slope), mixed),
                    strong_mul(strong_mul(dd, t_x), mixed),
                    strong_mul(dd, j_x),
                    strong_mul(dd, j_slope),
                )
            });
            (t_y, tape)
        }

        /// `tangent_forward` again.
        #[inline(always)]
        #[allow(clippy::type_complexity)]
        pub fn tangent_rebuild<T: Float>(
            x: T,
            slope: T,
            t_x: impl crate::private::jvp::ScalarSlot<T>,
            t_slope: impl crate::private::jvp::ScalarSlot<T>,
            _value: T,
        ) -> (T, crate::Tape<impl FnOnce(T) -> (T, T, T, T)>) {
            Self::tangent_forward(x, slope, t_x, t_slope)
        }
    }

    impl sigmoid {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::sigmoid(x)
        }
    }
    impl relu {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::relu(x)
        }
    }
    impl leaky_relu {
        #[inline(always)]
        fn value<T: Float>(x: T, slope: T) -> T {
            super::leaky_relu(x, slope)
        }
    }
    impl softplus {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::softplus(x)
        }
    }
    impl gelu {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::gelu(x)
        }
    }
    impl silu {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::silu(x)
        }
    }
    impl erf {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::erf(x)
        }
    }
    impl erfc {
        #[inline(always)]
        fn value<T: Float>(x: T) -> T {
            super::erfc(x)
        }
    }

    /// The rule of [`super::logsumexp`] (a slice argument: its cotangent is a `Vec`).
    #[doc(hidden)]
    #[allow(non_camel_case_types)]
    pub struct logsumexp {}

    impl logsumexp {
        /// Forward pass: the value, and a tape that borrows `x` and keeps the value.
        #[inline]
        pub fn forward<T: Float>(x: &[T]) -> (T, crate::Tape<impl FnOnce(T) -> (Vec<T>,) + '_>) {
            let y = super::logsumexp(x);
            Self::rebuild(x, y)
        }

        /// Forward mode: the value and `Σ softmax(x)ᵢ tᵢ` (`None`: a constant `x`).
        ///
        /// # Panics
        /// If the tangent's length differs from `x`'s.
        #[inline]
        pub fn jvp<T: Float>(x: &[T], tangents: (Option<&[T]>,)) -> (T, T) {
            let y = super::logsumexp(x);
            match tangents.0 {
                Some(t) => (
                    y,
                    crate::private::jvp::dot_buffer(&logsumexp_vjp(x, y, T::one()), t),
                ),
                None => (y, T::zero()),
            }
        }

        /// The tangent program (`f_hvp`): with `p = softmax(x)`, `t_y = p·t`, and its
        /// tape pulls `dd` back to `x` as `dd·(p ⊙ t − p (p·t))` (the Hessian of
        /// logsumexp is `diag(p) − ppᵀ`) and to `t` as `dd·p`.
        ///
        /// # Panics
        /// If the tangent's length differs from `x`'s.
        #[inline]
        #[allow(clippy::type_complexity)]
        pub fn tangent_forward<T: Float>(
            x: &[T],
            t: &[T],
        ) -> (T, crate::Tape<impl FnOnce(T) -> (Vec<T>, Vec<T>)>) {
            assert_eq!(
                x.len(),
                t.len(),
                "logsumexp: the tangent has {} elements, x has {}",
                t.len(),
                x.len()
            );
            let y = super::logsumexp(x);
            let p = logsumexp_vjp(x, y, T::one());
            let pt: Vec<T> = p.iter().zip(t).map(|(&p, &t)| p * t).collect();
            let s = pt.iter().fold(T::zero(), |a, &b| a + b);
            let tape = crate::Tape::new(move |dd: T| {
                let d_x = pt
                    .iter()
                    .zip(&p)
                    .map(|(&pt, &p)| dd * (pt - p * s))
                    .collect();
                let d_t = p.iter().map(|&p| dd * p).collect();
                (d_x, d_t)
            });
            (s, tape)
        }

        /// `tangent_forward` again, from copies of its arguments.
        #[inline]
        #[allow(clippy::type_complexity)]
        pub fn tangent_rebuild<T: Float>(
            x: &[T],
            t: &[T],
            _value: T,
        ) -> (T, crate::Tape<impl FnOnce(T) -> (Vec<T>, Vec<T>)>) {
            Self::tangent_forward(x, t)
        }

        /// The tape of a call made before, from (a copy of) its input and its value:
        /// nothing is computed until the reverse pass.
        #[inline]
        pub fn rebuild<T: Float>(
            x: &[T],
            y: T,
        ) -> (T, crate::Tape<impl FnOnce(T) -> (Vec<T>,) + '_>) {
            (y, crate::Tape::new(move |d: T| (logsumexp_vjp(x, y, d),)))
        }
    }
}
