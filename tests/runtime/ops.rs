//! Every op in `backprop::ops`: values by hand where exact, and every pullback against
//! f64 central differences at random inputs away from kinks, including broadcasting,
//! transposed views and a two-layer MLP composed from the ops.

// The closures `|x| ops::relu(x)` are needed: the fn items are not general over the
// view's lifetime, which clippy's suggested replacement requires.
#![allow(clippy::redundant_closure)]

use crate::rng::Rng;
use backprop::ops::{self, XentOptions};
use ndarray::{
    Array, Array1, Array2, Array3, ArrayBase, ArrayD, Axis, Data, Dimension, IxDyn, array,
};

/// Central differences `(f(x + h·e_i) − f(x − h·e_i))/2h` for every element i, in f64.
fn num_grad<D: Dimension>(x: &Array<f64, D>, f: impl Fn(&Array<f64, D>) -> f64) -> Array<f64, D> {
    let h = 1e-6;
    // A standard-layout copy, so flat slice positions are logical positions.
    let mut xp = Array::from_shape_vec(x.raw_dim(), x.iter().copied().collect()).unwrap();
    let mut g = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        let v = xp.as_slice().unwrap()[i];
        xp.as_slice_mut().unwrap()[i] = v + h;
        let fp = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v - h;
        let fm = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v;
        g.push((fp - fm) / (2.0 * h));
    }
    Array::from_shape_vec(x.raw_dim(), g).unwrap()
}

/// `|a − b| ≤ tol·(1 + |b|)` elementwise, with the worst element in the message.
fn assert_close<S1: Data<Elem = f64>, S2: Data<Elem = f64>, D: Dimension>(
    what: &str,
    got: &ArrayBase<S1, D>,
    want: &ArrayBase<S2, D>,
    tol: f64,
) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
        let e = (a - b).abs() / (1.0 + b.abs());
        assert!(!e.is_nan(), "{what}: NaN at {i} ({a} vs {b})");
        if e > worst {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= tol,
        "{what}: worst relative error {worst:e} at flat index {at}\n got {got}\nwant {want}"
    );
}

/// `⟨w, y⟩`: reduces an array output to a scalar along a random direction w, so the
/// pullback of `d_y = w` must equal the gradient of this scalar (JAX's check_vjp idea).
fn dot<S1: Data<Elem = f64>, S2: Data<Elem = f64>, D: Dimension>(
    w: &ArrayBase<S1, D>,
    y: &ArrayBase<S2, D>,
) -> f64 {
    w.iter().zip(y.iter()).map(|(a, b)| a * b).sum()
}

const TOL: f64 = 1e-7;

// ---------------------------------------------------------------- activations

/// Gradchecks an elementwise op on x (3×4) and on the transposed view of a 4×3 array.
fn check_unary(
    name: &str,
    x: Array2<f64>,
    f: impl Fn(&ndarray::ArrayView2<f64>) -> Array2<f64>,
    vjp: impl Fn(&ndarray::ArrayView2<f64>, &Array2<f64>, &Array2<f64>) -> Array2<f64>,
) {
    let mut rng = Rng(11);
    let x_t_store = x.t().to_owned(); // 4×3 row-major; its .t() is a 3×4 strided view
    for (label, xv) in [("row-major", x.view()), ("transposed view", x_t_store.t())] {
        let w = rng.array_map((3, 4), |v| v);
        let y = f(&xv);
        let got = vjp(&xv, &y, &w);
        let want = num_grad(&xv.to_owned(), |xp| dot(&w, &f(&xp.view())));
        assert_close(&format!("{name} ({label})"), &got, &want, TOL);
    }
}

/// Inputs at least 0.2 away from 0 (the kink of relu and leaky_relu).
fn away_from_zero(v: f64) -> f64 {
    (v.abs() * 2.0 + 0.2) * v.signum()
}

#[test]
fn gradcheck_relu() {
    // L = ⟨w, relu(x)⟩, ∂L/∂x = w·1[x > 0]; saves y.
    let x = Rng(1).array_map((3, 4), away_from_zero);
    check_unary("relu", x, |x| ops::relu(x), |_, y, w| ops::relu_vjp(y, w));
}

#[test]
fn gradcheck_leaky_relu() {
    let x = Rng(2).array_map((3, 4), away_from_zero);
    check_unary(
        "leaky_relu",
        x,
        |x| ops::leaky_relu(x, 0.1),
        |x, _, w| ops::leaky_relu_vjp(x, 0.1, w),
    );
}

#[test]
fn gradcheck_gelu() {
    let x = Rng(3).array_map((3, 4), |v| v * 4.0);
    check_unary("gelu", x, |x| ops::gelu(x), |x, _, w| ops::gelu_vjp(x, w));
}

#[test]
fn gradcheck_silu() {
    let x = Rng(4).array_map((3, 4), |v| v * 4.0);
    check_unary("silu", x, |x| ops::silu(x), |x, _, w| ops::silu_vjp(x, w));
}

#[test]
fn gradcheck_sigmoid() {
    let x = Rng(5).array_map((3, 4), |v| v * 4.0);
    check_unary(
        "sigmoid",
        x,
        |x| ops::sigmoid(x),
        |_, y, w| ops::sigmoid_vjp(y, w),
    );
}

#[test]
fn gradcheck_tanh() {
    let x = Rng(6).array_map((3, 4), |v| v * 3.0);
    check_unary("tanh", x, |x| ops::tanh(x), |_, y, w| ops::tanh_vjp(y, w));
}

#[test]
fn gradcheck_softplus() {
    let x = Rng(7).array_map((3, 4), |v| v * 5.0);
    check_unary(
        "softplus",
        x,
        |x| ops::softplus(x),
        |x, _, w| ops::softplus_vjp(x, w),
    );
}

#[test]
fn gradcheck_exp_ln_sqrt() {
    // Moderate range: central differences of a sum of e^x lose eps·Σe^x/h to rounding.
    let x = Rng(8).array_map((3, 4), |v| v * 1.5);
    check_unary("exp", x, |x| ops::exp(x), |_, y, w| ops::exp_vjp(y, w));
    // ln and sqrt on (0.5, 3.5): positive, away from the pole at 0.
    let x = Rng(9).array_map((3, 4), |v| v * 1.5 + 2.0);
    check_unary("ln", x.clone(), |x| ops::ln(x), |x, _, w| ops::ln_vjp(x, w));
    check_unary("sqrt", x, |x| ops::sqrt(x), |_, y, w| ops::sqrt_vjp(y, w));
}

#[test]
fn activations_in_f32_agree_with_f64() {
    let x = Rng(10).array_map((5, 7), |v| v * 6.0);
    let x32 = x.mapv(|v| v as f32);
    let pairs: [(&str, Array2<f64>, Array2<f32>); 4] = [
        ("gelu", ops::gelu(&x), ops::gelu(&x32)),
        ("silu", ops::silu(&x), ops::silu(&x32)),
        ("tanh", ops::tanh(&x), ops::tanh(&x32)),
        ("softplus", ops::softplus(&x), ops::softplus(&x32)),
    ];
    for (name, y, y32) in pairs {
        assert_close(name, &y32.mapv(|v| v as f64), &y, 1e-6);
    }
}

// ---------------------------------------------------------------- softmax family

#[test]
fn gradcheck_softmax_and_log_softmax_last_axis_3d() {
    let mut rng = Rng(12);
    let x: Array3<f64> = rng.array_map((2, 3, 5), |v| v * 3.0);
    let w: Array3<f64> = rng.array_map((2, 3, 5), |v| v);
    let y = ops::softmax(&x);
    for row in y.lanes(Axis(2)) {
        assert!((row.sum() - 1.0).abs() < 1e-15);
    }
    assert_close(
        "softmax",
        &ops::softmax_vjp(&y, &w),
        &num_grad(&x, |xp| dot(&w, &ops::softmax(xp))),
        TOL,
    );
    let ly = ops::log_softmax(&x);
    assert_close("log_softmax = ln softmax", &ly, &y.mapv(f64::ln), 1e-14);
    assert_close(
        "log_softmax",
        &ops::log_softmax_vjp(&ly, &w),
        &num_grad(&x, |xp| dot(&w, &ops::log_softmax(xp))),
        TOL,
    );
}

/// Softmax of large logits keeps f32's precision: e^(x − max)/Σ, not e^(x − lse), whose
/// subtraction of two numbers near 1e4 loses about 13 bits. σ(±1) = 0.2689414213699951,
/// 0.7310585786300049.
#[test]
fn softmax_of_large_logits_is_accurate_in_f32() {
    let y = ops::softmax(&ndarray::array![[1e4f32, 1e4 + 1.0], [-3e4, -3e4 - 1.0]]);
    let want = [0.268_941_42f32, 0.731_058_6, 0.731_058_6, 0.268_941_42];
    for (got, want) in y.iter().zip(want) {
        assert!((got - want).abs() <= 2.0 * f32::EPSILON * want, "{y}");
    }
}

fn labels_for(rows: usize, classes: usize) -> Vec<usize> {
    (0..rows).map(|r| (r * 3 + 1) % classes).collect()
}

#[test]
fn gradcheck_softmax_cross_entropy_with_options() {
    let mut rng = Rng(13);
    let x: Array2<f64> = rng.array_map((6, 5), |v| v * 4.0);
    let labels = labels_for(6, 5);
    for opts in [
        XentOptions::default(),
        XentOptions {
            ignore_index: None,
            label_smoothing: 0.1,
        },
        XentOptions {
            ignore_index: Some(labels[2]),
            label_smoothing: 0.2,
        },
    ] {
        let d = 0.7;
        let got = ops::softmax_cross_entropy_vjp(&x, &labels, opts, d);
        let want = num_grad(&x, |xp| d * ops::softmax_cross_entropy(xp, &labels, opts));
        assert_close(&format!("softmax_cross_entropy {opts:?}"), &got, &want, TOL);
        // A transposed-view input gives the same gradient.
        let store = x.t().to_owned();
        let got_t = ops::softmax_cross_entropy_vjp(&store.t(), &labels, opts, d);
        assert_close("softmax_cross_entropy (view)", &got_t, &got, 1e-15);
    }
}

/// PyTorch's definitions, computed independently: smoothing target and ignore_index.
#[test]
fn softmax_cross_entropy_matches_pytorch_definitions() {
    let mut rng = Rng(14);
    let x: Array2<f64> = rng.array_map((4, 3), |v| v * 2.0);
    let labels = vec![0, 2, 1, 2];
    let logp = ops::log_softmax(&x);
    let (eps, c) = (0.1, 3.0);
    // −Σ_j t_j ln p_j with t = (1 − ε)·one_hot + ε/C, mean over rows not ignored (2 is ignored).
    let row_loss = |r: usize| -> f64 {
        (0..3)
            .map(|j| {
                -((1.0 - eps) * if j == labels[r] { 1.0 } else { 0.0 } + eps / c) * logp[[r, j]]
            })
            .sum()
    };
    let want = (row_loss(0) + row_loss(2)) / 2.0;
    let got = ops::softmax_cross_entropy(
        &x,
        &labels,
        XentOptions {
            ignore_index: Some(2),
            label_smoothing: eps,
        },
    );
    assert!((got - want).abs() < 1e-14, "{got} vs {want}");
    let g = ops::softmax_cross_entropy_vjp(
        &x,
        &labels,
        XentOptions {
            ignore_index: Some(2),
            label_smoothing: eps,
        },
        1.0,
    );
    assert_eq!(
        g.row(1),
        Array1::<f64>::zeros(3),
        "ignored rows get no gradient"
    );
    assert_eq!(g.row(3), Array1::<f64>::zeros(3));
}

/// `∂L/∂z = (p − one_hot(y))/B` exactly: rows whose softmax is exact in binary.
#[test]
fn softmax_cross_entropy_gradient_is_p_minus_one_hot_over_b_exactly() {
    let ninf = f64::NEG_INFINITY;
    let x = array![[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, ninf, ninf]];
    let labels = [2, 1];
    // p = [¼ ¼ ¼ ¼] and [½ ½ 0 0]; B = 2.
    let want = array![[0.125, 0.125, -0.375, 0.125], [0.25, -0.25, 0.0, 0.0]];
    let mut g = Array2::zeros((2, 4));
    let loss =
        ops::softmax_cross_entropy_with_grad(&x, &labels, XentOptions::default(), 1.0, &mut g);
    assert_eq!(g, want);
    assert_eq!(
        ops::softmax_cross_entropy_vjp(&x, &labels, XentOptions::default(), 1.0),
        want
    );
    assert!((loss - (4f64.ln() + 2f64.ln()) / 2.0).abs() < 1e-15);
    // Random logits: (softmax − one_hot)/B computed here from ops::softmax.
    let x: Array2<f64> = Rng(15).array_map((5, 7), |v| v * 5.0);
    let labels = labels_for(5, 7);
    let mut want = ops::softmax(&x);
    for (r, &y) in labels.iter().enumerate() {
        want[[r, y]] -= 1.0;
    }
    want.mapv_inplace(|v| v / 5.0);
    assert_close(
        "(p − one_hot)/B",
        &ops::softmax_cross_entropy_vjp(&x, &labels, XentOptions::default(), 1.0),
        &want,
        1e-15,
    );
}

#[test]
fn softmax_cross_entropy_huge_logits_stay_finite() {
    for big in [1e4f64, 1e30] {
        let x = array![[big, 0.0, -big], [big, big, 0.0], [-big, -big, -big]];
        let labels = [0, 2, 1];
        let mut g = Array2::zeros((3, 3));
        let loss = ops::softmax_cross_entropy_with_grad(
            &x,
            &labels,
            XentOptions {
                ignore_index: None,
                label_smoothing: 0.1,
            },
            1.0,
            &mut g,
        );
        assert!(
            loss.is_finite() && g.iter().all(|v| v.is_finite()),
            "f64 {big}: {loss} {g}"
        );
        // Row 0 is certain and right: only smoothing contributes. Row 2 is uniform.
        let x32 = x.mapv(|v| v as f32);
        let mut g32 = Array2::zeros((3, 3));
        let l32 = ops::softmax_cross_entropy_with_grad(
            &x32,
            &labels,
            XentOptions::default(),
            1.0,
            &mut g32,
        );
        assert!(
            l32.is_finite() && g32.iter().all(|v| v.is_finite()),
            "f32 {big}: {l32} {g32}"
        );
        // Row 0 is right and certain (loss 0), row 1 (label 2 with logit 0 against two
        // logits at `big`) has loss big + ln 2, row 2 is uniform (ln 3).
        assert!(
            (l32 as f64 - (big + 2f64.ln() + 3f64.ln()) / 3.0).abs() <= 1e-6 * big,
            "f32 {big}: {l32}"
        );
        assert_close(
            "f32 grad row 2 uniform",
            &g32.row(2).mapv(|v| v as f64),
            &array![1.0 / 9.0, 1.0 / 9.0 - 1.0 / 3.0, 1.0 / 9.0],
            1e-7,
        );
    }
}

#[test]
fn softmax_cross_entropy_masked_entries_get_zero_gradient() {
    let ninf = f32::NEG_INFINITY;
    let x = array![[1.0f32, ninf, 2.0, ninf], [ninf, 0.5, ninf, -1.0]];
    let g = ops::softmax_cross_entropy_vjp(&x, &[0, 3], XentOptions::default(), 1.0);
    assert!(g.iter().all(|v| !v.is_nan()));
    for (r, c) in [(0, 1), (0, 3), (1, 0), (1, 2)] {
        assert_eq!(g[[r, c]], 0.0);
    }
    let l = ops::softmax_cross_entropy(&x, &[0, 3], XentOptions::default());
    assert!(l.is_finite());
}

#[test]
fn softmax_cross_entropy_masked_with_smoothing_has_infinite_loss_finite_gradient() {
    let x = array![[1.0f64, f64::NEG_INFINITY, 2.0]];
    let opts = XentOptions {
        ignore_index: None,
        label_smoothing: 0.3,
    };
    assert_eq!(ops::softmax_cross_entropy(&x, &[0], opts), f64::INFINITY);
    let g = ops::softmax_cross_entropy_vjp(&x, &[0], opts, 1.0);
    // t = 0.7·one_hot + 0.1: g = p − t, and p = 0 on the masked class.
    assert!((g[[0, 1]] + 0.1).abs() < 1e-16);
    assert!(g.iter().all(|v| v.is_finite()));
}

#[test]
#[should_panic(
    expected = "softmax_cross_entropy: row 1 (label 0) is fully masked: every logit is -inf"
)]
fn softmax_cross_entropy_all_masked_row_panics() {
    let ninf = f64::NEG_INFINITY;
    let x = array![[0.0, 1.0], [ninf, ninf]];
    ops::softmax_cross_entropy(&x, &[1, 0], XentOptions::default());
}

/// NaN logits (a diverged model: a NaN learning rate) give a NaN loss and NaN
/// gradients for their rows, f32 and f64, on a row of NaN alone too; they were reported
/// as a fully masked row (max skips NaN, so the row's max was −∞).
#[test]
fn softmax_cross_entropy_nan_logits_give_nan() {
    let nan = f64::NAN;
    let x = array![[0.0, 1.0], [nan, nan], [nan, 2.0]];
    let loss = ops::softmax_cross_entropy(&x, &[1, 0, 1], XentOptions::default());
    assert!(loss.is_nan());
    let g = ops::softmax_cross_entropy_vjp(&x, &[1, 0, 1], XentOptions::default(), 1.0);
    assert!(g.row(0).iter().all(|v| v.is_finite()));
    assert!(g.row(1).iter().chain(g.row(2)).all(|v| v.is_nan()), "{g}");
    let x32 = Array2::<f32>::from_elem((3, 40), f32::NAN);
    assert!(ops::softmax_cross_entropy(&x32, &[0, 1, 2], XentOptions::default()).is_nan());
}

#[test]
#[should_panic(expected = "softmax_cross_entropy: row 2 has label 5, out of range for 5 classes")]
fn softmax_cross_entropy_out_of_range_label_panics() {
    let x = Array2::<f32>::zeros((3, 5));
    ops::softmax_cross_entropy(&x, &[0, 4, 5], XentOptions::default());
}

#[test]
fn gradcheck_bce_with_logits_and_mse() {
    let mut rng = Rng(16);
    let x: Array2<f64> = rng.array_map((3, 4), |v| v * 6.0);
    let t: Array2<f64> = rng.array_map((3, 4), |v| (v + 1.0) / 2.0);
    let d = 1.3;
    let (gx, gt) = ops::bce_with_logits_vjp(&x, &t, d);
    assert_close(
        "bce d_x",
        &gx,
        &num_grad(&x, |xp| d * ops::bce_with_logits(xp, &t)),
        TOL,
    );
    assert_close(
        "bce d_y",
        &gt,
        &num_grad(&t, |tp| d * ops::bce_with_logits(&x, tp)),
        TOL,
    );
    // Stable at extreme logits: ln(1 + e^1000) is not evaluated directly.
    assert!(ops::bce_with_logits(&array![1000.0, -1000.0], &array![0.0, 1.0]) == 1000.0);
    // Infinite logits: the limits, in both precisions (∞ − ∞ in the plain formula).
    bce_limits::<f64>();
    bce_limits::<f32>();
    let (gp, gt) = ops::mse_vjp(&x, &t, d);
    assert_close(
        "mse d_pred",
        &gp,
        &num_grad(&x, |xp| d * ops::mse(xp, &t)),
        TOL,
    );
    assert_close(
        "mse d_target",
        &gt,
        &num_grad(&t, |tp| d * ops::mse(&x, tp)),
        TOL,
    );
}

/// `bce_with_logits` and its pullback at infinite logits: loss 0 and gradient 0 where
/// the target matches the sign (z = +∞, y = 1; z = −∞, y = 0), loss +∞ and gradient
/// ±1 where it does not, ∂/∂y = −z; NaN stays NaN.
fn bce_limits<T: backprop::kernels::Real>() {
    let (inf, zero, one) = (T::infinity(), T::zero(), T::one());
    let half = T::from(0.5).unwrap();
    // (z, y, loss, d_z, d_y), one element at a time (n = 1).
    for (z, y, loss, dz, dy) in [
        (inf, one, zero, zero, -inf),
        (-inf, zero, zero, zero, inf),
        (inf, zero, inf, one, -inf),
        (-inf, one, inf, -one, inf),
        (inf, half, inf, half, -inf),
    ] {
        let (zs, ys) = (array![z], array![y]);
        assert_eq!(
            ops::bce_with_logits(&zs, &ys),
            loss,
            "loss at z = {z}, y = {y}"
        );
        let (gz, gy) = ops::bce_with_logits_vjp(&zs, &ys, one);
        assert_eq!((gz[0], gy[0]), (dz, dy), "gradient at z = {z}, y = {y}");
    }
    // A matched infinite logit among finite ones adds nothing to the mean.
    let l = ops::bce_with_logits(&array![inf, zero], &array![one, one]);
    assert_eq!(l, T::from(std::f64::consts::LN_2 / 2.0).unwrap());
    assert!(ops::bce_with_logits(&array![inf], &array![T::nan()]).is_nan());
    assert!(ops::bce_with_logits(&array![T::nan()], &array![one]).is_nan());
}

// ---------------------------------------------------------------- matmul, reductions

/// The lesson's linear + ReLU example, exact.
#[test]
fn linear_relu_example_exact() {
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let w = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let z = ops::matmul(&x, &w);
    assert_eq!(z, array![[4.0, 5.0], [10.0, 11.0]]);
    let a = ops::relu(&z);
    let d_a = ops::sum_vjp(&a.raw_dim(), 1.0); // L = sum(a)
    let d_z = ops::relu_vjp(&a, &d_a); // all of Z > 0: passes through
    let (d_x, d_w) = ops::matmul_vjp(&x, &w, &d_z);
    assert_eq!(d_w, array![[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]); // Xᵀ·1
    assert_eq!(d_x, array![[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]); // 1·Wᵀ
    // Same in f32.
    let (d_x32, d_w32) = ops::matmul_vjp(
        &x.mapv(|v| v as f32),
        &w.mapv(|v| v as f32),
        &d_z.mapv(|v| v as f32),
    );
    assert_eq!(d_w32, array![[5.0f32, 5.0], [7.0, 7.0], [9.0, 9.0]]);
    assert_eq!(d_x32, array![[1.0f32, 1.0, 2.0], [1.0, 1.0, 2.0]]);
}

#[test]
fn gradcheck_matmul_with_transposed_views() {
    let mut rng = Rng(17);
    let a_store: Array2<f64> = rng.array_map((4, 3), |v| v); // a = a_store.t(): 3×4 view
    let b: Array2<f64> = rng.array_map((4, 5), |v| v);
    let w: Array2<f64> = rng.array_map((3, 5), |v| v);
    let a = a_store.t();
    let (ga, gb) = ops::matmul_vjp(&a, &b, &w);
    assert_close(
        "matmul d_a",
        &ga,
        &num_grad(&a.to_owned(), |ap| dot(&w, &ops::matmul(ap, &b))),
        TOL,
    );
    assert_close(
        "matmul d_b",
        &gb,
        &num_grad(&b, |bp| dot(&w, &ops::matmul(&a, bp))),
        TOL,
    );
    let x: Array1<f64> = rng.array_map(4, |v| v);
    let wv: Array1<f64> = rng.array_map(3, |v| v);
    let (ga, gx) = ops::matvec_vjp(&a, &x, &wv);
    assert_close(
        "matvec d_a",
        &ga,
        &num_grad(&a.to_owned(), |ap| dot(&wv, &ops::matvec(ap, &x))),
        TOL,
    );
    assert_close(
        "matvec d_x",
        &gx,
        &num_grad(&x, |xp| dot(&wv, &ops::matvec(&a, xp))),
        TOL,
    );
}

/// The batched product against a loop of 2-D products, item by item, with broadcast
/// batch axes repeated.
fn matmul_by_loop(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    let (na, nb) = (a.ndim(), b.ndim());
    let (m, n) = (a.shape()[na - 2], b.shape()[nb - 1]);
    let nd = na.max(nb);
    let pad = |s: &[usize]| {
        let mut p = vec![1; nd - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (sa, sb) = (pad(a.shape()), pad(b.shape()));
    let a = a.to_shape(IxDyn(&sa)).unwrap().to_owned();
    let b = b.to_shape(IxDyn(&sb)).unwrap().to_owned();
    let batch: Vec<usize> = (0..nd - 2).map(|i| sa[i].max(sb[i])).collect();
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let mut out = ArrayD::zeros(IxDyn(&out_shape));
    for idx in ndarray::indices(IxDyn(&batch)) {
        let pick = |x: &ArrayD<f64>, s: &[usize]| -> Array2<f64> {
            let mut v = x.view();
            for (ax, &len) in s[..nd - 2].iter().enumerate() {
                v = v.index_axis_move(Axis(0), if len == 1 { 0 } else { idx[ax] });
            }
            v.into_dimensionality::<ndarray::Ix2>().unwrap().to_owned()
        };
        let (ai, bi) = (pick(&a, &sa), pick(&b, &sb));
        let mut o = out.view_mut();
        for ax in 0..nd - 2 {
            o = o.index_axis_move(Axis(0), idx[ax]);
        }
        o.assign(&ai.dot(&bi).into_dyn());
    }
    out
}

/// Batched `matmul` at random inputs: values against a loop of 2-D products, both
/// pullbacks against central differences, for a linear layer on `[B, T, d]`, attention
/// scores on `[B, H, T, d]` with a permuted (strided) right operand, batch axes
/// broadcast on either side, and a 2-D left operand times a batch.
#[test]
fn gradcheck_batched_matmul() {
    let mut rng = Rng(29);
    let k4: ndarray::Array4<f64> = rng.array_map((2, 3, 5, 4), |v| v);
    let cases: Vec<(&str, ArrayD<f64>, ArrayD<f64>)> = vec![
        (
            "[B,T,d]·[d,n]",
            rng.array_map((2, 3, 4), |v| v).into_dyn(),
            rng.array_map((4, 5), |v| v).into_dyn(),
        ),
        (
            "[B,H,T,d]·[B,H,d,T] (rhs a permuted view)",
            rng.array_map((2, 3, 5, 4), |v| v).into_dyn(),
            k4.view().permuted_axes([0, 1, 3, 2]).to_owned().into_dyn(),
        ),
        (
            "[B,1,T,d]·[H,d,n] (batch broadcast both ways)",
            rng.array_map((2, 1, 3, 4), |v| v).into_dyn(),
            rng.array_map((3, 4, 2), |v| v).into_dyn(),
        ),
        (
            "[m,k]·[B,k,n]",
            rng.array_map((3, 4), |v| v).into_dyn(),
            rng.array_map((2, 4, 5), |v| v).into_dyn(),
        ),
    ];
    for (what, a, b) in cases {
        let y = ops::matmul(&a, &b);
        assert_close(
            &format!("{what}: value"),
            &y,
            &matmul_by_loop(&a, &b),
            1e-12,
        );
        let w: ArrayD<f64> = rng.array_map(IxDyn(y.shape()), |v| v);
        let (ga, gb) = ops::matmul_vjp(&a, &b, &w);
        assert_close(
            &format!("{what}: d_a"),
            &ga,
            &num_grad(&a, |ap| dot(&w, &ops::matmul(ap, &b))),
            TOL,
        );
        assert_close(
            &format!("{what}: d_b"),
            &gb,
            &num_grad(&b, |bp| dot(&w, &ops::matmul(&a, bp))),
            TOL,
        );
    }
    // Static dimension types: the result has the larger operand's.
    let x: Array3<f64> = rng.array_map((2, 3, 4), |v| v);
    let wt: Array2<f64> = rng.array_map((5, 4), |v| v);
    let y: Array3<f64> = ops::matmul(&x, &wt.t());
    assert_close(
        "Array3·view",
        &y.into_dyn(),
        &matmul_by_loop(&x.clone().into_dyn(), &wt.t().to_owned().into_dyn()),
        1e-12,
    );
    let q: ndarray::Array4<f64> = rng.array_map((2, 2, 3, 4), |v| v);
    let s: ndarray::Array4<f64> = ops::matmul(
        &q,
        &k4.slice(ndarray::s![..2, ..2, ..3, ..])
            .permuted_axes([0, 1, 3, 2]),
    );
    assert_eq!(s.shape(), &[2, 2, 3, 3]);
}

/// A batched product in f32 and a large one that spreads its items over threads
/// agree with the loop of 2-D products.
#[test]
fn batched_matmul_f32_and_parallel_batches() {
    let mut rng = Rng(31);
    let a: ndarray::Array4<f64> = rng.array_map((4, 6, 40, 32), |v| v);
    let b: ndarray::Array4<f64> = rng.array_map((4, 6, 32, 40), |v| v);
    let y = ops::matmul(&a, &b);
    assert_close(
        "parallel items",
        &y.into_dyn(),
        &matmul_by_loop(&a.clone().into_dyn(), &b.clone().into_dyn()),
        1e-12,
    );
    let (a32, b32) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
    let y32 = ops::matmul(&a32, &b32).mapv(|v| v as f64);
    assert_close(
        "f32",
        &y32.into_dyn(),
        &matmul_by_loop(&a.into_dyn(), &b.into_dyn()),
        1e-5,
    );
}

#[test]
#[should_panic(expected = "matmul: cannot broadcast the batch axes of lhs 2×3×4 with rhs 5×4×6")]
fn batched_matmul_batch_mismatch_names_both_shapes() {
    ops::matmul(
        &Array3::<f64>::zeros((2, 3, 4)),
        &Array3::<f64>::zeros((5, 4, 6)),
    );
}

#[test]
#[should_panic(expected = "matmul: lhs is 2×3×4 but rhs is 2×5×6")]
fn batched_matmul_inner_mismatch_names_both_shapes() {
    ops::matmul(
        &Array3::<f64>::zeros((2, 3, 4)),
        &Array3::<f64>::zeros((2, 5, 6)),
    );
}

#[test]
#[should_panic(expected = "matmul: rhs is 4, which has fewer than two axes; write matvec or dot")]
fn matmul_of_a_vector_points_to_matvec() {
    ops::matmul(&Array3::<f64>::zeros((2, 3, 4)), &Array1::<f64>::zeros(4));
}

#[test]
#[should_panic(expected = "matmul: lhs is 128×784 but rhs is 785×256")]
fn matmul_shape_mismatch_panics_naming_both_shapes() {
    ops::matmul(
        &Array2::<f32>::zeros((128, 784)),
        &Array2::<f32>::zeros((785, 256)),
    );
}

#[test]
#[should_panic(expected = "matvec: lhs is 2×3 but rhs is 4")]
fn matvec_shape_mismatch_panics() {
    ops::matvec(&Array2::<f64>::zeros((2, 3)), &Array1::<f64>::zeros(4));
}

#[test]
fn gradcheck_reductions() {
    let mut rng = Rng(18);
    let x: Array3<f64> = rng.array_map((2, 3, 4), |v| v);
    assert_close(
        "sum",
        &ops::sum_vjp(&x.raw_dim(), 0.5),
        &num_grad(&x, |xp| 0.5 * ops::sum(xp)),
        TOL,
    );
    assert_close(
        "mean",
        &ops::mean_vjp(&x.raw_dim(), 0.5),
        &num_grad(&x, |xp| 0.5 * ops::mean(xp)),
        TOL,
    );
    for ax in 0..3 {
        let axis = Axis(ax);
        let w = ops::sum_axis(&x, axis).mapv(|_| rng.unit());
        let g = ops::sum_axis_vjp(&x.raw_dim(), axis, &w);
        assert_close(
            "sum_axis",
            &g,
            &num_grad(&x, |xp| dot(&w, &ops::sum_axis(xp, axis))),
            TOL,
        );
        let g = ops::mean_axis_vjp(&x.raw_dim(), axis, &w);
        assert_close(
            "mean_axis",
            &g,
            &num_grad(&x, |xp| dot(&w, &ops::mean_axis(xp, axis))),
            TOL,
        );
    }
    assert_eq!(
        ops::mean_axis(&array![[1.0, 2.0], [3.0, 6.0]], Axis(0)),
        array![2.0, 4.0]
    );
}

// ---------------------------------------------------------------- broadcasting

type Bin = fn(&ArrayD<f64>, &ArrayD<f64>) -> ArrayD<f64>;
type BinVjp = fn(&ArrayD<f64>, &ArrayD<f64>, &ArrayD<f64>) -> (ArrayD<f64>, ArrayD<f64>);

fn binary_ops() -> [(&'static str, Bin, BinVjp); 4] {
    [
        (
            "add",
            |a, b| ops::add(a, b),
            |a, b, d| ops::add_vjp(&a.raw_dim(), &b.raw_dim(), d),
        ),
        (
            "sub",
            |a, b| ops::sub(a, b),
            |a, b, d| ops::sub_vjp(&a.raw_dim(), &b.raw_dim(), d),
        ),
        (
            "mul",
            |a, b| ops::mul(a, b),
            |a, b, d| ops::mul_vjp(a, b, d),
        ),
        (
            "div",
            |a, b| ops::div(a, b),
            |a, b, d| ops::div_vjp(a, b, d),
        ),
    ]
}

#[test]
fn gradcheck_broadcasting_binary_ops() {
    let mut rng = Rng(19);
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),       // a bias row added to every row
        (&[3, 1], &[1, 4]),    // outer broadcast
        (&[2, 3, 4], &[3, 1]), // leading axis and a size-1 axis
        (&[4], &[2, 3, 4]),    // the lhs is the broadcast one
        (&[2, 1, 4], &[1]),
    ];
    for (sa, sb) in shapes {
        for (name, f, vjp) in binary_ops() {
            let a = rng.array_map(IxDyn(sa), |v| v * 2.0);
            // Divisors away from 0.
            let b = rng.array_map(IxDyn(sb), |v| {
                if name == "div" {
                    away_from_zero(v)
                } else {
                    v * 2.0
                }
            });
            let y = f(&a, &b);
            let w = y.mapv(|_| rng.unit());
            let (ga, gb) = vjp(&a, &b, &w);
            assert_eq!(
                (ga.shape(), gb.shape()),
                (sa, sb),
                "{name}: cotangents keep the input shapes"
            );
            assert_close(
                &format!("{name} d_a {sa:?}⊕{sb:?}"),
                &ga,
                &num_grad(&a, |ap| dot(&w, &f(ap, &b))),
                TOL,
            );
            assert_close(
                &format!("{name} d_b {sa:?}⊕{sb:?}"),
                &gb,
                &num_grad(&b, |bp| dot(&w, &f(&a, bp))),
                TOL,
            );
        }
    }
}

#[test]
fn bias_row_pullback_sums_over_the_batch() {
    let x = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let b = array![10.0f32, 20.0];
    assert_eq!(
        ops::add(&x, &b),
        array![[11.0, 22.0], [13.0, 24.0], [15.0, 26.0]]
    );
    let d_y = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
    let (d_x, d_b) = ops::add_vjp(&x.raw_dim(), &b.raw_dim(), &d_y);
    assert_eq!(d_x, d_y);
    assert_eq!(d_b, array![9.0, 12.0]);
}

#[test]
#[should_panic(expected = "add: cannot broadcast lhs 2×3 with rhs 2")]
fn broadcast_mismatch_panics_naming_both_shapes() {
    ops::add(&Array2::<f64>::zeros((2, 3)), &Array1::<f64>::zeros(2));
}

#[test]
#[should_panic(expected = "relu_vjp: saved is 2×3 but d_y is 3×2")]
fn vjp_shape_mismatch_panics() {
    ops::relu_vjp(&Array2::<f64>::zeros((2, 3)), &Array2::<f64>::zeros((3, 2)));
}

// ---------------------------------------------------------------- a 2-layer MLP

struct Mlp {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array2<f64>,
    b2: Array1<f64>,
}

/// L = CE(relu(X·W1 + b1)·W2 + b2, y), mean over the batch.
fn mlp_loss(p: &Mlp, x: &Array2<f64>, y: &[usize]) -> f64 {
    let h = ops::add(&ops::matmul(x, &p.w1), &p.b1);
    let a = ops::relu(&h);
    let z = ops::add(&ops::matmul(&a, &p.w2), &p.b2);
    ops::softmax_cross_entropy(&z, y, XentOptions::default())
}

/// The same forward, then one pullback per line in reverse order.
fn mlp_grad(p: &Mlp, x: &Array2<f64>, y: &[usize]) -> Mlp {
    let xw1 = ops::matmul(x, &p.w1);
    let h = ops::add(&xw1, &p.b1);
    let a = ops::relu(&h);
    let aw2 = ops::matmul(&a, &p.w2);
    let z = ops::add(&aw2, &p.b2);
    let d_z = ops::softmax_cross_entropy_vjp(&z, y, XentOptions::default(), 1.0);
    let (d_aw2, d_b2) = ops::add_vjp(&aw2.raw_dim(), &p.b2.raw_dim(), &d_z);
    let (d_a, d_w2) = ops::matmul_vjp(&a, &p.w2, &d_aw2);
    let d_h = ops::relu_vjp(&a, &d_a);
    let (d_xw1, d_b1) = ops::add_vjp(&xw1.raw_dim(), &p.b1.raw_dim(), &d_h);
    let (_d_x, d_w1) = ops::matmul_vjp(x, &p.w1, &d_xw1);
    Mlp {
        w1: d_w1,
        b1: d_b1,
        w2: d_w2,
        b2: d_b2,
    }
}

#[test]
fn gradcheck_two_layer_mlp_8_16_4() {
    let mut rng = Rng(20);
    let x: Array2<f64> = rng.array_map((6, 8), |v| v);
    let y = labels_for(6, 4);
    let p = Mlp {
        w1: rng.array_map((8, 16), |v| v * 0.5),
        b1: rng.array_map(16, |v| v * 0.1),
        w2: rng.array_map((16, 4), |v| v * 0.5),
        b2: rng.array_map(4, |v| v * 0.1),
    };
    // Away from kinks: no hidden pre-activation within 1e-3 of 0.
    let h = ops::add(&ops::matmul(&x, &p.w1), &p.b1);
    assert!(
        h.iter().all(|v| v.abs() > 1e-3),
        "pick another seed: a pre-activation sits on the ReLU kink"
    );
    let g = mlp_grad(&p, &x, &y);
    let with = |f: &dyn Fn(&mut Mlp)| {
        let mut q = Mlp {
            w1: p.w1.clone(),
            b1: p.b1.clone(),
            w2: p.w2.clone(),
            b2: p.b2.clone(),
        };
        f(&mut q);
        mlp_loss(&q, &x, &y)
    };
    assert_close(
        "mlp d_w1",
        &g.w1,
        &num_grad(&p.w1, |w| with(&|q| q.w1 = w.clone())),
        TOL,
    );
    assert_close(
        "mlp d_b1",
        &g.b1,
        &num_grad(&p.b1, |b| with(&|q| q.b1 = b.clone())),
        TOL,
    );
    assert_close(
        "mlp d_w2",
        &g.w2,
        &num_grad(&p.w2, |w| with(&|q| q.w2 = w.clone())),
        TOL,
    );
    assert_close(
        "mlp d_b2",
        &g.b2,
        &num_grad(&p.b2, |b| with(&|q| q.b2 = b.clone())),
        TOL,
    );
}

/// The transpose of broadcasting summed the slow, obvious way: for every element of `g`,
/// add it to the target element it was broadcast from.
fn unbroadcast_by_hand(g: &ArrayD<f64>, target: &[usize]) -> ArrayD<f64> {
    let pad = g.ndim() - target.len();
    let mut out = ArrayD::zeros(IxDyn(target));
    for (idx, &v) in g.indexed_iter() {
        let from: Vec<usize> = (0..target.len())
            .map(|a| if target[a] == 1 { 0 } else { idx[a + pad] })
            .collect();
        out[IxDyn(&from)] += v;
    }
    out
}

#[test]
fn unbroadcast_equals_the_sum_by_hand_for_every_pattern_and_layout() {
    let mut rng = Rng(0x5eed);
    let g = rng.array_map((2, 3, 4), |v| v).into_dyn();
    // Leading axes summed away (the one-pass path), size-1 axes kept (general path),
    // both, nothing, and everything.
    let targets: [&[usize]; 10] = [
        &[4],
        &[3, 4],
        &[1, 4],
        &[1, 3, 4],
        &[1, 1, 4],
        &[2, 1, 4],
        &[2, 3, 1],
        &[3, 1],
        &[2, 3, 4],
        &[],
    ];
    for t in targets {
        let want = unbroadcast_by_hand(&g, t);
        let got = ops::unbroadcast(&g, &IxDyn(t));
        assert_eq!(got.shape(), t, "shape for target {t:?}");
        for (a, b) in got.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-12, "target {t:?}: {a} vs {b}");
        }
        // A non-contiguous view (axes permuted) takes the general path: same sums.
        let p = g.clone().permuted_axes(IxDyn(&[2, 1, 0]));
        let pt: Vec<usize> = p.shape().to_vec();
        if t.len() <= 3
            && t.iter()
                .rev()
                .zip(pt.iter().rev())
                .all(|(a, b)| a == b || *a == 1)
        {
            let want = unbroadcast_by_hand(&p.to_owned(), t);
            let got = ops::unbroadcast(&p, &IxDyn(t));
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() < 1e-12, "permuted, target {t:?}: {a} vs {b}");
            }
        }
    }
    // A bias row summed over a batch: exact values.
    let d = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
    assert_eq!(ops::unbroadcast(&d, &ndarray::Ix1(2)), array![9.0, 12.0]);
    assert_eq!(
        ops::unbroadcast(&d, &ndarray::Ix2(1, 2)),
        array![[9.0, 12.0]]
    );
    assert_eq!(
        ops::unbroadcast(&d, &ndarray::Ix2(3, 1)),
        array![[3.0], [7.0], [11.0]]
    );
    // An empty batch sums to zeros of the target's shape.
    let e = Array2::<f64>::zeros((0, 3));
    assert_eq!(ops::unbroadcast(&e, &ndarray::Ix1(3)), Array1::zeros(3));
}

/// A bias gradient large enough to be summed on several threads (a `[512, 2048]`
/// layer's, and widths that leave a short last strip): the same bits as adding the rows
/// in order on one thread, which is what the split promises.
#[test]
fn large_bias_gradients_sum_on_threads_as_on_one() {
    let mut rng = Rng(0xb1a5);
    for (rows, cols) in [(512, 2048), (600, 1000), (2049, 129), (70_000, 4), (300, 1)] {
        let g: Array2<f32> = Array2::from_shape_fn((rows, cols), |_| rng.unit() as f32 - 0.5);
        let mut want = vec![0.0f32; cols];
        for r in g.rows() {
            for (w, &v) in want.iter_mut().zip(r.iter()) {
                *w += v;
            }
        }
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| ops::unbroadcast(&g, &ndarray::Ix1(cols)));
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rows}×{cols} on {threads} threads"
            );
        }
    }
}

#[test]
#[should_panic(expected = "unbroadcast: 3 does not broadcast to 2×4")]
fn unbroadcast_names_both_shapes_when_they_do_not_broadcast() {
    let g = Array2::<f64>::zeros((2, 4));
    ops::unbroadcast(&g, &ndarray::Ix1(3));
}

#[test]
fn matmul_writes_every_element_of_its_fresh_output() {
    // `ops::matmul` allocates its output without zero-filling it; every element must
    // still equal the product, at sizes on both sides of gemm's blocks, for transposed
    // operands, and for an inner dimension of 0 (a product of zeros).
    let mut rng = Rng(7);
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 3, 5),
        (33, 17, 65),
        (128, 10, 256),
        (5, 0, 4),
    ] {
        let a = rng.array_map((m, k), |v| v);
        let b = rng.array_map((k, n), |v| v);
        let want = Array2::from_shape_fn((m, n), |(i, j)| {
            (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum::<f64>()
        });
        let got = ops::matmul(&a, &b);
        assert_close("matmul", &got, &want, 1e-12);
        let got_t = ops::matmul(&b.t(), &a.t());
        assert_close("matmul of transposes", &got_t, &want.t(), 1e-12);
    }
}

#[test]
fn relu_pullback_masks_in_any_layout_and_zeroes_nan_where_off() {
    use backprop::Pullback;
    let x = array![[-1.0, 2.0, 0.0], [3.0, -4.0, 5.0]];
    // Standard layout: the slice path.
    let (y, tape) = ops::relu::forward(&x);
    assert_eq!(y, array![[0.0, 2.0, 0.0], [3.0, 0.0, 5.0]]);
    let (d,) = tape.backward(array![[f64::NAN, 1.0, 7.0], [2.0, f64::NAN, 3.0]]);
    assert_eq!(d, array![[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]]);
    // A cotangent in column-major layout: the general path, same answer.
    let (_, tape) = ops::relu::forward(&x);
    use ndarray::ShapeBuilder;
    let d_y = Array2::from_shape_vec((2, 3).f(), vec![1.0, 2.0, 1.0, 9.0, 7.0, 3.0]).unwrap();
    assert!(!d_y.is_standard_layout());
    let (d,) = tape.backward(d_y);
    assert_eq!(d, array![[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]]);
}

#[test]
#[should_panic(expected = "relu pullback: the cotangent is 3×2 but the value is 2×3")]
fn relu_pullback_names_both_shapes_on_a_mismatch() {
    use backprop::Pullback;
    let (_, tape) = ops::relu::forward(&array![[-1.0, 2.0, 0.0], [3.0, -4.0, 5.0]]);
    tape.backward(Array2::zeros((3, 2)));
}

// ---- one spelling, one behaviour: `ops::mul`/`ops::div` and `*`/`/` ------------------

#[backprop::grad(a, b)]
fn mul_div_as_ops(a: &Array2<f64>, b: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let p = ops::mul(a, b);
    let q = ops::div(a, b);
    (ops::mul(&p, w) + ops::mul(&q, w)).sum()
}

#[backprop::grad(a, b)]
fn mul_div_as_operators(a: &Array2<f64>, b: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let p = a * b;
    let q = a / b;
    (&p * w + &q * w).sum()
}

/// The runtime ops and the operators are one rule each (the rule table's `mul_vjp_*`,
/// `div_vjp_*`): the same gradient at random points (to the last bits, which depend on
/// the order the two contributions to `d_b` are added in), and the same strong zero
/// where a zero cotangent meets an infinite factor (`w = 0` where `b = ∞`), which a
/// plain product would turn into NaN.
#[test]
fn ops_mul_div_and_the_operators_give_the_same_gradient() {
    let mut rng = Rng(77);
    let a: Array2<f64> = rng.array_map((3, 4), |u| 2.0 * u);
    let mut b: Array2<f64> = rng.array_map((3, 4), |u| 1.25 + 0.75 * u);
    let mut w: Array2<f64> = rng.array_map((3, 4), |u| u);
    let (v1, g1) = mul_div_as_ops_grad(&a, &b, &w);
    let (v2, g2) = mul_div_as_operators_grad(&a, &b, &w);
    assert_eq!(v1, v2);
    let close = |x: &Array2<f64>, y: &Array2<f64>| {
        x.iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= 1e-14 * p.abs().max(1.0))
    };
    assert!(
        close(&g1.a, &g2.a) && close(&g1.b, &g2.b),
        "{g1:?} vs {g2:?}"
    );
    b[[1, 2]] = f64::INFINITY;
    w[[1, 2]] = 0.0;
    let (_, g1) = mul_div_as_ops_grad(&a, &b, &w);
    let (_, g2) = mul_div_as_operators_grad(&a, &b, &w);
    assert_eq!(
        (g1.a[[1, 2]], g1.b[[1, 2]]),
        (0.0, 0.0),
        "strong zero through ops"
    );
    assert_eq!(
        (g2.a[[1, 2]], g2.b[[1, 2]]),
        (0.0, 0.0),
        "strong zero through * and /"
    );
    assert!(
        close(&g1.a, &g2.a) && close(&g1.b, &g2.b),
        "{g1:?} vs {g2:?}"
    );
}

/// `backprop::gelu`/`silu` on a scalar and `ops::gelu`/`silu` on an array are one formula
/// (`kernels::activation::{gelu,silu}_{value,local}`) with the sigmoid the path computes
/// with: they agree to a few ulps everywhere, limits at ±∞ included, values and
/// derivatives.
#[test]
fn scalar_and_array_gelu_silu_agree() {
    let xs = [
        f64::NEG_INFINITY,
        -40.0,
        -9.5,
        -3.0,
        -0.7,
        -1e-8,
        0.0,
        0.3,
        1.0,
        2.5,
        12.0,
        1e160,
        f64::INFINITY,
    ];
    let x = Array1::from(xs.to_vec());
    let ones = Array1::from_elem(xs.len(), 1.0);
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-14 * a.abs().max(1.0);
    let (y, d) = (ops::gelu(&x), ops::gelu_vjp(&x, &ones));
    for (k, &v) in xs.iter().enumerate() {
        let (_, g) = backprop::gelu::forward(v);
        let (dv,) = backprop::Pullback::backward(g, 1.0);
        assert!(
            close(backprop::gelu(v), y[k]),
            "gelu({v}): {} vs {}",
            backprop::gelu(v),
            y[k]
        );
        assert!(close(dv, d[k]), "gelu'({v}): {dv} vs {}", d[k]);
    }
    let (y, d) = (ops::silu(&x), ops::silu_vjp(&x, &ones));
    for (k, &v) in xs.iter().enumerate() {
        let (_, g) = backprop::silu::forward(v);
        let (dv,) = backprop::Pullback::backward(g, 1.0);
        assert!(
            close(backprop::silu(v), y[k]),
            "silu({v}): {} vs {}",
            backprop::silu(v),
            y[k]
        );
        assert!(close(dv, d[k]), "silu'({v}): {dv} vs {}", d[k]);
    }
}
