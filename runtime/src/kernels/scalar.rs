//! Reference implementations: the fallback when SIMD is unavailable or
//! `BACKPROP_FORCE_ARCH=scalar`, and the oracles the kernel tests compare against.
//! Written for obviousness, not speed.

use super::Real;
use super::activation::{StdMath, Unary, backward_body, forward_body};
use super::softmax_xent::XentOptions;

/// The schoolbook matmul (it lives with the matmul kernel, which falls back on it).
pub use super::matmul::reference::matmul;

/// `y = f(x)` with `std`'s transcendental functions.
pub fn unary_forward<T: Real>(op: Unary<T>, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len());
    forward_body::<T, StdMath>(op, x, y)
}

/// `d_x = d_y · f′(saved)` with `std`'s transcendental functions.
pub fn unary_backward<T: Real>(op: Unary<T>, saved: &[T], d_y: &[T], d_x: &mut [T]) {
    assert!(saved.len() == d_y.len() && d_y.len() == d_x.len());
    backward_body::<T, StdMath>(op, saved, d_y, d_x)
}

/// Softmax cross-entropy by the textbook formulas, row by row, with its gradient:
/// `p = softmax(x)` (max-shifted), `loss_r = −Σ_j t_j ln p_j` with
/// `t = (1−ε)·one_hot(y) + ε/C`, mean over the rows whose label is not ignored,
/// `grad = d_loss·(p − t)/N`. Returns the loss; panics like the fused kernel.
pub fn softmax_xent<T: Real>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    d_loss: T,
    grad: &mut [T],
) -> T {
    super::softmax_xent::check_args(logits.len(), cols, labels, grad.len());
    let count = super::softmax_xent::counted_rows(labels, opts);
    let eps = opts.label_smoothing;
    let c = T::from(cols).unwrap();
    let mut total = T::zero();
    for (r, (&y, (row, g))) in labels
        .iter()
        .zip(logits.chunks(cols).zip(grad.chunks_mut(cols)))
        .enumerate()
    {
        if Some(y) == opts.ignore_index {
            g.fill(T::zero());
            continue;
        }
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        super::softmax_xent::check_row(r, y, m, row);
        let s: T = row.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + s.ln();
        for (j, (&v, gj)) in row.iter().zip(g.iter_mut()).enumerate() {
            let t = (T::one() - eps) * if j == y { T::one() } else { T::zero() } + eps / c;
            let logp = v - lse;
            if t != T::zero() {
                total -= t * logp;
            }
            *gj = d_loss * (logp.exp() - t) / count;
        }
    }
    total / count
}

/// Masked row softmax with `std`'s `exp`: the oracle of
/// [`super::masked_softmax::forward`].
pub fn masked_softmax<T: Real>(
    x: &[T],
    n: usize,
    keep: super::masked_softmax::Keep<'_>,
    y: &mut [T],
    lse: &mut [T],
) {
    super::masked_softmax::forward_body::<T, StdMath>(x, n, keep, y, lse)
}

/// `e^(p − lse)` per row with `std`'s `exp`: the oracle of
/// [`super::masked_softmax::exp_shifted`].
pub fn exp_shifted<T: Real>(p: &mut [T], n: usize, causal: bool, lse: &[T]) {
    super::masked_softmax::exp_shifted_body::<T, StdMath>(p, n, causal, lse)
}
