//! Row softmax with a mask (none, causal, or a boolean mask), and the recomputation
//! `e^(s − lse)` of attention's backward pass.
//!
//! Masked entries and rows with no kept finite logit give 0 (never NaN); the log-sum-exp
//! of such a row is −∞. The SIMD path is the same body compiled with AVX2 + FMA and the
//! branch-free [`Real::exp_le0_vec`] (its arguments `x − max` are ≤ 0), so LLVM
//! vectorises the exp, the select of the mask and the lane-split sums; the reference
//! path calls `std`'s `exp`. The tests compare the two at every length around the
//! vector width.

use super::activation::{Math, StdMath, VecMath};
use super::{Arch, Real};

/// Which entries of each row of `n` are kept.
#[derive(Clone, Copy, Debug)]
pub enum Keep<'a> {
    /// Every entry.
    All,
    /// Row `r` keeps columns `j ≤ r mod n` (square `[.., n, n]` score blocks).
    Causal,
    /// `mask[r·n + j]` (true = keep), one flag per element.
    Mask(&'a [bool]),
}

/// Independent accumulators, so the float sums vectorise.
const L: usize = 16;

/// Max of `x` over 16 independent lanes (masked entries count as −∞).
#[inline(always)]
fn lanes_max<T: Real>(x: &[T], mask: Option<&[bool]>) -> T {
    // Two loops rather than a branch on `mask` inside one, so each vectorises.
    let pick = |v: T, k: bool| if k { v } else { T::neg_infinity() };
    let mut acc = [T::neg_infinity(); L];
    let full = x.len() / L * L;
    match mask {
        None => {
            for ch in x[..full].chunks_exact(L) {
                for i in 0..L {
                    acc[i] = if ch[i] > acc[i] { ch[i] } else { acc[i] };
                }
            }
        }
        Some(mk) => {
            for (ch, kc) in x[..full].chunks_exact(L).zip(mk[..full].chunks_exact(L)) {
                for i in 0..L {
                    let v = pick(ch[i], kc[i]);
                    acc[i] = if v > acc[i] { v } else { acc[i] };
                }
            }
        }
    }
    let mut m = T::neg_infinity();
    for j in full..x.len() {
        let v = mask.map_or(x[j], |mk| pick(x[j], mk[j]));
        m = if v > m { v } else { m };
    }
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// Max of `x[..limit]`, computed over all of `x` with the entries from `limit` on
/// counted as −∞ (so the loop runs over whole blocks).
#[inline(always)]
fn lanes_max_below<T: Real>(x: &[T], limit: usize) -> T {
    let mut acc = [T::neg_infinity(); L];
    let full = x.len() / L * L;
    for (c, ch) in x[..full].chunks_exact(L).enumerate() {
        for i in 0..L {
            let v = if c * L + i < limit {
                ch[i]
            } else {
                T::neg_infinity()
            };
            acc[i] = if v > acc[i] { v } else { acc[i] };
        }
    }
    let mut m = T::neg_infinity();
    for (j, &v) in x.iter().enumerate().skip(full) {
        let v = if j < limit { v } else { T::neg_infinity() };
        m = if v > m { v } else { m };
    }
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

#[inline(always)]
fn lanes_sum<T: Real>(x: &[T]) -> T {
    let mut acc = [T::zero(); L];
    let full = x.len() / L * L;
    for ch in x[..full].chunks_exact(L) {
        for i in 0..L {
            acc[i] += ch[i];
        }
    }
    acc.iter().copied().sum::<T>() + x[full..].iter().copied().sum::<T>()
}

/// The forward body: `y` the masked softmax of each row of `x`, `lse[r]` its
/// log-sum-exp over the kept entries (−∞ for an empty row).
#[inline(always)]
pub(crate) fn forward_body<T: Real, M: Math>(
    x: &[T],
    n: usize,
    keep: Keep<'_>,
    y: &mut [T],
    lse: &mut [T],
) {
    for (r, (xi, yi)) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)).enumerate() {
        // Causal rows work on their kept prefix rounded up to whole 16-lane blocks
        // (`limit` of them kept), so short rows do not fall to a scalar tail.
        let (span, limit, mask) = match keep {
            Keep::All => (n, n, None),
            Keep::Causal => {
                let kept = r % n + 1;
                ((kept.div_ceil(L) * L).min(n), kept, None)
            }
            Keep::Mask(m) => (n, n, Some(&m[r * n..(r + 1) * n])),
        };
        let (xk, (yk, tail)) = (&xi[..span], yi.split_at_mut(span));
        tail.iter_mut().for_each(|v| *v = T::zero());
        let m = if limit < span {
            lanes_max_below(xk, limit)
        } else {
            lanes_max(xk, mask)
        };
        if m == T::neg_infinity() {
            // No kept finite logit. A kept NaN (which the max skips) makes the row NaN,
            // as it would any other row: only a row of −∞ and masked entries is empty.
            let kept = |j: usize| j < limit && mask.is_none_or(|mk| mk[j]);
            let nan = xk.iter().enumerate().any(|(j, v)| kept(j) && v.is_nan());
            for (j, v) in yk.iter_mut().enumerate() {
                *v = if nan && kept(j) { T::nan() } else { T::zero() };
            }
            lse[r] = if nan { T::nan() } else { T::neg_infinity() };
            continue;
        }
        match mask {
            Some(mk) => {
                for ((o, &v), &k) in yk.iter_mut().zip(xk).zip(mk) {
                    let e = M::exp_le0(v - m);
                    *o = if k { e } else { T::zero() };
                }
            }
            None if limit < span => {
                for (j, (o, &v)) in yk.iter_mut().zip(xk).enumerate() {
                    // e^(−∞) = 0 exactly on both paths.
                    let d = if j < limit { v - m } else { T::neg_infinity() };
                    *o = M::exp_le0(d);
                }
            }
            None => {
                for (o, &v) in yk.iter_mut().zip(xk) {
                    *o = M::exp_le0(v - m);
                }
            }
        }
        let s = lanes_sum(yk);
        let inv = T::one() / s;
        yk.iter_mut().for_each(|v| *v *= inv);
        lse[r] = m + s.ln();
    }
}

/// The backward recomputation body: `p[r, j] ← e^(p[r, j] − lse[r])` on kept entries,
/// 0 elsewhere and on rows with `lse = −∞`.
#[inline(always)]
pub(crate) fn exp_shifted_body<T: Real, M: Math>(p: &mut [T], n: usize, causal: bool, lse: &[T]) {
    for (r, pi) in p.chunks_exact_mut(n).enumerate() {
        let l = lse[r];
        let kept = if causal { r % n + 1 } else { n };
        // As in the forward: whole blocks, entries from `kept` on given e^(−∞) = 0.
        let span = (kept.div_ceil(L) * L).min(n);
        let (pk, tail) = pi.split_at_mut(span);
        tail.iter_mut().for_each(|v| *v = T::zero());
        if l == T::neg_infinity() {
            pk.iter_mut().for_each(|v| *v = T::zero());
            continue;
        }
        for (j, v) in pk.iter_mut().enumerate() {
            // s − lse ≤ 0 up to rounding; clamp so exp_le0's domain holds.
            let d = *v - l;
            let d = if d > T::zero() { T::zero() } else { d };
            *v = M::exp_le0(if j < kept { d } else { T::neg_infinity() });
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
fn forward_avx512<T: Real>(x: &[T], n: usize, keep: Keep<'_>, y: &mut [T], lse: &mut [T]) {
    forward_body::<T, VecMath>(x, n, keep, y, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
fn exp_shifted_avx512<T: Real>(p: &mut [T], n: usize, causal: bool, lse: &[T]) {
    exp_shifted_body::<T, VecMath>(p, n, causal, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2<T: Real>(x: &[T], n: usize, keep: Keep<'_>, y: &mut [T], lse: &mut [T]) {
    forward_body::<T, VecMath>(x, n, keep, y, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shifted_avx2<T: Real>(p: &mut [T], n: usize, causal: bool, lse: &[T]) {
    exp_shifted_body::<T, VecMath>(p, n, causal, lse)
}

fn check(op: &str, len: usize, n: usize, out: usize, lse: usize, keep: Keep<'_>) {
    assert!(n > 0, "{op}: rows of 0 entries");
    assert!(
        len.is_multiple_of(n) && out == len && lse == len / n,
        "{op}: {len} inputs in rows of {n}, {out} outputs, {lse} row statistics"
    );
    if let Keep::Mask(m) = keep {
        assert!(
            m.len() == len,
            "{op}: {len} inputs but {} mask flags",
            m.len()
        );
    }
}

/// Masked softmax of each row of `n` in `x` into `y`, with each row's log-sum-exp in
/// `lse`; dispatched once on [`Arch::get`].
///
/// # Panics
/// If `n` is 0 or the lengths disagree (`x`, `y`, mask: rows·n; `lse`: rows).
///
/// ```
/// use backprop::kernels::masked_softmax::{forward, Keep};
/// let (mut y, mut lse) = ([0.0f64; 4], [0.0; 2]);
/// forward(&[0.0, 5.0, 1.0, 1.0], 2, Keep::Causal, &mut y, &mut lse);
/// assert_eq!(y, [1.0, 0.0, 0.5, 0.5]);
/// assert_eq!(lse[0], 0.0);
/// ```
pub fn forward<T: Real>(x: &[T], n: usize, keep: Keep<'_>, y: &mut [T], lse: &mut [T]) {
    check("masked softmax", x.len(), n, y.len(), lse.len(), keep);
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: has_avx512() is true only after detecting AVX-512 F/DQ/VL/BW.
        Arch::Avx2Fma if super::has_avx512() => unsafe { forward_avx512(x, n, keep, y, lse) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Arch::get() returned Avx2Fma only after detecting AVX2 and FMA.
        Arch::Avx2Fma => unsafe { forward_avx2(x, n, keep, y, lse) },
        _ => forward_body::<T, StdMath>(x, n, keep, y, lse),
    }
}

/// `p[r, j] ← e^(p[r, j] − lse[r])` over rows of `n` (0 above the diagonal when
/// `causal`, and on rows whose `lse` is −∞): attention's recomputed probabilities.
///
/// # Panics
/// If `n` is 0 or `lse` does not have one entry per row.
pub fn exp_shifted<T: Real>(p: &mut [T], n: usize, causal: bool, lse: &[T]) {
    check("exp_shifted", p.len(), n, p.len(), lse.len(), Keep::All);
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `forward`.
        Arch::Avx2Fma if super::has_avx512() => unsafe { exp_shifted_avx512(p, n, causal, lse) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `forward`.
        Arch::Avx2Fma => unsafe { exp_shifted_avx2(p, n, causal, lse) },
        _ => exp_shifted_body::<T, StdMath>(p, n, causal, lse),
    }
}
