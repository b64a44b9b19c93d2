//! Fused softmax + cross-entropy over rows of logits, forward and backward.
//!
//! For a row x of C logits with label y and smoothing ε, with `m = max x`,
//! `s = Σ_j e^(x_j − m)` and target `t = (1 − ε)·one_hot(y) + ε/C` (PyTorch's
//! `cross_entropy(label_smoothing=ε)`):
//!
//! ```text
//! loss_row = ln s − (1 − ε)(x_y − m) − (ε/C)·Σ_j (x_j − m)      (= −Σ_j t_j ln p_j)
//! ∂loss/∂x = (p − t) / N,   p_j = e^(x_j − m)/s                 (N = rows counted)
//! ```
//!
//! The gradient is the "magic" `(p − one_hot(y))/B` of the lesson when ε = 0 and no row
//! is ignored. Everything is computed in max-shifted coordinates, so logits of 1e30 stay
//! finite, and `e^(−∞) = 0` exactly, so −∞-masked entries get a 0 gradient. With ε > 0,
//! a masked entry makes its row's loss +∞ (the target puts ε/C on a class of probability
//! 0, as in PyTorch); the gradient stays finite.
//!
//! Passes over a row (C = 50257 f32 is 200 KB, which stays in L2 between passes):
//! [`fused`] takes the max, then writes `e^(x − m)` into the gradient row while summing
//! (and prefetching the next row of logits and of the gradient, so the memory stream
//! overlaps this compute-bound pass), then scales the gradient in place. The split pair
//! [`forward`] (max, exp-sum; saves one log-sum-exp per row) and [`backward`] (one pass)
//! serves the op API, where the loss's cotangent is known only later. Large inputs are
//! split into row blocks across rayon's threads ([`PARALLEL_MIN_LOGITS`]).

use super::activation::{Math, StdMath, VecMath};
use super::{Arch, Real};

/// Options of softmax cross-entropy (PyTorch's `ignore_index` and `label_smoothing`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XentOptions<T> {
    /// Rows with this label contribute no loss and no gradient and are not counted in
    /// the mean. If every row is ignored the loss is 0 (PyTorch returns NaN there).
    pub ignore_index: Option<usize>,
    /// ε in `[0, 1]`: the target is `(1 − ε)·one_hot(y) + ε/C`.
    pub label_smoothing: T,
}

impl<T: Real> Default for XentOptions<T> {
    fn default() -> Self {
        XentOptions {
            ignore_index: None,
            label_smoothing: T::zero(),
        }
    }
}

/// Panics unless the buffers agree and every label is a class or the ignored label.
pub(crate) fn check_args(len: usize, cols: usize, labels: &[usize], grad_len: usize) {
    assert!(cols > 0, "softmax_cross_entropy: logits have 0 classes");
    assert!(
        len == labels.len() * cols,
        "softmax_cross_entropy: logits hold {len} values but labels say {} rows × {cols} classes",
        labels.len()
    );
    assert!(
        grad_len == len,
        "softmax_cross_entropy: gradient buffer holds {grad_len} values but logits hold {len}"
    );
}

fn check_labels<T: Real>(labels: &[usize], cols: usize, opts: XentOptions<T>) {
    for (r, &y) in labels.iter().enumerate() {
        if y >= cols && Some(y) != opts.ignore_index {
            panic!("softmax_cross_entropy: row {r} has label {y}, out of range for {cols} classes");
        }
    }
    let eps = opts.label_smoothing;
    assert!(
        eps >= T::zero() && eps <= T::one(),
        "softmax_cross_entropy: label_smoothing must be in [0, 1], got {eps}"
    );
}

/// Panics on a row whose every logit is −∞ (no class left to predict). A row whose
/// maximum is −∞ because its logits are NaN (max skips NaN) is let through: its loss and
/// gradient come out NaN, as the logits are, not hidden behind a message about masking.
pub(crate) fn check_row<T: Real>(r: usize, y: usize, max: T, row: &[T]) {
    if max == T::neg_infinity() && !row.iter().any(|v| v.is_nan()) {
        panic!("softmax_cross_entropy: row {r} (label {y}) is fully masked: every logit is -inf");
    }
}

/// The divisor of the mean: rows not ignored, at least 1.
pub(crate) fn counted_rows<T: Real>(labels: &[usize], opts: XentOptions<T>) -> T {
    let n = labels
        .iter()
        .filter(|&&y| Some(y) != opts.ignore_index)
        .count();
    T::from(n.max(1)).unwrap()
}

/// Lanes of the reductions: independent accumulators LLVM keeps in vector registers
/// (float adds are not reassociated without them).
const L: usize = 16;

#[inline(always)]
fn row_max<T: Real>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); L];
    let mut chunks = x.chunks_exact(L);
    for ch in &mut chunks {
        for i in 0..L {
            acc[i] = if ch[i] > acc[i] { ch[i] } else { acc[i] };
        }
    }
    let mut m = T::neg_infinity();
    for &v in acc.iter().chain(chunks.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// `(Σ e^(x−m), Σ (x−m))`, storing `e^(x−m)` into `out` when `STORE`; `Σ (x−m)` only
/// when `SUM_D` (label smoothing), else 0.
///
/// PERF: while this row is computed from L2, the next row (`next`, empty for the last)
/// is prefetched at the same offset, so the following max pass finds it in cache
/// instead of waiting on DRAM: the memory stream overlaps the `exp` work.
#[inline(always)]
fn row_exp_sums<T: Real, M: Math, const STORE: bool, const SUM_D: bool>(
    x: &[T],
    m: T,
    out: &mut [T],
    next: &[T],
    next_out: *const T,
) -> (T, T) {
    let mut se = [T::zero(); L];
    let mut sd = [T::zero(); L];
    let line = 64 / std::mem::size_of::<T>();
    let full = x.len() / L * L;
    for at in (0..full).step_by(L) {
        let mut off = 0;
        while off < L {
            if at + off < next.len() {
                M::prefetch(next[at + off..].as_ptr());
                if STORE {
                    M::prefetch(next_out.wrapping_add(at + off));
                }
            }
            off += line;
        }
        let ch = &x[at..at + L];
        let mut e = [T::zero(); L];
        for i in 0..L {
            let d = ch[i] - m;
            e[i] = M::exp_le0(d);
            se[i] += e[i];
            if SUM_D {
                sd[i] += d;
            }
        }
        if STORE {
            out[at..at + L].copy_from_slice(&e);
        }
    }
    let (mut s, mut d) = (se.iter().copied().sum::<T>(), sd.iter().copied().sum::<T>());
    let start = full;
    for (j, &v) in x[full..].iter().enumerate() {
        let e = M::exp_le0(v - m);
        s += e;
        if SUM_D {
            d += v - m;
        }
        if STORE {
            out[start + j] = e;
        }
    }
    (s, d)
}

/// Per-row loss in shifted coordinates; the ε-term is skipped at ε = 0 so masked
/// entries (Σ(x − m) = −∞) don't turn `0·∞` into NaN.
#[inline(always)]
fn row_loss<T: Real>(ln_s: T, xy_m: T, sum_d: T, eps: T, c: T) -> T {
    let l = ln_s - (T::one() - eps) * xy_m;
    if eps == T::zero() {
        l
    } else {
        l - eps / c * sum_d
    }
}

#[inline(always)]
fn fused_body<T: Real, M: Math>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    (d_loss, n, row0): (T, T, usize),
    grad: &mut [T],
) -> T {
    let eps = opts.label_smoothing;
    let c = T::from(cols).unwrap();
    let mut total = T::zero();
    let g_base = grad.as_ptr();
    for (r, (&y, (x, g))) in labels
        .iter()
        .zip(logits.chunks_exact(cols).zip(grad.chunks_exact_mut(cols)))
        .enumerate()
    {
        if Some(y) == opts.ignore_index {
            g.fill(T::zero());
            continue;
        }
        let m = row_max(x);
        check_row(row0 + r, y, m, x);
        let next = logits.get((r + 1) * cols..(r + 2) * cols).unwrap_or(&[]);
        // The next gradient row too: its lines come from DRAM before being overwritten.
        let g_next = g_base.wrapping_add((r + 1) * cols);
        let (s, sum_d) = if eps == T::zero() {
            row_exp_sums::<T, M, true, false>(x, m, g, next, g_next)
        } else {
            row_exp_sums::<T, M, true, true>(x, m, g, next, g_next)
        };
        total += row_loss(s.ln(), x[y] - m, sum_d, eps, c);
        // g_j = d·(e_j/s − ε/C)/N, then g_y −= d·(1 − ε)/N.
        let a = d_loss / (n * s);
        let b = d_loss * eps / (n * c);
        if b == T::zero() {
            // PERF: without smoothing a bare scaling (x·a − 0 is not foldable: −0).
            for gj in g.iter_mut() {
                *gj *= a;
            }
        } else {
            for gj in g.iter_mut() {
                *gj = *gj * a - b;
            }
        }
        g[y] -= d_loss * (T::one() - eps) / n;
    }
    total
}

#[inline(always)]
fn forward_body<T: Real, M: Math>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    row0: usize,
    lse: &mut [T],
) -> T {
    let eps = opts.label_smoothing;
    let c = T::from(cols).unwrap();
    let mut total = T::zero();
    for (r, ((&y, x), l)) in labels
        .iter()
        .zip(logits.chunks_exact(cols))
        .zip(lse.iter_mut())
        .enumerate()
    {
        if Some(y) == opts.ignore_index {
            *l = T::zero();
            continue;
        }
        let m = row_max(x);
        check_row(row0 + r, y, m, x);
        let next = logits.get((r + 1) * cols..(r + 2) * cols).unwrap_or(&[]);
        let (s, sum_d) = if eps == T::zero() {
            row_exp_sums::<T, M, false, false>(x, m, &mut [], next, std::ptr::null())
        } else {
            row_exp_sums::<T, M, false, true>(x, m, &mut [], next, std::ptr::null())
        };
        let ln_s = s.ln();
        *l = m + ln_s;
        total += row_loss(ln_s, x[y] - m, sum_d, eps, c);
    }
    total
}

#[inline(always)]
fn backward_body<T: Real, M: Math>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    (lse, d_loss, n): (&[T], T, T),
    grad: &mut [T],
) {
    let eps = opts.label_smoothing;
    let c = T::from(cols).unwrap();
    let a = d_loss / n;
    let b = d_loss * eps / (n * c);
    for ((&y, &l), (x, g)) in labels
        .iter()
        .zip(lse)
        .zip(logits.chunks_exact(cols).zip(grad.chunks_exact_mut(cols)))
    {
        if Some(y) == opts.ignore_index {
            g.fill(T::zero());
            continue;
        }
        for (gj, &xj) in g.iter_mut().zip(x) {
            *gj = a * M::exp_le0(xj - l) - b;
        }
        g[y] -= a * (T::one() - eps);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fused_avx2<T: Real>(
    x: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    k: (T, T, usize),
    g: &mut [T],
) -> T {
    fused_body::<T, VecMath>(x, cols, labels, opts, k, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2<T: Real>(
    x: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    row0: usize,
    lse: &mut [T],
) -> T {
    forward_body::<T, VecMath>(x, cols, labels, opts, row0, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2<T: Real>(
    x: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    k: (&[T], T, T),
    g: &mut [T],
) {
    backward_body::<T, VecMath>(x, cols, labels, opts, k, g)
}

/// Problems with at least this many logits are split into one block of rows per
/// thread of rayon's global pool (rows are independent). Below it one thread is faster.
pub const PARALLEL_MIN_LOGITS: usize = 1 << 20;

/// Runs `f(logits, labels, out, first_row)` on contiguous row blocks, in parallel for
/// large inputs; `out` holds `out_per_row` values per row. Returns the blocks' results
/// summed in block order (deterministic for a given thread count).
fn over_row_blocks<T: Real>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    out: &mut [T],
    out_per_row: usize,
    f: impl Fn(&[T], &[usize], &mut [T], usize) -> T + Sync,
) -> T {
    use rayon::prelude::*;
    let rows = labels.len();
    let threads = rayon::current_num_threads();
    if threads <= 1 || rows < 2 || logits.len() < PARALLEL_MIN_LOGITS {
        return f(logits, labels, out, 0);
    }
    let per = rows.div_ceil(threads);
    let parts: Vec<T> = logits
        .par_chunks(per * cols)
        .zip(labels.par_chunks(per))
        .zip(out.par_chunks_mut(per * out_per_row))
        .enumerate()
        .map(|(i, ((x, l), o))| f(x, l, o, i * per))
        .collect();
    parts.into_iter().sum()
}

/// Loss and gradient in one call: returns the mean loss and writes
/// `grad = d_loss·∂loss/∂logits` into the reused buffer `grad` (same length as `logits`).
///
/// `logits` is row-major, `labels.len()` rows of `cols` classes.
///
/// # Panics
/// If the lengths disagree, a label is ≥ `cols` (and not `ignore_index`) — the message
/// names the row and the label —, a counted row is entirely −∞, or ε ∉ [0, 1].
///
/// # Example
/// ```
/// use backprop::kernels::softmax_xent::{fused, XentOptions};
/// let logits = [0.0f64, 0.0, 1e30, -f64::INFINITY]; // 2 rows × 2 classes
/// let mut grad = [0.0; 4];
/// let loss = fused(&logits, 2, &[0, 0], XentOptions::default(), 1.0, &mut grad);
/// // row 0: ln 2; row 1: the label holds all the mass, loss 0.
/// assert!((loss - std::f64::consts::LN_2 / 2.0).abs() < 1e-15);
/// assert_eq!(grad, [-0.25, 0.25, 0.0, 0.0]);
/// ```
pub fn fused<T: Real>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    d_loss: T,
    grad: &mut [T],
) -> T {
    check_args(logits.len(), cols, labels, grad.len());
    check_labels(labels, cols, opts);
    let n = counted_rows(labels, opts);
    let total = over_row_blocks(
        logits,
        cols,
        labels,
        grad,
        cols,
        |x, l, g, row0| match Arch::get() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
            Arch::Avx2Fma => unsafe { fused_avx2(x, cols, l, opts, (d_loss, n, row0), g) },
            _ => fused_body::<T, StdMath>(x, cols, l, opts, (d_loss, n, row0), g),
        },
    );
    total / n
}

/// Forward only: returns the mean loss and saves each row's log-sum-exp
/// `lse[r] = m + ln s` (0 for ignored rows) for [`backward`].
///
/// # Panics
/// As [`fused`]; also if `lse.len() != labels.len()`.
///
/// # Example
/// ```
/// use backprop::kernels::softmax_xent::{backward, forward, XentOptions};
/// let logits = [0.0f64, 0.0, 0.0, 0.0]; // 1 row × 4 classes
/// let mut lse = [0.0];
/// let loss = forward(&logits, 4, &[3], XentOptions::default(), &mut lse);
/// assert!((loss - 4f64.ln()).abs() < 1e-15);
/// let mut grad = [0.0; 4];
/// backward(&logits, 4, &[3], XentOptions::default(), &lse, 1.0, &mut grad);
/// assert_eq!(grad, [0.25, 0.25, 0.25, -0.75]);
/// ```
pub fn forward<T: Real>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    lse: &mut [T],
) -> T {
    check_args(logits.len(), cols, labels, logits.len());
    check_labels(labels, cols, opts);
    assert_eq!(
        lse.len(),
        labels.len(),
        "softmax_cross_entropy: lse buffer must hold one value per row"
    );
    let n = counted_rows(labels, opts);
    let total = over_row_blocks(
        logits,
        cols,
        labels,
        lse,
        1,
        |x, l, out, row0| match Arch::get() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
            Arch::Avx2Fma => unsafe { forward_avx2(x, cols, l, opts, row0, out) },
            _ => forward_body::<T, StdMath>(x, cols, l, opts, row0, out),
        },
    );
    total / n
}

/// Backward from the saved log-sum-exps: `grad = d_loss·(e^(x − lse) − t)/N`, one pass.
///
/// # Panics
/// As [`forward`], and if `grad.len() != logits.len()`.
pub fn backward<T: Real>(
    logits: &[T],
    cols: usize,
    labels: &[usize],
    opts: XentOptions<T>,
    lse: &[T],
    d_loss: T,
    grad: &mut [T],
) {
    check_args(logits.len(), cols, labels, grad.len());
    check_labels(labels, cols, opts);
    assert_eq!(
        lse.len(),
        labels.len(),
        "softmax_cross_entropy: lse buffer must hold one value per row"
    );
    let n = counted_rows(labels, opts);
    over_row_blocks(logits, cols, labels, grad, cols, |x, l, g, row0| {
        let k = (&lse[row0..row0 + l.len()], d_loss, n);
        match Arch::get() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Arch::Avx2Fma is only returned after detecting avx2 and fma at run time.
            Arch::Avx2Fma => unsafe { backward_avx2(x, cols, l, opts, k, g) },
            _ => backward_body::<T, StdMath>(x, cols, l, opts, k, g),
        }
        T::zero()
    });
}
