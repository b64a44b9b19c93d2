//! Every scalar rule, gradchecked in f64 (central differences) at random points of its
//! domain, its f32 instantiation compared with the f64 gradient, and each kink
//! checked against the documented convention. Mirrors the rule table
//! (`derive/src/rule_table.in`: `every_table_entry_is_gradchecked_here` fails when an
//! entry has no check) and `runtime/src/functions.rs`.

use backprop::{Erf, erf, erfc, gelu, grad, gradcheck, leaky_relu, relu, sigmoid, silu, softplus};
use ndarray::{Array1, Array2, array};
use num_traits::Float;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const POINTS: usize = 24;

/// Checks a one-argument generic `#[grad]` function at random points of `domain`:
/// f64 against central differences, f32 against f64.
macro_rules! check_unary {
    ($f:ident, $domain:expr) => {{
        let mut rng = StdRng::seed_from_u64(0x5eed ^ stringify!($f).len() as u64);
        for _ in 0..POINTS {
            let x: f64 = rng.random_range($domain);
            let report = gradcheck!($f(x = x));
            assert!(report.passed(), "{} at x = {x}:\n{report}", stringify!($f));
            let (_, g64) = $f::grad(x);
            let (v32, g32) = $f::grad(x as f32);
            assert!(
                (f64::from(v32) - $f(x)).abs() <= 1e-5 * $f(x).abs().max(1.0),
                "{} f32 value at {x}",
                stringify!($f)
            );
            assert!(
                (f64::from(g32.x) - g64.x).abs() <= 2e-4 * g64.x.abs().max(1.0),
                "{} f32 gradient at {x}: {} vs {}",
                stringify!($f),
                g32.x,
                g64.x
            );
        }
    }};
}

/// The same for two arguments (a, b).
macro_rules! check_binary {
    ($f:ident, $da:expr, $db:expr) => {{
        let mut rng = StdRng::seed_from_u64(0xb1 ^ stringify!($f).len() as u64);
        for _ in 0..POINTS {
            let a: f64 = rng.random_range($da);
            let b: f64 = rng.random_range($db);
            let report = gradcheck!($f(a = a, b = b));
            assert!(
                report.passed(),
                "{} at ({a}, {b}):\n{report}",
                stringify!($f)
            );
            let (_, g64) = $f::grad(a, b);
            let (_, g32) = $f::grad(a as f32, b as f32);
            for (g32, g64, which) in [(g32.a, g64.a, "a"), (g32.b, g64.b, "b")] {
                assert!(
                    (f64::from(g32) - g64).abs() <= 2e-4 * g64.abs().max(1.0),
                    "{} f32 d/d{which} at ({a}, {b}): {g32} vs {g64}",
                    stringify!($f)
                );
            }
        }
    }};
}

macro_rules! unary_fns {
    ($($name:ident => |$x:ident| $body:expr;)*) => {$(
        #[grad]
        fn $name<T: Float>($x: T) -> T {
            $body
        }
    )*};
}

macro_rules! binary_fns {
    ($($name:ident => |$a:ident, $b:ident| $body:expr;)*) => {$(
        #[grad]
        fn $name<T: Float>($a: T, $b: T) -> T {
            $body
        }
    )*};
}

unary_fns! {
    r_exp => |x| x.exp();
    r_exp2 => |x| x.exp2();
    r_exp_m1 => |x| x.exp_m1();
    r_ln => |x| x.ln();
    r_ln_1p => |x| x.ln_1p();
    r_log2 => |x| x.log2();
    r_log10 => |x| x.log10();
    r_sqrt => |x| x.sqrt();
    r_cbrt => |x| x.cbrt();
    r_powi3 => |x| x.powi(3);
    r_powi_neg2 => |x| x.powi(-2);
    r_recip => |x| x.recip();
    r_abs => |x| x.abs();
    r_sin => |x| x.sin();
    r_cos => |x| x.cos();
    r_tan => |x| x.tan();
    r_asin => |x| x.asin();
    r_acos => |x| x.acos();
    r_atan => |x| x.atan();
    r_sinh => |x| x.sinh();
    r_cosh => |x| x.cosh();
    r_tanh => |x| x.tanh();
    r_fract => |x| x.fract();
    r_neg => |x| -x;
    r_sigmoid => |x| sigmoid(x);
    r_relu => |x| relu(x);
    r_softplus => |x| softplus(x);
    r_gelu => |x| gelu(x);
    r_silu => |x| silu(x);
    r_leaky_relu => |x| leaky_relu(x, T::from(0.1).unwrap());
    r_erf => |x| erf(x);
    r_erfc => |x| erfc(x);
}

/// The method spelling of `erf`/`erfc` (`backprop::Erf`; `backprop::Real` includes it).
#[grad]
fn r_erf_method<T: backprop::Real>(x: T) -> T {
    x.erf() * T::from(0.5).unwrap() + x.erfc()
}

binary_fns! {
    r_add => |a, b| a + b;
    r_sub => |a, b| a - b;
    r_mul => |a, b| a * b;
    r_div => |a, b| a / b;
    r_log => |a, b| a.log(b);
    r_powf => |a, b| a.powf(b);
    r_max => |a, b| a.max(b);
    r_min => |a, b| a.min(b);
    r_hypot => |a, b| a.hypot(b);
    r_atan2 => |a, b| a.atan2(b);
    r_mul_add => |a, b| a.mul_add(b, a);
    r_clamp_lo => |a, b| a.clamp(b, b + T::one());
    r_leaky_slope => |a, b| leaky_relu(a, b);
}

#[test]
fn unary_rules_match_central_differences() {
    check_unary!(r_exp, -3.0..3.0);
    check_unary!(r_exp2, -3.0..3.0);
    check_unary!(r_exp_m1, -3.0..3.0);
    check_unary!(r_ln, 0.1..5.0);
    check_unary!(r_ln_1p, -0.9..5.0);
    check_unary!(r_log2, 0.1..5.0);
    check_unary!(r_log10, 0.1..5.0);
    check_unary!(r_sqrt, 0.05..5.0);
    check_unary!(r_cbrt, 0.05..5.0);
    check_unary!(r_powi3, -2.0..2.0);
    check_unary!(r_powi_neg2, 0.3..3.0);
    check_unary!(r_recip, 0.2..3.0);
    check_unary!(r_sin, -3.0..3.0);
    check_unary!(r_cos, -3.0..3.0);
    check_unary!(r_tan, -1.2..1.2);
    check_unary!(r_asin, -0.9..0.9);
    check_unary!(r_acos, -0.9..0.9);
    check_unary!(r_atan, -3.0..3.0);
    check_unary!(r_sinh, -3.0..3.0);
    check_unary!(r_cosh, -3.0..3.0);
    check_unary!(r_tanh, -3.0..3.0);
    check_unary!(r_neg, -3.0..3.0);
    check_unary!(r_sigmoid, -6.0..6.0);
    check_unary!(r_softplus, -6.0..6.0);
    check_unary!(r_gelu, -4.0..4.0);
    check_unary!(r_silu, -6.0..6.0);
    check_unary!(r_erf, -3.0..3.0);
    check_unary!(r_erfc, -3.0..3.0);
    check_unary!(r_erf_method, -3.0..3.0);
}

#[test]
fn piecewise_linear_rules_away_from_kinks() {
    check_unary!(r_abs, 0.1..3.0);
    check_unary!(r_abs, -3.0..-0.1);
    check_unary!(r_relu, 0.1..3.0);
    check_unary!(r_relu, -3.0..-0.1);
    check_unary!(r_leaky_relu, -3.0..-0.1);
    check_unary!(r_fract, 0.05..0.95);
    check_unary!(r_fract, 1.05..1.95);
}

#[test]
fn binary_rules_match_central_differences() {
    check_binary!(r_add, -3.0..3.0, -3.0..3.0);
    check_binary!(r_sub, -3.0..3.0, -3.0..3.0);
    check_binary!(r_mul, -3.0..3.0, -3.0..3.0);
    check_binary!(r_div, -3.0..3.0, 0.3..3.0);
    check_binary!(r_log, 0.2..5.0, 1.5..5.0);
    check_binary!(r_powf, 0.2..3.0, -2.0..2.0);
    check_binary!(r_max, -3.0..-0.5, 0.5..3.0);
    check_binary!(r_max, 0.5..3.0, -3.0..-0.5);
    check_binary!(r_min, -3.0..-0.5, 0.5..3.0);
    check_binary!(r_hypot, 0.2..3.0, -3.0..-0.2);
    check_binary!(r_atan2, -3.0..3.0, 0.2..3.0);
    check_binary!(r_mul_add, -3.0..3.0, -3.0..3.0);
    // clamp(a, b, b + 1) with a strictly inside, below, then above.
    check_binary!(r_clamp_lo, 0.2..0.8, -0.1..0.1);
    check_binary!(r_clamp_lo, -3.0..-1.0, -0.5..0.5);
    check_binary!(r_clamp_lo, 2.0..3.0, -0.5..0.5);
    check_binary!(r_leaky_slope, -3.0..-0.1, 0.01..0.5);
}

// ---- conventions at kinks (../shared/cases/README.md) ------------------------------

#[test]
fn kinks_take_the_minimum_norm_subgradient() {
    assert_eq!(r_abs_grad(0.0).1.x, 0.0, "|x| at 0");
    assert_eq!(r_relu_grad(0.0).1.x, 0.0, "relu at 0");
    assert_eq!(
        r_leaky_relu_grad(0.0).1.x,
        0.1,
        "leaky_relu at 0 takes the slope"
    );
    let g = r_max_grad(2.0, 2.0).1;
    assert_eq!((g.a, g.b), (0.5, 0.5), "max tie splits evenly");
    let g = r_min_grad(-1.0, -1.0).1;
    assert_eq!((g.a, g.b), (0.5, 0.5), "min tie splits evenly");
    // clamp(x, lo, lo + 1) at x = lo: 0 for x, and 0 for lo (x is not below it).
    let g = r_clamp_lo_grad(1.0, 1.0).1;
    assert_eq!((g.a, g.b), (0.0, 0.0), "clamp at its lower bound");
    let g = r_hypot_grad(0.0, 0.0).1;
    assert_eq!((g.a, g.b), (0.0, 0.0), "hypot at the origin");
    let g = r_atan2_grad(0.0, 0.0).1;
    assert_eq!((g.a, g.b), (0.0, 0.0), "atan2 at the origin");
    let g = r_powf_grad(0.0, 0.0).1;
    assert_eq!((g.a, g.b), (0.0, 0.0), "powf at 0^0");
    let g = r_powf_grad(0.0, 2.0).1;
    assert_eq!(
        (g.a, g.b),
        (0.0, 0.0),
        "powf at 0^2: d/dx = 2·0 = 0, d/dp = 0 (not 0·ln 0)"
    );
}

#[grad]
fn piecewise_constant<T: Float>(x: T) -> T {
    x.floor() + x.ceil() + x.round() + x.trunc() + x.signum()
}

/// `round_ties_even` (not on `num_traits::Float`) times `x`: the gradient is the rounded
/// value, the product rule with a zero-derivative factor.
#[grad]
fn round_ties_even_times_x(x: f64) -> f64 {
    x.round_ties_even() * x
}

#[test]
fn piecewise_constant_functions_have_derivative_zero() {
    for x in [-2.5, -1.0, -0.3, 0.0, 0.7, 1.0, 3.5] {
        assert_eq!(piecewise_constant_grad(x).1.x, 0.0, "at {x}");
    }
    for (x, want) in [(2.5, 2.0), (3.5, 4.0), (-0.5, -0.0), (1.2, 1.0)] {
        assert_eq!(round_ties_even_times_x_grad(x).1.x, want, "at {x}");
    }
    // The list the macro and the runtime read from the rule table.
    assert_eq!(
        backprop::rules::nondiff::ZERO_DERIVATIVE_METHODS,
        &[
            "floor",
            "ceil",
            "round",
            "round_ties_even",
            "trunc",
            "signum"
        ]
    );
}

#[test]
fn infinite_derivatives_are_reported_not_hidden() {
    assert_eq!(r_sqrt_grad(0.0).1.x, f64::INFINITY, "sqrt'(0) = +inf");
    assert_eq!(r_ln_grad(0.0).1.x, f64::INFINITY, "ln'(0) = 1/0");
    assert!(r_ln_grad(-1.0).0.is_nan(), "ln(-1) is NaN and stays NaN");
}

/// 0 · √x at x = 0: the product's cotangent to √x is 0, and √'s strong zero keeps it 0
/// (JAX and PyTorch give NaN here).
#[grad]
fn zero_weighted_sqrt(x: f64, w: f64) -> f64 {
    w * x.sqrt() + x
}

#[grad]
fn zero_weighted_ln_and_div(x: f64, w: f64) -> f64 {
    w * x.ln() + w * (1.0 / x) + w * x.powf(0.5) + w * x.asin().max(0.0) + x
}

#[test]
fn zero_cotangents_are_strong_zeros() {
    let g = zero_weighted_sqrt_grad(0.0, 0.0).1;
    assert_eq!(g.x, 1.0);
    let g = zero_weighted_ln_and_div_grad(0.0, 0.0).1;
    assert_eq!(g.x, 1.0);
    assert!(
        g.w.is_nan() || g.w.is_infinite(),
        "the weight's own gradient is ln 0 + 1/0 + ...: not hidden"
    );
}

/// The plain table (`rules::scalar::plain`, what `f_grad` tries first in loops) is the
/// same formulas with `d · local` a plain product: equal to the strong rules for a
/// non-zero finite cotangent, NaN instead of 0 for `0 · ∞` and for `∞ · 0` (an
/// infinite cotangent through an exactly zero local derivative), and NaN in both for
/// a NaN cotangent.
#[test]
fn plain_rules_differ_from_strong_ones_only_at_zero_times_infinity() {
    use backprop::rules::scalar::{self as strong, plain};
    let mut rng = StdRng::seed_from_u64(0x91a1);
    for _ in 0..POINTS {
        let (x, d): (f64, f64) = (rng.random_range(0.1..4.0), rng.random_range(-2.0..2.0));
        let y = x.sqrt();
        assert_eq!(plain::mul_vjp_lhs(x, d), strong::mul_vjp_lhs(x, d));
        assert_eq!(plain::div_vjp_lhs(x, d), strong::div_vjp_lhs(x, d));
        assert_eq!(
            plain::div_vjp_rhs(x, 1.0 / x, d),
            strong::div_vjp_rhs(x, 1.0 / x, d)
        );
        assert_eq!(plain::sqrt_vjp(y, d), strong::sqrt_vjp(y, d));
        assert_eq!(plain::ln_vjp(x, d), strong::ln_vjp(x, d));
        assert_eq!(plain::tanh_vjp(x.tanh(), d), strong::tanh_vjp(x.tanh(), d));
        assert_eq!(plain::max_vjp_a(x, d, d), strong::max_vjp_a(x, d, d));
    }
    // 0 · ∞: strong gives 0, plain NaN.
    assert_eq!(strong::sqrt_vjp(0.0, 0.0), 0.0);
    assert!(plain::sqrt_vjp(0.0, 0.0).is_nan());
    assert_eq!(strong::div_vjp_lhs(0.0, 0.0), 0.0);
    assert!(plain::div_vjp_lhs(0.0, 0.0).is_nan());
    assert_eq!(strong::mul_vjp_lhs(f64::INFINITY, 0.0), 0.0);
    assert!(plain::mul_vjp_lhs(f64::INFINITY, 0.0).is_nan());
    // A non-zero cotangent times ∞ is ∞ in both.
    assert_eq!(plain::ln_vjp(0.0, 1.0), strong::ln_vjp(0.0, 1.0));
    // ∞ · 0 (an infinite cotangent, a zero local derivative): strong 0, plain NaN.
    let inf = f64::INFINITY;
    assert_eq!(strong::mul_vjp_lhs(0.0, inf), 0.0);
    assert_eq!(strong::mul_vjp_rhs(-0.0, -inf), 0.0);
    assert!(plain::mul_vjp_lhs(0.0, inf).is_nan());
    assert_eq!(strong::powi_vjp(0.0, 3, inf), 0.0);
    assert!(plain::powi_vjp(0.0, 3, inf).is_nan());
    assert_eq!(strong::ln_vjp(inf, inf), 0.0, "ln′(∞) = 1/∞ = 0");
    assert_eq!(
        strong::div_vjp_lhs(inf, inf),
        0.0,
        "∂(a/b)/∂a = 1/b = 0 at b = ∞"
    );
    assert!(plain::div_vjp_lhs(inf, inf).is_nan());
    assert_eq!(
        strong::div_vjp_rhs(2.0, 0.0, inf),
        0.0,
        "∂(a/b)/∂b = −y/b = 0 at y = 0"
    );
    assert!(plain::div_vjp_rhs(2.0, 0.0, inf).is_nan());
    // ...but only for an exact zero: a non-zero local derivative keeps ∞.
    assert_eq!(strong::mul_vjp_lhs(1e-300, inf), inf);
    assert_eq!(strong::div_vjp_rhs(2.0, 1e-300, inf), -inf);
    // A NaN cotangent or a NaN local derivative is never hidden.
    let nan = f64::NAN;
    assert!(strong::mul_vjp_lhs(0.0, nan).is_nan());
    assert!(strong::mul_vjp_lhs(nan, inf).is_nan());
    assert!(strong::div_vjp_lhs(inf, nan).is_nan());
    assert!(
        strong::div_vjp_rhs(inf, nan, inf).is_nan(),
        "y NaN at b = ∞"
    );
    assert!(strong::div_vjp_rhs(2.0, 0.0, nan).is_nan());
    assert!(backprop::rules::scalar::strong_mul(nan, 0.0).is_nan());
}

// ---- strong zeros both ways (issue 13, item 7) -------------------------------------

/// r = |0·sin a| written as √(z·z): constant 0 in `a`, so dr/da = 0. The reverse pass
/// meets √′(0) = ∞ and then z·z's local derivative z = 0 (JAX and PyTorch: NaN).
#[grad]
fn sqrt_of_zeroed_square(a: f64) -> f64 {
    let z = 0.0 * a.sin();
    (z * z).sqrt()
}

/// A hand-written norm: √(Σ xᵢ²), through a loop (so `f_grad` tries the plain pass
/// first, gets `∞·0 = NaN` at the origin, and falls back to the strong pass).
#[grad]
fn loop_norm(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in x {
        s += v * v;
    }
    s.sqrt()
}

/// ∛(x³) = x and (∛x)³ = x: derivative 1 everywhere, but at 0 both reverse passes
/// multiply ∛′(0) = ∞ by a zero, so the strong zeros give 0 (JAX/PyTorch: NaN).
#[grad]
fn cbrt_of_cube(x: f64) -> f64 {
    x.powi(3).cbrt()
}

#[grad]
fn cube_of_cbrt(x: f64) -> f64 {
    x.cbrt().powi(3)
}

#[test]
fn strong_zeros_hold_both_ways() {
    use backprop::Pullback;
    for a in [0.7, -2.0, 0.0] {
        assert_eq!(
            sqrt_of_zeroed_square_grad(a),
            (0.0, SqrtOfZeroedSquareGrad { a: 0.0 })
        );
        let (v, tape) = sqrt_of_zeroed_square_forward(a);
        assert_eq!(v, 0.0);
        assert_eq!(tape.backward(1.0).a, 0.0, "f_backward at a = {a}");
        // Any finite non-zero output cotangent: still 0.
        let (_, tape) = sqrt_of_zeroed_square_forward(a);
        assert_eq!(sqrt_of_zeroed_square_backward(tape, -3.5).a, 0.0);
    }
    // The norm at the origin: the minimum-norm subgradient 0 (as hypot and abs), and the
    // ordinary gradient x/|x| elsewhere.
    assert_eq!(
        loop_norm_grad(&[0.0, 0.0]),
        (0.0, LoopNormGrad { x: vec![0.0, 0.0] })
    );
    let g = loop_norm_grad(&[3.0, -4.0]).1.x;
    assert!(
        (g[0] - 0.6).abs() < 1e-15 && (g[1] + 0.8).abs() < 1e-15,
        "{g:?}"
    );
    // The documented limitation: 0 where the true derivative is 1, both ways round.
    assert_eq!(cbrt_of_cube_grad(0.0).1.x, 0.0);
    assert_eq!(cube_of_cbrt_grad(0.0).1.x, 0.0);
    assert!((cbrt_of_cube_grad(0.5).1.x - 1.0).abs() < 1e-15);
}

#[test]
fn infinite_cotangents_keep_nan_visible() {
    // A NaN input: z = 0·sin(NaN) = NaN, the value and the gradient are NaN.
    let (v, g) = sqrt_of_zeroed_square_grad(f64::NAN);
    assert!(v.is_nan() && g.a.is_nan(), "value {v}, gradient {}", g.a);
    // A NaN made on the way: sin(∞) = NaN.
    let (v, g) = sqrt_of_zeroed_square_grad(f64::INFINITY);
    assert!(v.is_nan() && g.a.is_nan(), "value {v}, gradient {}", g.a);
    // A NaN element of the norm's input.
    let (v, g) = loop_norm_grad(&[0.0, f64::NAN]);
    assert!(
        v.is_nan() && g.x[1].is_nan(),
        "value {v}, gradient {:?}",
        g.x
    );
    // An infinite derivative under a non-zero cotangent is still reported.
    assert_eq!(r_sqrt_grad(0.0).1.x, f64::INFINITY);
}

#[grad]
fn kinks_at(x: f64, y: f64) -> f64 {
    x.abs()
        + x.clamp(-1.0, 1.0)
        + x.max(y)
        + x.min(y)
        + backprop::relu(x)
        + backprop::leaky_relu(x, 0.1)
}

#[grad]
fn kinks_on_arrays(x: &ndarray::Array1<f64>) -> f64 {
    (x.mapv(|v| v.abs() + v.clamp(-1.0, 1.0) + v.max(0.0)) + backprop::ops::relu(x)).sum()
}

/// A NaN input at a kink: the value is NaN, and so is the gradient, where the kink's
/// convention (`abs′(0) = 0`, 0 outside a clamp, ..) would have given a finite number.
/// A NaN operand of `max`/`min` beside a number is not one: the value is the number.
#[test]
fn kinks_pass_a_nan_input_on() {
    let nan = f64::NAN;
    let (v, g) = kinks_at_grad(nan, nan);
    assert!(
        v.is_nan() && g.x.is_nan() && g.y.is_nan(),
        "{v} {} {}",
        g.x,
        g.y
    );
    // Each rule alone.
    use backprop::rules::scalar::*;
    assert!(abs_vjp(nan, 1.0).is_nan());
    assert!(clamp_vjp_x(nan, -1.0, 1.0, 1.0).is_nan());
    assert!(clamp_vjp_lo(nan, -1.0, 1.0).is_nan() && clamp_vjp_hi(nan, 1.0, 1.0).is_nan());
    assert!(max_vjp_a(nan, nan, 1.0).is_nan() && min_vjp_b(nan, nan, 1.0).is_nan());
    assert_eq!(
        (max_vjp_a(nan, 2.0, 1.0), max_vjp_b(nan, 2.0, 1.0)),
        (0.0, 1.0)
    );
    assert_eq!(
        (min_vjp_a(2.0, nan, 1.0), min_vjp_b(2.0, nan, 1.0)),
        (1.0, 0.0)
    );
    // The conventions at the kinks themselves are unchanged.
    assert_eq!(abs_vjp(0.0, 1.0), 0.0);
    assert_eq!(clamp_vjp_x(1.0, -1.0, 1.0, 1.0), 0.0);
    assert_eq!(max_vjp_a(2.0, 2.0, 1.0), 0.5);
    // The array op and the elementwise rules on arrays.
    let x = ndarray::array![nan, -0.5, 0.0, 2.0];
    assert!(backprop::ops::relu(&x)[0].is_nan());
    // ReLU's value is NaN there, its gradient `d·1[y > 0]` 0 (PyTorch's and JAX's), the
    // scalar rule's and the op's alike.
    assert_eq!(backprop::functions::vjp::relu_vjp(nan, 1.0), 0.0);
    let (y, tape) = backprop::ops::relu::forward(&x);
    assert!(y[0].is_nan());
    assert_eq!(
        backprop::Pullback::backward(tape, ndarray::Array1::ones(4)).0[0],
        0.0
    );
    let (v, g) = kinks_on_arrays_grad(&x);
    assert!(v.is_nan());
    assert!(g.x[0].is_nan(), "{:?}", g.x);
    // abs′ + clamp′ + max′(·, 0) + relu′ at −0.5, 0 and 2: −1 + 1 + 0 + 0, 0 + 1 + ½ + 0,
    // 1 + 0 + 1 + 1.
    assert_eq!(g.x.slice(ndarray::s![1..]).to_vec(), vec![0.0, 1.5, 3.0]);
}

// ---- limits at ±∞ (issue 13, item 7) -----------------------------------------------

/// Value and derivative of every activation at ±∞ (and where `x²` overflows) are their
/// limits, never the `∞·0 = NaN` of the plain formulas; NaN stays NaN. Through the
/// `#[grad]` rules, in `T`.
fn activation_limits<T: Float + std::fmt::Debug>() {
    let inf = T::infinity();
    let huge = T::max_value().sqrt() * T::from(4.0).unwrap(); // x² overflows
    let (zero, one) = (T::zero(), T::one());
    // (name, x ↦ (value, derivative), x, limit of the value, limit of the derivative)
    type Case<T> = (&'static str, fn(T) -> (T, T), T, T, T);
    let cases: [Case<T>; 18] = [
        (
            "gelu(-inf)",
            |x| (r_gelu(x), r_gelu::grad(x).1.x),
            -inf,
            zero,
            zero,
        ),
        (
            "gelu(+inf)",
            |x| (r_gelu(x), r_gelu::grad(x).1.x),
            inf,
            inf,
            one,
        ),
        (
            "gelu(-huge)",
            |x| (r_gelu(x), r_gelu::grad(x).1.x),
            -huge,
            zero,
            zero,
        ),
        (
            "gelu(+huge)",
            |x| (r_gelu(x), r_gelu::grad(x).1.x),
            huge,
            huge,
            one,
        ),
        (
            "silu(-inf)",
            |x| (r_silu(x), r_silu::grad(x).1.x),
            -inf,
            zero,
            zero,
        ),
        (
            "silu(+inf)",
            |x| (r_silu(x), r_silu::grad(x).1.x),
            inf,
            inf,
            one,
        ),
        (
            "silu(+huge)",
            |x| (r_silu(x), r_silu::grad(x).1.x),
            huge,
            huge,
            one,
        ),
        (
            "softplus(-inf)",
            |x| (r_softplus(x), r_softplus::grad(x).1.x),
            -inf,
            zero,
            zero,
        ),
        (
            "softplus(+inf)",
            |x| (r_softplus(x), r_softplus::grad(x).1.x),
            inf,
            inf,
            one,
        ),
        (
            "sigmoid(-inf)",
            |x| (r_sigmoid(x), r_sigmoid::grad(x).1.x),
            -inf,
            zero,
            zero,
        ),
        (
            "sigmoid(+inf)",
            |x| (r_sigmoid(x), r_sigmoid::grad(x).1.x),
            inf,
            one,
            zero,
        ),
        (
            "tanh(-inf)",
            |x| (r_tanh(x), r_tanh::grad(x).1.x),
            -inf,
            -one,
            zero,
        ),
        (
            "tanh(+inf)",
            |x| (r_tanh(x), r_tanh::grad(x).1.x),
            inf,
            one,
            zero,
        ),
        (
            "relu(-inf)",
            |x| (r_relu(x), r_relu::grad(x).1.x),
            -inf,
            zero,
            zero,
        ),
        (
            "relu(+inf)",
            |x| (r_relu(x), r_relu::grad(x).1.x),
            inf,
            inf,
            one,
        ),
        (
            "leaky_relu(-inf, 0.1)",
            |x| (r_leaky_relu(x), r_leaky_relu::grad(x).1.x),
            -inf,
            -inf,
            T::from(0.1).unwrap(),
        ),
        (
            "leaky_relu(+inf, 0.1)",
            |x| (r_leaky_relu(x), r_leaky_relu::grad(x).1.x),
            inf,
            inf,
            one,
        ),
        (
            "leaky_relu(-inf, 0)",
            |x| {
                (
                    r_leaky_slope(x, T::zero()),
                    r_leaky_slope::grad(x, T::zero()).1.a,
                )
            },
            -inf,
            zero,
            zero,
        ),
    ];
    for (name, f, x, value, derivative) in cases {
        let (v, g) = f(x);
        assert_eq!(
            (v, g),
            (value, derivative),
            "{name} in {}",
            std::any::type_name::<T>()
        );
    }
    // ∂/∂slope of leaky_relu at −∞ is min(x, 0) = −∞: the true limit, kept.
    assert_eq!(r_leaky_slope::grad(-inf, zero).1.b, -inf);
    // NaN in, NaN out: the limits never hide one.
    let nan = T::nan();
    for (name, (v, g)) in [
        ("gelu", (r_gelu(nan), r_gelu::grad(nan).1.x)),
        ("silu", (r_silu(nan), r_silu::grad(nan).1.x)),
        ("softplus", (r_softplus(nan), r_softplus::grad(nan).1.x)),
    ] {
        assert!(
            v.is_nan() && g.is_nan(),
            "{name}(NaN) = {v:?}, derivative {g:?}"
        );
    }
    // leaky_relu′ at NaN is the slope (a branch on x > 0, as relu′): the NaN is in the
    // value.
    assert!(r_leaky_slope(nan, zero).is_nan());
}

#[test]
fn activations_take_their_limits_at_infinity() {
    activation_limits::<f64>();
    activation_limits::<f32>();
}

// ---- erf and erfc: one table entry each, scalars and arrays ---------------------------

/// Hand-computed: erf′(x) = (2/√π)·e^(−x²), erfc′ = −erf′ (DLMF 7.10.1).
#[test]
fn erf_and_erfc_derivatives_by_hand() {
    let (v, g) = r_erf_grad(0.5);
    assert_eq!(v, 0.520_499_877_813_046_5);
    assert!((g.x - 0.878_782_578_935_444_8).abs() < 1e-15, "{}", g.x);
    let (v, g) = r_erfc_grad(1.0);
    assert!((v - 0.157_299_207_050_285_13).abs() < 1e-16, "{v}");
    assert!((g.x + 0.415_107_497_420_594_7).abs() < 1e-15, "{}", g.x);
    // Far in the tail the derivative underflows to 0 and the value keeps its accuracy.
    let (v, g) = r_erfc_grad(30.0);
    assert_eq!((v, g.x), (0.0, -0.0));
    let (v, g) = r_erfc_grad(-30.0);
    assert_eq!((v, g.x), (2.0, -0.0));
    // The method form (0.5·erf + erfc) at 0: 0.5·(2/√π) − 2/√π = −1/√π.
    let (v, g) = r_erf_method_grad(0.0);
    assert_eq!(v, 1.0);
    assert!((g.x + std::f64::consts::FRAC_2_SQRT_PI / 2.0).abs() < 1e-15);
}

#[grad]
fn array_erf(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    (x.erf() * w).sum()
}

#[grad]
fn array_erfc_mapv<T: backprop::Real>(x: &Array1<T>) -> T {
    x.mapv(|v| v.erfc() * v).sum()
}

#[test]
fn erf_and_erfc_on_arrays() {
    let x = array![[-1.5, -0.2, 0.3], [0.9, 1.7, -2.4]];
    let w = array![[0.7, -1.1, 0.4], [2.0, 0.3, -0.6]];
    gradcheck!(array_erf(x = &x, w = const &w)).assert();
    // Each element's cotangent is w·erf′(x), the scalar rule elementwise.
    let (_, g) = array_erf_grad(&x, &w);
    for ((&xi, &wi), &gi) in x.iter().zip(&w).zip(&g.x) {
        let want = wi * std::f64::consts::FRAC_2_SQRT_PI * (-xi * xi).exp();
        assert!((gi - want).abs() < 1e-15, "{gi} vs {want}");
    }
    let v = array![-2.0, -0.5, 0.25, 1.5];
    gradcheck!(array_erfc_mapv(x = &v)).assert();
    let (_, g64) = array_erfc_mapv_grad(&v);
    let (_, g32) = array_erfc_mapv_grad(&v.mapv(|e| e as f32));
    for (a, b) in g64.x.iter().zip(&g32.x) {
        assert!((a - f64::from(*b)).abs() < 1e-5, "{a} vs {b}");
    }
}

/// Every operation in the rule table has a gradcheck in this file: `r_<name>` for a
/// method or operator is passed to `check_unary!`/`check_binary!` (the table's one
/// declaration of a rule, this file's one test of it).
#[test]
fn every_table_entry_is_gradchecked_here() {
    let table = include_str!("../derive/src/rule_table.in");
    let this = include_str!("rules.rs");
    let mut names = Vec::new();
    for line in table.lines() {
        let line = line.trim_start();
        for kind in ["method ", "operator ", "constant "] {
            if let Some(rest) = line.strip_prefix(kind) {
                names.push(rest.split('(').next().unwrap().trim().to_string());
            }
        }
    }
    assert!(names.len() >= 41, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            let checked = |m: &str| this.contains(&format!("!(r_{n}{m},"));
            let constant = this.contains(&format!("x.{n}()"));
            !(checked("") || checked("3") || checked("_lo") || checked("_method") || constant)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "rule table entries without a gradcheck in tests/rules.rs: {missing:?}"
    );
}
