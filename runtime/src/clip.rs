//! Gradient clipping: by the global L2 norm over all buffers, and per value.
//!
//! Global-norm clipping (Pascanu et al. 2013, "On the difficulty of training recurrent
//! neural networks", Alg. 1; PyTorch's `clip_grad_norm_`, optax's
//! `clip_by_global_norm`) rescales *all* gradients by one factor, so the update keeps
//! its direction:
//!
//! ```text
//! n = √(Σ_buffers Σ_i g_i²)
//! n > max_norm  ⇒  g ← g · max_norm / n       (the clipped norm is max_norm)
//! ```
//!
//! ```
//! use backprop::clip::{clip_grad_norm, NonFiniteNorm};
//! let mut grads = vec![vec![3.0f32], vec![4.0]]; // two buffers, global norm 5
//! let before = clip_grad_norm(&mut grads, 1.0, NonFiniteNorm::Error).unwrap();
//! assert_eq!(before, 5.0);
//! assert_eq!(grads, [[0.6], [0.8]]);
//! ```

use std::fmt;

use crate::optim::Finite;
use crate::params::{Params, Real};

/// What [`clip_grad_norm`] does when the global norm is NaN or ∞.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFiniteNorm {
    /// Return [`ClipError::NonFiniteNorm`], gradients untouched (PyTorch's
    /// `error_if_nonfinite=True`).
    Error,
    /// Return the non-finite norm as `Ok`, gradients untouched; the optimizer's
    /// [`crate::optim::NonFinite`] policy then skips or rejects the step. (PyTorch's
    /// default instead multiplies every gradient by NaN; we never spread it.)
    Return,
}

/// Errors of clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClipError {
    /// The global norm was NaN or ±∞ (policy [`NonFiniteNorm::Error`]).
    NonFiniteNorm(f64),
    /// `max_norm` / the clip value was negative or NaN.
    BadThreshold(f64),
}

impl fmt::Display for ClipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClipError::NonFiniteNorm(n) => write!(
                f,
                "the global gradient norm is {n}; gradients left unclipped"
            ),
            ClipError::BadThreshold(t) => {
                write!(f, "clipping threshold {t} must be a non-negative number")
            }
        }
    }
}

impl std::error::Error for ClipError {}

/// The global L2 norm `√(Σ g²)` over every buffer of `grads`, accumulated in `f64`
/// (so `f32` sums of millions of terms keep their precision). Where the sum of squares
/// overflows while every value is finite (f64 gradients near 1e155), it is taken again
/// scaled by the largest magnitude (`a·√(Σ (g/a)²)`, as LAPACK's `dnrm2`), so the norm
/// is finite whenever it is representable. NaN anywhere gives NaN, ±∞ gives ∞.
///
/// ```
/// let g = vec![vec![1.0f64, 2.0], vec![2.0]];
/// assert_eq!(backprop::clip::global_norm(&g), 3.0);
/// // Squares of 1e400 overflow; the norm does not (5e200 to rounding: the two values are
/// // not exactly 3e200 and 4e200 in binary).
/// let n = backprop::clip::global_norm(&vec![3e200f64, 4e200]);
/// assert!((n / 5e200 - 1.0).abs() < 1e-15, "{n}");
/// ```
pub fn global_norm<F: Real, P: Params<F> + ?Sized>(grads: &P) -> f64 {
    let mut sum = 0.0f64;
    grads.visit("", &mut |b| {
        sum += sum_of_squares(b.values);
    });
    if sum.is_infinite() {
        let mut max = 0.0f64;
        grads.visit("", &mut |b| {
            for &x in b.values {
                max = max.max(x.f64().abs());
            }
        });
        if max.is_finite() {
            let mut scaled = 0.0f64;
            grads.visit("", &mut |b| {
                scaled += b
                    .values
                    .iter()
                    .map(|&x| (x.f64() / max) * (x.f64() / max))
                    .sum::<f64>();
            });
            return max * scaled.sqrt();
        }
    }
    sum.sqrt()
}

/// `Σ x²` in f64 over eight running sums, one per lane (added in a fixed order at the
/// end), so the loop vectorises: one sum's chain of dependent adds ran at one element per
/// add latency, 1.2 ms for the GPT's 825k gradients against 0.1 ms now.
fn sum_of_squares<F: Real>(xs: &[F]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let v = x.f64();
            *a += v * v;
        }
    }
    let tail: f64 = rest.iter().map(|&x| x.f64() * x.f64()).sum();
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)) + tail
}

/// Clips `grads` in place to a global L2 norm of at most `max_norm`, returning the norm
/// *before* clipping (log it: spikes announce divergence). Below the threshold nothing
/// changes. The scale is exactly `max_norm / n` (PyTorch adds 1e-6 to `n`; we do not, so
/// the clipped norm is `max_norm` up to rounding).
///
/// # Errors
/// [`ClipError::BadThreshold`] if `max_norm` is negative or NaN;
/// [`ClipError::NonFiniteNorm`] under [`NonFiniteNorm::Error`]. Gradients are untouched
/// on error and whenever the norm is non-finite.
pub fn clip_grad_norm<F: Real, P: Params<F> + ?Sized>(
    grads: &mut P,
    max_norm: f64,
    on_non_finite: NonFiniteNorm,
) -> Result<f64, ClipError> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(ClipError::BadThreshold(max_norm));
    }
    let norm = global_norm(&*grads);
    if !norm.is_finite() {
        return match on_non_finite {
            NonFiniteNorm::Error => Err(ClipError::NonFiniteNorm(norm)),
            NonFiniteNorm::Return => Ok(norm),
        };
    }
    if norm > max_norm {
        let scale = F::of(max_norm / norm);
        grads.visit_mut("", &mut |b| b.values.iter_mut().for_each(|x| *x *= scale));
    }
    Ok(norm)
}

/// [`clip_grad_norm`] with [`NonFiniteNorm::Error`], returning with the norm a proof
/// that every gradient value is finite: the norm read each of them, and it is finite
/// only if they all are (see [`Finite`]). Hand the proof to
/// [`crate::optim::Optimizer::step_finite`], which then skips its own scan of the
/// gradients: clipping and stepping read the gradients twice instead of three times.
///
/// # Errors
/// As [`clip_grad_norm`] under [`NonFiniteNorm::Error`]: the gradients are untouched.
///
/// ```
/// use backprop::clip::clip_grad_norm_finite;
/// use backprop::optim::{Optimizer, Sgd, SgdConfig};
/// let mut w = vec![1.0f64, 1.0];
/// let mut g = vec![3.0f64, 4.0];
/// let mut opt = Sgd::<f64>::new(SgdConfig { lr: 0.1, ..Default::default() });
/// let (norm, finite) = clip_grad_norm_finite(&mut g, 1.0).unwrap();
/// assert_eq!(norm, 5.0);
/// opt.step_finite(&mut w, finite).unwrap();
/// assert_eq!(w, [1.0 - 0.1 * 0.6, 1.0 - 0.1 * 0.8]);
/// let mut bad = vec![f64::NAN];
/// assert!(clip_grad_norm_finite(&mut bad, 1.0).is_err());
/// ```
pub fn clip_grad_norm_finite<F: Real, P: Params<F> + ?Sized>(
    grads: &mut P,
    max_norm: f64,
) -> Result<(f64, Finite<'_, P>), ClipError> {
    let norm = clip_grad_norm(grads, max_norm, NonFiniteNorm::Error)?;
    debug_assert!(norm.is_finite());
    Ok((norm, Finite::checked_by_caller(&*grads)))
}

/// Clamps every gradient value to `[−clip, clip]` (PyTorch's `clip_grad_value_`, optax's
/// `clip`). NaN stays NaN. Returns how many values were clamped.
///
/// # Errors
/// [`ClipError::BadThreshold`] if `clip` is negative or NaN.
///
/// ```
/// let mut g = vec![-3.0f64, 0.5, 2.0];
/// assert_eq!(backprop::clip::clip_grad_value(&mut g, 1.0), Ok(2));
/// assert_eq!(g, [-1.0, 0.5, 1.0]);
/// ```
pub fn clip_grad_value<F: Real, P: Params<F> + ?Sized>(
    grads: &mut P,
    clip: f64,
) -> Result<usize, ClipError> {
    if clip.is_nan() || clip < 0.0 {
        return Err(ClipError::BadThreshold(clip));
    }
    let (hi, lo) = (F::of(clip), F::of(-clip));
    let mut clamped = 0;
    grads.visit_mut("", &mut |b| {
        for x in b.values.iter_mut() {
            if *x > hi {
                *x = hi;
                clamped += 1;
            } else if *x < lo {
                *x = lo;
                clamped += 1;
            }
        }
    });
    Ok(clamped)
}
