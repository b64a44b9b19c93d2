//! `#[grad]` functions generic over the float type, over ndarray arrays (issue 14, part
//! 5): with the bounds a user writes for ndarray code (`T: Float + LinalgScalar +
//! ScalarOperand`) or the crate's one bound `T: backprop::Real`, instantiated at f32 and
//! f64, gradchecked in f64, the f32 instance against the f64 one, and `gradcheck!` on
//! functions computed in f32. Also generic functions over slices, and type and const
//! parameters that are not floats (data, not derivatives).
#![allow(clippy::float_cmp, clippy::assign_op_pattern)]

use crate::support::check;
use backprop::gradcheck::Options;
use backprop::{Real, custom_vjp, grad, gradcheck};
use ndarray::{Array1, Array2, LinalgScalar, ScalarOperand, array};
use num_traits::{Float, FromPrimitive};

/// Mean squared error of a linear model, written as for ndarray alone (`mean` is
/// ndarray's, which wants `FromPrimitive`).
#[grad(w)]
fn mse<T>(w: &Array2<T>, x: &Array2<T>, y: &Array2<T>) -> T
where
    T: Float + LinalgScalar + ScalarOperand + FromPrimitive,
{
    let e = x.dot(w) - y;
    (&e * &e).mean().unwrap()
}

/// A tanh layer returning an array, with ndarray's bounds.
#[grad(w, b, x)]
fn tanh_layer<T: Float + LinalgScalar + ScalarOperand>(
    w: &Array2<T>,
    b: &Array1<T>,
    x: &Array2<T>,
) -> Array2<T> {
    (x.dot(w) + b).tanh()
}

/// A ReLU layer through `backprop::ops`, which runs on the kernels' floats: the one
/// bound `T: backprop::Real`.
#[grad(w, b, x)]
fn relu_layer<T: Real>(w: &Array2<T>, b: &Array1<T>, x: &Array2<T>) -> Array2<T> {
    backprop::ops::relu(&(x.dot(w) + b))
}

/// Two layers and a loss, each generic: layers called from a generic loss.
#[grad(w1, b1, w2, b2)]
fn two_layers<T: Real>(
    w1: &Array2<T>,
    b1: &Array1<T>,
    w2: &Array2<T>,
    b2: &Array1<T>,
    x: &Array2<T>,
    y: &Array2<T>,
) -> T {
    let h = tanh_layer(w1, b1, x);
    let out = relu_layer(w2, b2, &h);
    let e = out - y;
    (&e * &e).sum() * T::from(0.5).unwrap() + (w1 * w1).mean().unwrap()
}

/// Generic code calling the companions needs only `T: backprop::Real`.
fn loss_and_grad<T: Real>(w: &Array2<T>, x: &Array2<T>, y: &Array2<T>) -> (T, Array2<T>) {
    let (v, g) = mse_grad(w, x, y);
    (v, g.w)
}

fn f64s(rows: usize, cols: usize, seed: f64) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        0.6 * ((i * cols + j) as f64 * 1.3 + seed).sin()
    })
}

fn f32s(a: &Array2<f64>) -> Array2<f32> {
    a.mapv(|v| v as f32)
}

/// |a − b| within f32's precision, relative to the larger magnitude (or 1).
#[track_caller]
fn close_f32(a: &Array2<f32>, b: &Array2<f64>) {
    assert_eq!(a.shape(), b.shape());
    for (&a, &b) in a.iter().zip(b) {
        assert!(
            (f64::from(a) - b).abs() <= 2e-6 * b.abs().max(1.0),
            "f32 {a} vs f64 {b}"
        );
    }
}

#[test]
fn mse_by_hand_at_f32_and_f64() {
    // e = 1·0.5 + 2·0.25 − 0 = 1: L = 1, dL/dw = 2·xᵀe / n = [2, 4]ᵀ, exact in both.
    let (v, g) = mse_grad(&array![[0.5], [0.25]], &array![[1.0, 2.0]], &array![[0.0]]);
    assert_eq!((v, g.w), (1.0f64, array![[2.0], [4.0]]));
    let (v, g) = mse_grad(
        &array![[0.5f32], [0.25]],
        &array![[1.0f32, 2.0]],
        &array![[0.0f32]],
    );
    assert_eq!((v, g.w), (1.0f32, array![[2.0f32], [4.0]]));
    assert_eq!(
        loss_and_grad(
            &array![[0.5f32], [0.25]],
            &array![[1.0, 2.0]],
            &array![[0.0]]
        )
        .1,
        array![[2.0f32], [4.0]]
    );
}

#[test]
fn mse_gradchecks_in_f64_and_its_f32_instance_agrees() {
    let (w, x, y) = (f64s(3, 2, 0.0), f64s(5, 3, 1.0), f64s(5, 2, 2.0));
    gradcheck!(mse(w = &w, x = const &x, y = const &y)).assert();
    let (v64, g64) = loss_and_grad(&w, &x, &y);
    let (v32, g32) = loss_and_grad(&f32s(&w), &f32s(&x), &f32s(&y));
    assert!((f64::from(v32) - v64).abs() <= 2e-6 * v64);
    close_f32(&g32, &g64);
}

#[test]
fn layers_returning_arrays_at_f32_and_f64() {
    let (w, b, x) = (
        f64s(3, 4, 0.5),
        array![0.1, -0.2, 0.3, 0.05],
        f64s(2, 3, 1.5),
    );
    let d = f64s(2, 4, 2.5);
    let (h64, g64) = tanh_layer_vjp(&w, &b, &x, d.clone());
    let (h32, g32) = tanh_layer_vjp(&f32s(&w), &b.mapv(|v| v as f32), &f32s(&x), f32s(&d));
    close_f32(&h32, &h64);
    close_f32(&g32.w, &g64.w);
    close_f32(&g32.x, &g64.x);
    close_f32(
        &g32.b.insert_axis(ndarray::Axis(0)),
        &g64.b.insert_axis(ndarray::Axis(0)),
    );

    // relu: the cotangent passes where the pre-activation is positive.
    let (r, g) = relu_layer_vjp(
        &array![[1.0f32, -1.0]],
        &array![0.0f32, 0.0],
        &array![[2.0f32]],
        array![[3.0f32, 5.0]],
    );
    assert_eq!(r, array![[2.0f32, 0.0]]);
    assert_eq!(g.w, array![[6.0f32, 0.0]]);
    assert_eq!(g.b, array![3.0f32, 0.0]);
    assert_eq!(g.x, array![[3.0f32]]);
}

#[test]
fn a_generic_network_gradchecks_in_f64_and_agrees_in_f32() {
    let (w1, b1) = (f64s(3, 4, 0.3), array![0.1, -0.2, 0.3, 0.05]);
    let (w2, b2) = (f64s(4, 2, 1.1), array![0.4, 0.3]);
    let (x, y) = (f64s(5, 3, 2.2), f64s(5, 2, 3.3));
    let report = gradcheck!(two_layers(
        w1 = &w1,
        b1 = &b1,
        w2 = &w2,
        b2 = &b2,
        x = const &x,
        y = const &y
    ));
    assert!(report.passed(), "{report}");
    // No pre-activation of the ReLU sits at a kink here (else the check is moot).
    let pre = tanh_layer(&w1, &b1, &x).dot(&w2) + &b2;
    assert!(pre.iter().all(|v| v.abs() > 1e-3));

    let (v64, g64) = two_layers_grad(&w1, &b1, &w2, &b2, &x, &y);
    let c = |a: &Array1<f64>| a.mapv(|v| v as f32);
    let (v32, g32) = two_layers_grad(
        &f32s(&w1),
        &c(&b1),
        &f32s(&w2),
        &c(&b2),
        &f32s(&x),
        &f32s(&y),
    );
    assert!((f64::from(v32) - v64).abs() <= 1e-5 * v64.abs());
    for (a, b) in [(&g32.w1, &g64.w1), (&g32.w2, &g64.w2)] {
        for (&a, &b) in a.iter().zip(b) {
            assert!(
                (f64::from(a) - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{a} vs {b}"
            );
        }
    }
    for (&a, &b) in g32
        .b1
        .iter()
        .chain(&g32.b2)
        .zip(g64.b1.iter().chain(&g64.b2))
    {
        assert!(
            (f64::from(a) - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{a} vs {b}"
        );
    }
}

// ---- gradcheck! on functions computed in f32 -------------------------------------

#[grad(w)]
fn f32_loss(w: &Array2<f32>, x: &Array2<f32>) -> f32 {
    let h = x.dot(w).tanh();
    (&h * &h).sum()
}

#[grad]
fn f32_scalar(x: f32, y: f32) -> f32 {
    (x * y).sin() + x.exp() / y
}

/// x³ with a pullback 3% off: an f32 check must still catch it.
#[custom_vjp(off_vjp)]
fn cube_off(x: f32) -> f32 {
    x * x * x
}

fn off_vjp(x: f32, _y: f32, d: f32) -> (f32,) {
    (d * 3.0 * x * x * 1.03,)
}

#[grad]
fn uses_cube_off(x: f32) -> f32 {
    cube_off(x) + x
}

#[test]
fn gradcheck_checks_f32_functions_in_f32() {
    let (w, x) = (f32s(&f64s(3, 2, 0.7)), f32s(&f64s(4, 3, 1.9)));
    let report = gradcheck!(f32_loss(w = &w, x = const &x));
    assert!(report.passed(), "{report}");
    assert_eq!(report.options, Options::f32());
    let report = gradcheck!(f32_scalar(x = 0.7, y = 1.3));
    assert!(report.passed(), "{report}");
    // The same generic function is checked in f32 when given f32 values.
    let (w, x, y) = (f64s(3, 2, 0.0), f64s(5, 3, 1.0), f64s(5, 2, 2.0));
    let report = gradcheck!(mse(w = &f32s(&w), x = const &f32s(&x), y = const &f32s(&y)));
    assert!(report.passed(), "{report}");
    assert_eq!(report.options, Options::f32());
    // Given options win.
    let report = gradcheck!(mse(w = &w, x = const &x, y = const &y), Options::f32());
    assert_eq!(report.options, Options::f32());
}

#[test]
fn f32_tolerances_still_catch_a_wrong_rule() {
    let report = gradcheck!(uses_cube_off(x = 1.2));
    assert!(!report.passed(), "{report}");
}

// ---- type and const parameters that are not floats ------------------------------------

/// A generic label type is data, not a float.
/// Pins: every type parameter was taken for a float, not only Float-bounded ones (bf5618a).
#[grad]
fn generic_label<T: Float, L: Copy + PartialEq>(x: T, label: L, target: L) -> T {
    let hit = if_equal(label, target);
    x * x * T::from(hit).unwrap()
}

fn if_equal<L: PartialEq>(a: L, b: L) -> f64 {
    if a == b { 1.0 } else { 0.5 }
}

#[test]
fn non_float_type_parameters_are_constants() {
    let (v, g) = generic_label_grad(3.0_f64, 'a', 'b');
    assert_eq!((v, g.x), (4.5, 3.0));
}

/// Const generics: the companions call each other with a turbofish.
/// Pins: const generic functions did not expand (bf5618a).
#[grad]
fn const_generic<const N: usize>(x: f64) -> f64 {
    x * N as f64
}

#[test]
fn const_generic_functions_expand() {
    assert_eq!(
        const_generic_grad::<4>(2.0),
        (8.0, ConstGenericGrad { x: 4.0 })
    );
}

// ---- generic buffers ------------------------------------------------------------------

/// `T: Float` with a buffer argument needs `AddAssign` too (see break2_ui/generic_buffer.rs):
/// with the extra bound it works.
#[grad]
fn generic_with_add_assign<T: num_traits::Float + std::ops::AddAssign>(x: &[T]) -> T {
    let mut h = vec![T::zero(); x.len()];
    let mut s = T::zero();
    for i in 0..x.len() {
        h[i] = x[i] * x[i];
        s = s + h[i] * x[i];
    }
    s
}
#[test]
fn p_generic_with_add_assign() {
    let x = vec![0.5, -1.5, 2.0];
    let (v, g) = generic_with_add_assign_grad(&x);
    check(&|x: &[f64]| generic_with_add_assign(x), v, &g.x, &x);
}

/// A struct of parameters with a const parameter, and a list of `N` layers by value: the
/// gradient struct carries `N` too (before, it named `N` without declaring it: E0425).
#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Taps<const N: usize> {
    w: [f64; N],
}

#[grad(p)]
fn taps_energy<const N: usize>(p: &Taps<N>, x: &[f64; N]) -> f64 {
    p.w.iter().zip(x).map(|(w, x)| w * w * x).sum()
}

#[test]
fn const_generic_structs_of_parameters() {
    let p = Taps {
        w: [0.5, -1.0, 2.0],
    };
    let x = [1.0, 2.0, 3.0];
    // f = Σ wᵢ² xᵢ, so ∂f/∂wᵢ = 2 wᵢ xᵢ.
    let (f, g) = taps_energy_grad(&p, &x);
    assert_eq!(f, 0.25 * 1.0 + 1.0 * 2.0 + 4.0 * 3.0);
    assert_eq!(
        g.p,
        Taps {
            w: [1.0, -4.0, 12.0]
        }
    );
    backprop::gradcheck!(taps_energy(p = &p, x = const &x)).assert();
}

/// A layer generic over its array's rank as well as its float type (`D: Dimension`):
/// `D` is kept as the user wrote it, with no float bound (rustc errors at every call,
/// advising `Dim<[usize; 3]>: Real`, before).
#[grad]
fn scaled_tanh<T: Real, D: ndarray::Dimension>(
    x: &ndarray::Array<T, D>,
    g: T,
) -> ndarray::Array<T, D> {
    (x * g).tanh()
}

#[grad]
fn over_two_ranks<T: Real>(x: &ndarray::Array3<T>, y: &Array2<T>, g: T) -> T {
    scaled_tanh(x, g).sum() + scaled_tanh(y, g).mapv(|v| v * v).sum()
}

#[test]
fn layer_generic_over_its_rank() {
    let x = ndarray::Array3::from_shape_fn((1, 2, 3), |(_, i, j)| (i + j) as f64 * 0.2);
    let y = f64s(2, 2, 0.4);
    // ∂/∂g Σ tanh(g·x) = Σ x·(1 − tanh²(g·x)).
    let (_, d) = scaled_tanh_vjp(&x, 0.5, ndarray::Array3::ones((1, 2, 3)));
    let want: f64 = x
        .iter()
        .map(|&v| v * (1.0 - (0.5 * v).tanh().powi(2)))
        .sum();
    assert!((d.g - want).abs() < 1e-14, "{} {want}", d.g);
    gradcheck!(over_two_ranks(x = &x, y = &y, g = 0.5)).assert();
    let (_, g32) = over_two_ranks_grad(&x.mapv(|v| v as f32), &f32s(&y), 0.5f32);
    let (_, g64) = over_two_ranks_grad(&x, &y, 0.5);
    assert!((f64::from(g32.g) - g64.g).abs() < 1e-5);
}
