//! Losses: softmax cross-entropy (fused kernel), binary cross-entropy with logits, MSE.
//! Each returns the mean over the batch as a scalar.

use super::same_shape;
use crate::kernels::Real;
use crate::kernels::softmax_xent::{self as kernel, XentOptions};
use ndarray::{Array, Array2, ArrayBase, Data, Dimension, Ix2, Zip};

fn rows_of<'a, S, T>(logits: &'a ArrayBase<S, Ix2>, labels: &[usize]) -> std::borrow::Cow<'a, [T]>
where
    S: Data<Elem = T>,
    T: Real,
{
    if logits.nrows() != labels.len() {
        panic!(
            "softmax_cross_entropy: logits are {}×{} but there are {} labels",
            logits.nrows(),
            logits.ncols(),
            labels.len()
        );
    }
    match logits.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(logits.iter().copied().collect()),
    }
}

/// Mean softmax cross-entropy of `logits` (B×C) against integer class `labels` (B):
/// `(1/N) Σ_rows −Σ_j t_j ln softmax(x)_j`, `t = (1 − ε)·one_hot(y) + ε/C`, `N` = rows not
/// ignored. Options as PyTorch's `cross_entropy(ignore_index, label_smoothing)`.
///
/// # Panics
/// If `labels.len()` is not B, a label is ≥ C (and not `ignore_index`) — the message
/// names the row and the label —, or a counted row is entirely −∞.
///
/// ```
/// use backprop::ops::{softmax_cross_entropy, XentOptions};
/// let logits = ndarray::array![[0.0f64, 0.0], [0.0, 0.0]];
/// let l = softmax_cross_entropy(&logits, &[0, 1], XentOptions::default());
/// assert!((l - std::f64::consts::LN_2).abs() < 1e-15);
/// ```
pub fn softmax_cross_entropy<S, T>(
    logits: &ArrayBase<S, Ix2>,
    labels: &[usize],
    opts: XentOptions<T>,
) -> T
where
    S: Data<Elem = T>,
    T: Real,
{
    let x = rows_of(logits, labels);
    let mut lse = vec![T::zero(); labels.len()];
    kernel::forward(&x, logits.ncols(), labels, opts, &mut lse)
}

/// Pullback of [`softmax_cross_entropy`]: `d_logits = d_loss·(softmax(x) − t)/N`, the
/// lesson's `(p − one_hot(y))/B` at ε = 0 with no ignored rows. Saves the logits (and the
/// constant labels and options); recomputes each row's max and sum in the fused kernel.
///
/// # Panics
/// As [`softmax_cross_entropy`].
pub fn softmax_cross_entropy_vjp<S, T>(
    logits: &ArrayBase<S, Ix2>,
    labels: &[usize],
    opts: XentOptions<T>,
    d_loss: T,
) -> Array2<T>
where
    S: Data<Elem = T>,
    T: Real,
{
    let mut g = Array2::zeros(logits.raw_dim());
    softmax_cross_entropy_with_grad(logits, labels, opts, d_loss, &mut g);
    g
}

/// Loss and `d_loss·∂loss/∂logits` in one fused call, writing the gradient into a reused
/// buffer `grad` (B×C, standard layout) — the training loop's path: one read of the
/// logits from memory, one write of the gradient.
///
/// # Panics
/// As [`softmax_cross_entropy`], or if `grad` is not B×C in standard layout.
pub fn softmax_cross_entropy_with_grad<S, T>(
    logits: &ArrayBase<S, Ix2>,
    labels: &[usize],
    opts: XentOptions<T>,
    d_loss: T,
    grad: &mut Array2<T>,
) -> T
where
    S: Data<Elem = T>,
    T: Real,
{
    same_shape(
        "softmax_cross_entropy",
        "logits",
        logits.shape(),
        "grad",
        grad.shape(),
    );
    let x = rows_of(logits, labels);
    let g = grad
        .as_slice_mut()
        .expect("softmax_cross_entropy: grad must be in standard layout");
    kernel::fused(&x, logits.ncols(), labels, opts, d_loss, g)
}

/// Mean binary cross-entropy with logits `x` and targets `y ∈ [0, 1]`, stable form
/// `max(x, 0) − x·y + ln(1 + e^−|x|)` (as PyTorch's `binary_cross_entropy_with_logits`).
/// At an infinite logit each term is its limit: 0 for `x = +∞, y = 1` and for
/// `x = −∞, y = 0`, `+∞` for a wrong sign (the formula as written is NaN for the first two).
///
/// # Panics
/// If `x` and `y` differ in shape.
///
/// ```
/// let l = backprop::ops::bce_with_logits(&ndarray::array![0.0f64, 1000.0], &ndarray::array![1.0, 1.0]);
/// assert!((l - std::f64::consts::LN_2 / 2.0).abs() < 1e-15);
/// ```
pub fn bce_with_logits<S1, S2, T, D>(x: &ArrayBase<S1, D>, y: &ArrayBase<S2, D>) -> T
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("bce_with_logits", "logits", x.shape(), "targets", y.shape());
    let n = T::from(x.len()).unwrap();
    let mut total = T::zero();
    Zip::from(x)
        .and(y)
        .for_each(|&a, &b| total += bce_term(a, b));
    total / n
}

/// One element of [`bce_with_logits`]: `max(x, 0) − x·y + ln(1 + e^−|x|)`. At an
/// infinite logit `max(x, 0) − x·y` is `∞ − ∞`; its limit is `x(1 − y)` for `x = +∞`
/// and `−x·y` for `x = −∞`, which is 0 when the target matches (`y = 1`, resp. 0) and
/// `+∞` otherwise. NaN stays NaN. Finite logits take the formula as it is.
#[inline(always)]
fn bce_term<T: Real>(x: T, y: T) -> T {
    let linear = if x.is_infinite() {
        let w = if x > T::zero() { T::one() - y } else { y };
        if w == T::zero() {
            T::zero()
        } else {
            x.abs() * w
        }
    } else {
        x.max(T::zero()) - x * y
    };
    linear + (-x.abs()).exp().ln_1p()
}

/// Pullback of [`bce_with_logits`]: `d_x = d_l·(σ(x) − y)/n`, `d_y = −d_l·x/n`. Saves
/// both inputs.
///
/// # Panics
/// If the shapes differ.
pub fn bce_with_logits_vjp<S1, S2, T, D>(
    x: &ArrayBase<S1, D>,
    y: &ArrayBase<S2, D>,
    d_l: T,
) -> (Array<T, D>, Array<T, D>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape(
        "bce_with_logits_vjp",
        "logits",
        x.shape(),
        "targets",
        y.shape(),
    );
    let k = d_l / T::from(x.len()).unwrap();
    let d_x = Zip::from(x)
        .and(y)
        .map_collect(|&a, &b| k * (T::one() / (T::one() + (-a).exp()) - b));
    let d_y = x.mapv(|a| -k * a);
    (d_x, d_y)
}

/// Mean squared error `(1/n) Σ (p − t)²`.
///
/// # Panics
/// If the shapes differ.
///
/// ```
/// assert_eq!(backprop::ops::mse(&ndarray::array![1.0f32, 3.0], &ndarray::array![0.0, 1.0]), 2.5);
/// ```
pub fn mse<S1, S2, T, D>(pred: &ArrayBase<S1, D>, target: &ArrayBase<S2, D>) -> T
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("mse", "pred", pred.shape(), "target", target.shape());
    let mut total = T::zero();
    Zip::from(pred)
        .and(target)
        .for_each(|&p, &t| total += (p - t) * (p - t));
    total / T::from(pred.len()).unwrap()
}

/// Pullback of [`mse`]: `d_pred = 2·d_l·(p − t)/n`, `d_target = −d_pred`. Saves both.
///
/// # Panics
/// If the shapes differ.
pub fn mse_vjp<S1, S2, T, D>(
    pred: &ArrayBase<S1, D>,
    target: &ArrayBase<S2, D>,
    d_l: T,
) -> (Array<T, D>, Array<T, D>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("mse_vjp", "pred", pred.shape(), "target", target.shape());
    let k = (d_l + d_l) / T::from(pred.len()).unwrap();
    let d_p = Zip::from(pred)
        .and(target)
        .map_collect(|&p, &t| k * (p - t));
    let d_t = d_p.mapv(|v| -v);
    (d_p, d_t)
}
