//! Fused transformer ops: layer and RMS normalisation, embedding lookup, masked and
//! causal softmax, scaled dot-product attention, exact GELU, dropout, and cross-entropy
//! over `[.., V]` logits. Each op `f` comes with `f_vjp` (its pullback) and a companion
//! `f::forward` returning the value and a [`Tape`], so `#[grad]` code calls them like
//! the other [`crate::ops`]; the rules are listed in `docs/RULES.md`.
//!
//! The softmax rows (masked, causal, and inside attention) and attention's backward
//! `e^(s − lse)` run on [`crate::kernels::masked_softmax`] (AVX2 + FMA with a scalar
//! oracle); the norms, embedding, dropout and exact GELU are plain loops over contiguous
//! rows (the norms' row sums over 8 accumulators, their row loops also compiled for
//! AVX2 + FMA and dispatched on `Arch::get`), left to LLVM's auto-vectoriser; the
//! products inside attention run on the crate's gemm-backed matmul, one thread per head
//! with heads spread over rayon's threads for large inputs, and skip the blocks above the
//! diagonal when causal.
#![allow(
    non_camel_case_types,
    clippy::type_complexity,
    clippy::too_many_arguments
)]

use super::shape_str;
use crate::kernels::activation::Unary;
use crate::kernels::masked_softmax::{self as kernel, Keep};
use crate::kernels::softmax_xent::XentOptions;
use crate::kernels::{Arch, Real};
use crate::tape::{Inactive, Tape};
use core::mem::MaybeUninit;
use ndarray::{
    Array, Array1, Array2, Array4, ArrayBase, ArrayView, ArrayView1, ArrayView2, Data, Dimension,
    Ix1, Ix2, Ix4, IxDyn, s,
};

/// Bytes of `n` elements of `A`.
fn nbytes<A>(n: usize) -> usize {
    n * core::mem::size_of::<A>()
}

/// The last axis's length of `x`, panicking on a 0-dimensional `x`.
fn last_axis(op: &str, shape: &[usize]) -> usize {
    match shape.last() {
        Some(&d) => d,
        None => panic!("{op}: x is a scalar but needs a last axis"),
    }
}

/// Panics unless the parameter `p` has shape `[d]`, `d` the last axis of `x`.
fn check_param(op: &str, x: &[usize], name: &str, p: &[usize]) {
    if p.len() != 1 || p[0] != last_axis(op, x) {
        panic!(
            "{op}: x is {} but {name} is {} (want the last axis, {})",
            shape_str(x),
            shape_str(p),
            last_axis(op, x)
        );
    }
}

// ------------------------------------------------------------------ normalisation

/// Accumulator lanes of the row sums: one AVX2 register of f32 (two of f64).
const LANES: usize = 8;

/// `Σ_j f(a_j, b_j)` over two equally long slices with [`LANES`] independent
/// accumulators (lane `l` takes `j ≡ l mod 8`, then the lanes are added in order and the
/// tail last): float adds are not reassociated, and one running sum would wait on each
/// add's latency. Fixed-size chunks, so the lanes compile to vector adds.
#[inline(always)]
fn lane_sum<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |s, (&x, &y)| s + f(x, y));
    for (xa, xb) in ca.zip(cb) {
        let (xa, xb): (&[T; LANES], &[T; LANES]) = (xa.try_into().unwrap(), xb.try_into().unwrap());
        for l in 0..LANES {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    acc.iter().copied().sum::<T>() + tail
}

/// One row of layer (or RMS, `rms`) normalisation: writes `y`, returns `(μ, 1/σ)`.
#[inline(always)]
fn norm_row<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: Option<&[T]>,
    eps: T,
    rms: bool,
    y: &mut [MaybeUninit<T>],
) -> (T, T) {
    let n = T::from(x.len()).unwrap();
    let mu = if rms {
        T::zero()
    } else {
        lane_sum(x, x, |v, _| v) / n
    };
    let var = lane_sum(x, x, |v, _| (v - mu) * (v - mu)) / n;
    let r = T::one() / (var + eps).sqrt();
    match beta {
        Some(b) => {
            for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(b) {
                o.write((v - mu) * r * g + b);
            }
        }
        None => {
            for ((o, &v), &g) in y.iter_mut().zip(x).zip(gamma) {
                o.write((v - mu) * r * g);
            }
        }
    }
    (mu, r)
}

/// Forward of both normalisations; returns `(y, μ per row, 1/σ per row)`.
fn norm_forward<S1, S2, T, D>(
    op: &str,
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    beta: Option<&[T]>,
    eps: T,
    rms: bool,
    keep_x: bool,
) -> (Array<T, D>, Vec<T>, Vec<T>, Option<Array<T, D>>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    check_param(op, x.shape(), "gamma", gamma.shape());
    let d = last_axis(op, x.shape());
    let xs = x.as_standard_layout();
    let g = gamma.to_vec();
    // Every element is written below: no zero fill first.
    let mut y = Array::uninit(x.raw_dim());
    // With `keep_x`, a copy of x for the tape, written block by block beside y.
    let mut kept = Array::uninit(if keep_x {
        x.raw_dim()
    } else {
        D::zeros(x.ndim())
    });
    let rows = x.len().checked_div(d).unwrap_or(0);
    let (mut mean, mut rstd) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    if rows > 0 {
        let (xsl, ysl) = (xs.as_slice().unwrap(), y.as_slice_mut().unwrap());
        let ksl = kept.as_slice_mut().unwrap();
        let forward_rows = |xb: &[T], yb: &mut [MaybeUninit<T>], kb: &mut [MaybeUninit<T>]| {
            for (k, &v) in kb.iter_mut().zip(xb) {
                k.write(v);
            }
            let n = xb.len() / d;
            let (mut m, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let stats = (&mut m, &mut r);
            match Arch::get() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Arch::get() returned Avx2Fma only after detecting AVX2 and FMA.
                Arch::Avx2Fma => unsafe {
                    norm_forward_rows_avx2(xb, yb, &g, beta, eps, rms, stats)
                },
                _ => norm_forward_rows(xb, yb, &g, beta, eps, rms, stats),
            }
            (m, r)
        };
        // Rows are independent: blocks of them on rayon's threads give the same values.
        let parts: Vec<(Vec<T>, Vec<T>)> = if x.len() >= NORM_PARALLEL_MIN_ELEMS {
            use rayon::prelude::*;
            let block = NORM_BLOCK_ROWS * d;
            let kblock = if keep_x { block } else { 1 };
            let mut kchunks: Vec<&mut [MaybeUninit<T>]> = ksl.chunks_mut(kblock).collect();
            kchunks.resize_with(xsl.len().div_ceil(block), Default::default);
            xsl.par_chunks(block)
                .zip(ysl.par_chunks_mut(block))
                .zip(kchunks)
                .map(|((xb, yb), kb)| forward_rows(xb, yb, kb))
                .collect()
        } else {
            vec![forward_rows(xsl, ysl, ksl)]
        };
        for (m, r) in parts {
            mean.extend(m);
            rstd.extend(r);
        }
    }
    // SAFETY: the row loop wrote every element of y (rows·d = x.len(); with no rows, x
    // and y are empty), and with `keep_x` every element of the copy.
    let y = unsafe { y.assume_init() };
    let kept = keep_x.then(|| unsafe { kept.assume_init() });
    (y, mean, rstd, kept)
}

/// The row loop of [`norm_forward`]: rows of `g.len()`, pushing `μ` and `1/σ`.
#[inline(always)]
fn norm_forward_rows<T: Real>(
    xs: &[T],
    ys: &mut [MaybeUninit<T>],
    g: &[T],
    beta: Option<&[T]>,
    eps: T,
    rms: bool,
    (mean, rstd): (&mut Vec<T>, &mut Vec<T>),
) {
    let d = g.len();
    for (xi, yi) in xs.chunks_exact(d).zip(ys.chunks_exact_mut(d)) {
        let (m, r) = norm_row(xi, g, beta, eps, rms, yi);
        mean.push(m);
        rstd.push(r);
    }
}

/// [`norm_forward_rows`] compiled for AVX2 + FMA (the row sums and the scaling loop
/// vectorise 8 wide instead of SSE's 4 or scalar).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn norm_forward_rows_avx2<T: Real>(
    xs: &[T],
    ys: &mut [MaybeUninit<T>],
    g: &[T],
    beta: Option<&[T]>,
    eps: T,
    rms: bool,
    stats: (&mut Vec<T>, &mut Vec<T>),
) {
    norm_forward_rows(xs, ys, g, beta, eps, rms, stats)
}

/// Pullback of both normalisations from `x`, `γ` and the saved `μ`, `1/σ` per row:
/// `x̂ = (x − μ)/σ`, `g = d_y ⊙ γ`, `d_x = (1/σ)(g − mean(g) − x̂·mean(g ⊙ x̂))`
/// (`mean(g)` dropped for RMS), `d_γ = Σ_rows d_y ⊙ x̂`, `d_β = Σ_rows d_y`.
///
/// Takes `x` by value and writes `d_x` over it, row by row (a row of `x` is read
/// into `x̂` before its `d_x` is written): the companions hand over the tape's copy
/// of `x`, so the backward pass allocates no array of `x`'s size.
fn norm_backward<S3, T, D>(
    op: &str,
    x: Array<T, D>,
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    d_y: &ArrayBase<S3, D>,
    rms: bool,
) -> (Array<T, D>, Array1<T>, Array1<T>)
where
    S3: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    super::same_shape(op, "x", x.shape(), "d_y", d_y.shape());
    check_param(op, x.shape(), "gamma", &[gamma.len()]);
    let d = last_axis(op, x.shape());
    let rows = x.len().checked_div(d).unwrap_or(0);
    assert!(
        mean.len() == rows && rstd.len() == rows,
        "{op}: x has {rows} rows but the saved statistics have {} and {}",
        mean.len(),
        rstd.len()
    );
    let mut x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    let mut d_g = Array1::zeros(d);
    let mut d_b = Array1::zeros(d);
    if rows == 0 {
        return (x, d_g, d_b);
    }
    let dys = d_y.as_standard_layout();
    let dysl = dys.as_slice().unwrap();
    let xdx = x.as_slice_mut().unwrap();
    // Blocks of NORM_BLOCK_ROWS rows, each with its own partial d_γ and d_β, added in
    // block order: the same sums whether the blocks run on one thread or several.
    let backward_rows = |i: usize, xb: &mut [T], db: &[T]| {
        let (r0, r1) = (i * NORM_BLOCK_ROWS, i * NORM_BLOCK_ROWS + xb.len() / d);
        let stats = (&mean[r0..r1], &rstd[r0..r1]);
        let (mut pg, mut pb) = (vec![T::zero(); d], vec![T::zero(); d]);
        match Arch::get() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Arch::get() returned Avx2Fma only after detecting AVX2 and FMA.
            Arch::Avx2Fma => unsafe {
                norm_backward_rows_avx2(xb, db, gamma, stats, rms, (&mut pg, &mut pb))
            },
            _ => norm_backward_rows(xb, db, gamma, stats, rms, (&mut pg, &mut pb)),
        }
        (pg, pb)
    };
    let block = NORM_BLOCK_ROWS * d;
    let parts: Vec<(Vec<T>, Vec<T>)> = if xdx.len() >= NORM_PARALLEL_MIN_ELEMS {
        use rayon::prelude::*;
        xdx.par_chunks_mut(block)
            .zip(dysl.par_chunks(block))
            .enumerate()
            .map(|(i, (xb, db))| backward_rows(i, xb, db))
            .collect()
    } else {
        xdx.chunks_mut(block)
            .zip(dysl.chunks(block))
            .enumerate()
            .map(|(i, (xb, db))| backward_rows(i, xb, db))
            .collect()
    };
    let (dgs, dbs) = (d_g.as_slice_mut().unwrap(), d_b.as_slice_mut().unwrap());
    for (pg, pb) in parts {
        dgs.iter_mut().zip(&pg).for_each(|(a, &b)| *a += b);
        dbs.iter_mut().zip(&pb).for_each(|(a, &b)| *a += b);
    }
    (x, d_g, d_b)
}

/// Rows per block of the norms' row loops: the unit of their split across threads and
/// of their partial `d_γ`, `d_β` sums (fixed, so the sums do not depend on the number of
/// threads).
const NORM_BLOCK_ROWS: usize = 64;

/// Inputs of at least this many elements run the norms' row blocks on rayon's threads
/// (smaller ones on the calling thread, the same blocks in the same order).
const NORM_PARALLEL_MIN_ELEMS: usize = 1 << 18;

/// [`norm_backward_rows`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn norm_backward_rows_avx2<T: Real>(
    xdx: &mut [T],
    dys: &[T],
    g: &[T],
    stats: (&[T], &[T]),
    rms: bool,
    sums: (&mut [T], &mut [T]),
) {
    norm_backward_rows(xdx, dys, g, stats, rms, sums)
}

/// The row loop of [`norm_backward`]: reads each row of `x` from `xdx` and writes its
/// `d_x` there; adds into `d_γ` and `d_β`.
#[inline(always)]
fn norm_backward_rows<T: Real>(
    xdx: &mut [T],
    dys: &[T],
    g: &[T],
    (mean, rstd): (&[T], &[T]),
    rms: bool,
    (dgs, dbs): (&mut [T], &mut [T]),
) {
    let d = g.len();
    let n = T::from(d).unwrap();
    let (mut gx, mut gy) = (vec![T::zero(); d], vec![T::zero(); d]);
    for (r, (row, dyi)) in xdx.chunks_exact_mut(d).zip(dys.chunks_exact(d)).enumerate() {
        let (mu, rs) = (mean[r], rstd[r]);
        // Loops over the row that each vectorise: x̂ (kept in `gx`), `g = d_y ⊙ γ`
        // (in `gy`), d_γ and d_β; the row sums of `g` and `g ⊙ x̂`; then d_x over the
        // row of x.
        for (((((xh, gyj), &xv), (&dy, &gj)), dg), db) in gx
            .iter_mut()
            .zip(gy.iter_mut())
            .zip(&*row)
            .zip(dyi.iter().zip(g))
            .zip(&mut *dgs)
            .zip(&mut *dbs)
        {
            *xh = (xv - mu) * rs;
            *gyj = dy * gj;
            *dg += dy * *xh;
            *db += dy;
        }
        let sum_g = if rms {
            T::zero()
        } else {
            lane_sum(&gy, &gy, |a, _| a)
        };
        let sum_gx = lane_sum(&gy, &gx, |a, b| a * b);
        let a = if rms { T::zero() } else { sum_g / n };
        let b = sum_gx / n;
        for ((o, &gyj), &xh) in row.iter_mut().zip(&gy).zip(&gx) {
            *o = rs * (gyj - a - xh * b);
        }
    }
}

/// Layer normalisation over the last axis: `y = γ ⊙ (x − μ)/√(σ² + ε) + β`, with `μ`,
/// `σ²` the mean and (biased) variance of each last-axis row (Ba, Kiros & Hinton 2016,
/// "Layer Normalization", eq. 4; PyTorch's `layer_norm` over the last dimension).
///
/// Shapes: `x` any `[.., d]` (at least one axis, any layout), `gamma` and `beta` `[d]`;
/// the result has `x`'s shape. `f32` or `f64`. The companion's tape saves `x`, `γ` and
/// two numbers per row (`μ`, `1/σ`), not the normalised `x̂`.
///
/// # Panics
/// If `x` is 0-dimensional, or `gamma` or `beta` is not `[d]` (the message names the op
/// and both shapes).
///
/// ```
/// use ndarray::array;
/// let y = backprop::ops::layer_norm(&array![[1.0f64, 3.0]], &array![1.0, 2.0], &array![0.0, 0.5], 0.0);
/// assert_eq!(y, array![[-1.0, 2.5]]);
/// ```
pub fn layer_norm<S1, S2, S3, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    beta: &ArrayBase<S3, Ix1>,
    eps: T,
) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    layer_norm_with_stats(x, gamma, beta, eps).0
}

/// [`layer_norm`] and its per-row statistics `(y, μ, 1/σ)` (row-major order of the
/// leading axes), what [`layer_norm_vjp`] reads.
///
/// # Panics
/// As [`layer_norm`].
pub fn layer_norm_with_stats<S1, S2, S3, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    beta: &ArrayBase<S3, Ix1>,
    eps: T,
) -> (Array<T, D>, Vec<T>, Vec<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    check_param("layer_norm", x.shape(), "beta", beta.shape());
    let b = beta.to_vec();
    let (y, mean, rstd, _) = norm_forward("layer_norm", x, gamma, Some(&b), eps, false, false);
    (y, mean, rstd)
}

/// Pullback of [`layer_norm`] from `x`, `γ` and the saved row statistics `μ`, `1/σ`:
/// with `x̂ = (x − μ)/σ` and `g = d_y ⊙ γ`,
/// `d_x = (1/σ)·(g − mean(g) − x̂·mean(g ⊙ x̂))` per row, `d_γ = Σ_rows d_y ⊙ x̂`,
/// `d_β = Σ_rows d_y`. Returns `(d_x, d_γ, d_β)`.
///
/// # Panics
/// If `d_y` is not `x`'s shape, `gamma` is not `[d]`, or the statistics do not have one
/// entry per row.
pub fn layer_norm_vjp<S1, S2, S3, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    mean: &[T],
    rstd: &[T],
    d_y: &ArrayBase<S3, D>,
) -> (Array<T, D>, Array1<T>, Array1<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    check_param("layer_norm_vjp", x.shape(), "gamma", gamma.shape());
    let xs = x.as_standard_layout().into_owned();
    norm_backward(
        "layer_norm_vjp",
        xs,
        &gamma.to_vec(),
        mean,
        rstd,
        d_y,
        false,
    )
}

/// RMS normalisation over the last axis: `y = γ ⊙ x/√(mean(x²) + ε)` (Zhang & Sennrich
/// 2019, "Root Mean Square Layer Normalization", eq. 4; no re-centring, no bias).
///
/// Shapes: `x` any `[.., d]`, `gamma` `[d]`; the result has `x`'s shape. `f32` or `f64`.
/// The companion's tape saves `x`, `γ` and `1/rms` per row.
///
/// # Panics
/// If `x` is 0-dimensional or `gamma` is not `[d]` (naming the op and both shapes).
///
/// ```
/// use ndarray::array;
/// let y = backprop::ops::rms_norm(&array![[3.0f64, 4.0]], &array![1.0, 2.0], 0.0);
/// let r = (12.5f64).sqrt();
/// assert_eq!(y, array![[3.0 / r, 8.0 / r]]);
/// ```
pub fn rms_norm<S1, S2, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    eps: T,
) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    rms_norm_with_stats(x, gamma, eps).0
}

/// [`rms_norm`] and `1/rms` per row, what [`rms_norm_vjp`] reads.
///
/// # Panics
/// As [`rms_norm`].
pub fn rms_norm_with_stats<S1, S2, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    eps: T,
) -> (Array<T, D>, Vec<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    let (y, _, r, _) = norm_forward("rms_norm", x, gamma, None, eps, true, false);
    (y, r)
}

/// Pullback of [`rms_norm`] from `x`, `γ` and `1/rms` per row: with `x̂ = x/rms`,
/// `g = d_y ⊙ γ`, `d_x = (1/rms)·(g − x̂·mean(g ⊙ x̂))`, `d_γ = Σ_rows d_y ⊙ x̂`.
/// Returns `(d_x, d_γ)`.
///
/// # Panics
/// As [`layer_norm_vjp`].
pub fn rms_norm_vjp<S1, S2, S3, T, D>(
    x: &ArrayBase<S1, D>,
    gamma: &ArrayBase<S2, Ix1>,
    rstd: &[T],
    d_y: &ArrayBase<S3, D>,
) -> (Array<T, D>, Array1<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    check_param("rms_norm_vjp", x.shape(), "gamma", gamma.shape());
    let (xs, g) = (x.as_standard_layout().into_owned(), gamma.to_vec());
    let zeros = vec![T::zero(); rstd.len()];
    let (d_x, d_g, _) = norm_backward("rms_norm_vjp", xs, &g, &zeros, rstd, d_y, true);
    (d_x, d_g)
}

#[doc(hidden)]
pub struct layer_norm {}
impl layer_norm {
    /// Forward pass: the value and a tape holding `x`, `γ`, and `μ`, `1/σ` per row.
    #[inline]
    pub fn forward<S1, S2, S3, T, D>(
        x: &ArrayBase<S1, D>,
        gamma: &ArrayBase<S2, Ix1>,
        beta: &ArrayBase<S3, Ix1>,
        eps: T,
    ) -> (
        Array<T, D>,
        Tape<
            impl FnOnce(Array<T, D>) -> (Array<T, D>, Array1<T>, Array1<T>, Inactive)
            + use<S1, S2, S3, T, D>,
        >,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        S3: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        check_param("layer_norm", x.shape(), "beta", beta.shape());
        let b = beta.to_vec();
        let (y, mean, rstd, xs) = norm_forward("layer_norm", x, gamma, Some(&b), eps, false, true);
        let (xs, gs) = (xs.expect("kept above"), gamma.to_vec());
        let heap = nbytes::<T>(xs.len() + gs.len() + mean.len() + rstd.len());
        (
            y,
            Tape::with_heap_bytes(heap, move |d: Array<T, D>| {
                // d_x is written over the tape's copy of x.
                let (dx, dg, db) =
                    norm_backward("layer_norm_vjp", xs, &gs, &mean, &rstd, &d, false);
                (dx, dg, db, Inactive)
            }),
        )
    }
}

#[doc(hidden)]
pub struct rms_norm {}
impl rms_norm {
    /// Forward pass: the value and a tape holding `x`, `γ`, and `1/rms` per row.
    #[inline]
    pub fn forward<S1, S2, T, D>(
        x: &ArrayBase<S1, D>,
        gamma: &ArrayBase<S2, Ix1>,
        eps: T,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>, Array1<T>, Inactive) + use<S1, S2, T, D>>,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let (y, _, rstd, xs) = norm_forward("rms_norm", x, gamma, None, eps, true, true);
        let (xs, gs) = (xs.expect("kept above"), gamma.to_vec());
        let heap = nbytes::<T>(xs.len() + gs.len() + rstd.len());
        (
            y,
            Tape::with_heap_bytes(heap, move |d: Array<T, D>| {
                // d_x is written over the tape's copy of x.
                let zeros = vec![T::zero(); rstd.len()];
                let (dx, dg, _) = norm_backward("rms_norm_vjp", xs, &gs, &zeros, &rstd, &d, true);
                (dx, dg, Inactive)
            }),
        )
    }
}

// ------------------------------------------------------------------ embedding

/// Integer indices of any shape: `&[usize]`, `Vec<usize>`, `[usize; N]`, or an ndarray
/// array of `usize` (token ids for [`embedding`], labels for [`cross_entropy`]).
pub trait Ids {
    /// The dimension of the index array.
    type Dim: Dimension;
    /// The indices as an array view.
    fn ids(&self) -> ArrayView<'_, usize, Self::Dim>;
}

impl Ids for [usize] {
    type Dim = Ix1;
    fn ids(&self) -> ArrayView<'_, usize, Ix1> {
        ArrayView1::from(self)
    }
}

impl Ids for Vec<usize> {
    type Dim = Ix1;
    fn ids(&self) -> ArrayView<'_, usize, Ix1> {
        ArrayView1::from(self.as_slice())
    }
}

impl<const N: usize> Ids for [usize; N] {
    type Dim = Ix1;
    fn ids(&self) -> ArrayView<'_, usize, Ix1> {
        ArrayView1::from(&self[..])
    }
}

impl<S: Data<Elem = usize>, D: Dimension> Ids for ArrayBase<S, D> {
    type Dim = D;
    fn ids(&self) -> ArrayView<'_, usize, D> {
        self.view()
    }
}

/// A borrow of ids is the ids (what generated code holds for an argument `&Array2<usize>`).
impl<I: Ids + ?Sized> Ids for &I {
    type Dim = I::Dim;
    fn ids(&self) -> ArrayView<'_, usize, I::Dim> {
        (**self).ids()
    }
}

/// `ids.shape + [d]`.
fn with_last(ids: &[usize], d: usize) -> IxDyn {
    let mut sh = ids.to_vec();
    sh.push(d);
    IxDyn(&sh)
}

/// Embedding lookup (a gather): `y[i.., :] = table[ids[i..], :]`.
///
/// Shapes: `table` `[V, d]` (any layout), `ids` any shape (a slice, `Vec`, array of
/// `usize`, or an ndarray array of `usize`); the result is `ids.shape + [d]`. `f32` or
/// `f64`. The pullback scatter-adds rows into a zero `[V, d]` gradient: O(T·d) work
/// after the zero fill, `T` = number of ids (as PyTorch's dense `embedding_backward`).
///
/// # Panics
/// If an id is ≥ V (naming the op, the id, its position and V).
///
/// ```
/// use ndarray::array;
/// let table = array![[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]];
/// let y = backprop::ops::embedding(&table, &[2usize, 0, 2]);
/// assert_eq!(y, array![[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]);
/// ```
pub fn embedding<S, T, I>(
    table: &ArrayBase<S, Ix2>,
    ids: &I,
) -> Array<T, <I::Dim as Dimension>::Larger>
where
    S: Data<Elem = T>,
    T: Real,
    I: Ids + ?Sized,
{
    let ids = ids.ids();
    let (v, d) = table.dim();
    let mut out = Vec::with_capacity(ids.len() * d);
    for (pos, &id) in ids.iter().enumerate() {
        check_id("embedding", id, pos, v);
        match table.row(id).as_slice() {
            Some(r) => out.extend_from_slice(r),
            None => out.extend(table.row(id).iter().copied()),
        }
    }
    Array::from_shape_vec(with_last(ids.shape(), d), out)
        .unwrap()
        .into_dimensionality()
        .unwrap()
}

fn check_id(op: &str, id: usize, pos: usize, v: usize) {
    if id >= v {
        panic!("{op}: id {id} at position {pos} is out of range for a table of {v} rows");
    }
}

/// Pullback of [`embedding`]: `d_table[ids[i..], :] += d_y[i.., :]` into a zero
/// `[vocab, d]` array (repeated ids accumulate). Saves only the ids.
///
/// # Panics
/// If `d_y` is not `ids.shape + [d]` or an id is ≥ `vocab`.
pub fn embedding_vjp<S, T, I, E>(vocab: usize, ids: &I, d_y: &ArrayBase<S, E>) -> Array2<T>
where
    S: Data<Elem = T>,
    T: Real,
    I: Ids + ?Sized,
    E: Dimension,
{
    let ids = ids.ids();
    let d = d_y.shape().last().copied().unwrap_or(0);
    let want = with_last(ids.shape(), d);
    if d_y.ndim() != ids.ndim() + 1 || d_y.shape()[..ids.ndim()] != *ids.shape() {
        panic!(
            "embedding_vjp: ids are {} but d_y is {} (want {})",
            shape_str(ids.shape()),
            shape_str(d_y.shape()),
            shape_str(want.slice())
        );
    }
    let mut g = Array2::zeros((vocab, d));
    let dy = d_y.as_standard_layout();
    let gs = g.as_slice_mut().unwrap();
    if d > 0 {
        for (pos, (&id, row)) in ids
            .iter()
            .zip(dy.as_slice().unwrap().chunks_exact(d))
            .enumerate()
        {
            check_id("embedding_vjp", id, pos, vocab);
            for (o, &v) in gs[id * d..(id + 1) * d].iter_mut().zip(row) {
                *o += v;
            }
        }
    }
    g
}

#[doc(hidden)]
pub struct embedding {}
impl embedding {
    /// Forward pass: the gathered rows and a tape holding the ids (8 bytes each) and V.
    #[inline]
    pub fn forward<S, T, I>(
        table: &ArrayBase<S, Ix2>,
        ids: &I,
    ) -> (
        Array<T, <I::Dim as Dimension>::Larger>,
        Tape<
            impl FnOnce(Array<T, <I::Dim as Dimension>::Larger>) -> (Array2<T>, Inactive) + use<S, T, I>,
        >,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        I: Ids + ?Sized,
    {
        let y = embedding(table, ids);
        let saved = ids.ids().to_owned();
        let vocab = table.nrows();
        (
            y,
            Tape::with_heap_bytes(nbytes::<usize>(saved.len()), move |d: Array<T, _>| {
                (embedding_vjp(vocab, &saved, &d), Inactive)
            }),
        )
    }
}

// ------------------------------------------------------------------ masked softmax

/// Softmax over the last axis restricted to `mask`'s true entries: `y_j = e^(x_j − m)/Σ_k
/// e^(x_k − m)` over kept `j, k` (`m` the kept max), `y_j = 0` where `mask` is false.
/// A row with no kept finite logit (all masked, or all kept logits −∞) is all zeros,
/// with zero gradient — never NaN (PyTorch's `softmax` gives NaN there).
///
/// Shapes: `x` any `[.., n]`; `mask` any shape that broadcasts to `x`'s (NumPy rules),
/// true = keep. `f32` or `f64`. The pullback is [`softmax_masked_vjp`] on the output
/// (`y = 0` at masked entries makes their gradient 0); the tape saves `y`.
///
/// # Panics
/// If `mask` does not broadcast to `x`'s shape (naming the op and both shapes).
///
/// ```
/// use ndarray::array;
/// let y = backprop::ops::softmax_masked(
///     &array![[0.0f64, 5.0, 0.0], [1.0, 2.0, 3.0]],
///     &array![true, false, true],
/// );
/// assert_eq!(y.row(0), array![0.5, 0.0, 0.5]);
/// let p = 1.0 / (1.0 + 2f64.exp()); // row 1 keeps 1.0 and 3.0
/// assert!((y[[1, 0]] - p).abs() < 1e-15 && y[[1, 1]] == 0.0);
/// assert!((y[[1, 2]] - (1.0 - p)).abs() < 1e-15);
/// let none = backprop::ops::softmax_masked(&array![1.0f32, 2.0], &array![false, false]);
/// assert_eq!(none, array![0.0, 0.0]);
/// ```
pub fn softmax_masked<S1, S2, T, D, E>(x: &ArrayBase<S1, D>, mask: &ArrayBase<S2, E>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = bool>,
    T: Real,
    D: Dimension,
    E: Dimension,
{
    let n = last_axis("softmax_masked", x.shape());
    // Broadcast to x's own dimension type: iterating an IxDyn view is several times
    // slower.
    let keep: Vec<bool> = match mask.broadcast(x.raw_dim()) {
        Some(m) => m.iter().copied().collect(),
        None => panic!(
            "softmax_masked: mask is {} but x is {} (the mask must broadcast to x)",
            shape_str(mask.shape()),
            shape_str(x.shape())
        ),
    };
    let xs = x.as_standard_layout();
    let mut y = Array::zeros(x.raw_dim());
    if n > 0 && !x.is_empty() {
        let mut lse = vec![T::zero(); x.len() / n];
        let ys = y.as_slice_mut().unwrap();
        kernel::forward(xs.as_slice().unwrap(), n, Keep::Mask(&keep), ys, &mut lse);
    }
    y
}

/// Causal softmax of attention scores `[.., T, T]` over the last axis: row `i` keeps
/// columns `j ≤ i` (`j > i` masked to output 0), as GPT's `masked_fill(tril == 0, −∞)`
/// followed by `softmax` (Radford et al. 2018; Vaswani et al. 2017, §3.2.3). Row 0 keeps
/// one entry, so no row is empty; −∞ scores give 0 and no NaN unless a whole row's kept
/// scores are −∞ (then the row is 0).
///
/// Shapes: `x` `[.., T, T]` (at least two axes, the last two equal). `f32` or `f64`.
/// Pullback [`softmax_masked_vjp`] on the saved output.
///
/// # Panics
/// If `x` has fewer than two axes or its last two differ (naming the op and the shape).
///
/// ```
/// use ndarray::array;
/// let y = backprop::ops::softmax_causal(&array![[1.0f64, 9.0], [0.0, 0.0]]);
/// assert_eq!(y, array![[1.0, 0.0], [0.5, 0.5]]);
/// ```
pub fn softmax_causal<S, T, D>(x: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    softmax_causal_packing(x, false).0
}

/// [`softmax_causal`], and with `pack` its kept entries packed ([`pack_causal_into`]'s
/// layout) in the same pass over each block.
fn softmax_causal_packing<S, T, D>(x: &ArrayBase<S, D>, pack: bool) -> (Array<T, D>, Vec<T>)
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    let sh = x.shape();
    if sh.len() < 2 || sh[sh.len() - 1] != sh[sh.len() - 2] {
        panic!(
            "softmax_causal: x is {} but must be [.., T, T] (square in the last two axes)",
            shape_str(sh)
        );
    }
    let t = sh[sh.len() - 1];
    let xs = x.as_standard_layout();
    // Zeroed block by block inside the jobs below, each just before the kernel writes
    // it (in cache and on every thread), rather than by one pass over all of y first.
    let mut y = Array::uninit(x.raw_dim());
    let items = x.len().checked_div(t * t).unwrap_or(0);
    let block = t * (t + 1) / 2;
    let mut packed = Vec::new();
    packed.resize_with(if pack { items * block } else { 0 }, MaybeUninit::uninit);
    if t > 0 && !x.is_empty() {
        // One `[T, T]` block per item, on rayon's threads when large: each block's rows
        // are numbered from 0, as the causal mask needs.
        let xsl = xs.as_slice().unwrap();
        let mut lse = Vec::new();
        lse.resize_with(x.len() / t, MaybeUninit::uninit);
        let ys = y.as_slice_mut().unwrap();
        super::per_chunks(
            [
                (ys, t * t),
                (&mut lse, t),
                (&mut packed, if pack { block } else { 0 }),
            ],
            items,
            SOFTMAX_WORK_PER_ELEMENT * x.len(),
            |i, [yi, li, pi]| {
                let (yi, li, pi) = (
                    crate::kernels::zeroed(yi),
                    crate::kernels::zeroed(li),
                    crate::kernels::zeroed(pi),
                );
                kernel::forward(&xsl[i * t * t..(i + 1) * t * t], t, Keep::Causal, yi, li);
                if pack {
                    pack_causal_into(yi, t, pi);
                }
            },
        );
    }
    // SAFETY: the items cover y and `packed` whole (x.len() = items·T², `packed` has
    // items·T(T+1)/2 entries when packing), and each job zeroed its pieces; with t = 0 or
    // no elements, y and `packed` are empty.
    let y = unsafe { y.assume_init() };
    // SAFETY: as above, every element of `packed` is initialised.
    let packed = unsafe { crate::kernels::assume_init_vec(packed) };
    (y, packed)
}

/// Multiply-adds an exponential and a row sum cost per element, as counted against
/// [`super::BATCH_PARALLEL_MIN_FLOPS`] when the causal softmax splits its `[T, T]` blocks
/// over rayon's threads.
const SOFTMAX_WORK_PER_ELEMENT: usize = 16;

/// Pullback of [`softmax_masked`] and [`softmax_causal`] from the saved output `y`:
/// as [`softmax_vjp`](super::softmax_vjp), `d_x = y ⊙ (d_y − ⟨d_y, y⟩_row)` (the row sum over 8
/// accumulators), which is 0 wherever `y` is (masked
/// entries, empty rows).
///
/// # Panics
/// If `y` and `d_y` differ in shape.
pub fn softmax_masked_vjp<S1, S2, T, D>(y: &ArrayBase<S1, D>, d_y: &ArrayBase<S2, D>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    softmax_masked_vjp_over(y.as_standard_layout().into_owned(), d_y)
}

/// [`softmax_masked_vjp`] written over `y`, which it takes by value: each element of
/// `y` is read once, where its `d_x` goes (the companion hands over the tape's copy).
fn softmax_masked_vjp_over<S, T, D>(y: Array<T, D>, d_y: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    super::same_shape("softmax_masked_vjp", "y", y.shape(), "d_y", d_y.shape());
    let n = last_axis("softmax_masked_vjp", y.shape());
    let mut y = if y.is_standard_layout() {
        y
    } else {
        y.as_standard_layout().into_owned()
    };
    let ds = d_y.as_standard_layout();
    if n > 0 && !y.is_empty() {
        for (yi, di) in y
            .as_slice_mut()
            .unwrap()
            .chunks_exact_mut(n)
            .zip(ds.as_slice().unwrap().chunks_exact(n))
        {
            let dot = lane_sum(yi, di, |a, b| a * b);
            for (o, &b) in yi.iter_mut().zip(di) {
                *o *= b - dot;
            }
        }
    }
    y
}

#[doc(hidden)]
pub struct softmax_masked {}
impl softmax_masked {
    /// Forward pass: the value and a tape holding a copy of it.
    #[inline]
    pub fn forward<S1, S2, T, D, E>(
        x: &ArrayBase<S1, D>,
        mask: &ArrayBase<S2, E>,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>, Inactive) + use<S1, S2, T, D, E>>,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = bool>,
        T: Real,
        D: Dimension,
        E: Dimension,
    {
        let y = softmax_masked(x, mask);
        let saved = y.clone();
        (
            y,
            Tape::with_heap_bytes(nbytes::<T>(saved.len()), move |d: Array<T, D>| {
                (softmax_masked_vjp_over(saved, &d), Inactive)
            }),
        )
    }
}

/// The kept entries of one causal softmax block `y` (`[T, T]`, rows of `t`) into `out`
/// (`T(T+1)/2` long): row `r` keeps its first `r + 1`, packed one row after another, so
/// the tape holds `T(T+1)/2` numbers per block instead of `T²`.
fn pack_causal_into<T: Real>(y: &[T], t: usize, out: &mut [T]) {
    let mut off = 0;
    for (r, row) in y.chunks_exact(t).enumerate() {
        out[off..off + r + 1].copy_from_slice(&row[..r + 1]);
        off += r + 1;
    }
}

/// [`softmax_masked_vjp`] for [`softmax_causal`] from the packed kept entries
/// ([`pack_causal_into`]): `d_x = y ⊙ (d_y − ⟨d_y, y⟩_row)` over each row's kept prefix, 0
/// above the diagonal (where `y` is 0). Written over `d_y`, which it takes by value
/// (each element is read once, where its `d_x` goes).
fn softmax_causal_vjp_packed<T, D>(packed: &[T], dim: D, d_y: Array<T, D>) -> Array<T, D>
where
    T: Real,
    D: Dimension,
{
    super::same_shape("softmax_causal_vjp", "y", dim.slice(), "d_y", d_y.shape());
    let t = last_axis("softmax_causal_vjp", d_y.shape());
    let mut d_x = if d_y.is_standard_layout() {
        d_y
    } else {
        d_y.as_standard_layout().into_owned()
    };
    if t == 0 || d_x.is_empty() {
        return d_x;
    }
    // One `[T, T]` block per item (its packed entries start at `i·T(T+1)/2`), on
    // rayon's threads when large.
    let block = t * (t + 1) / 2;
    let work = SOFTMAX_WORK_PER_ELEMENT * d_x.len();
    super::per_chunk(d_x.as_slice_mut().unwrap(), t * t, work, |i, di| {
        let mut off = i * block;
        for (r, oi) in di.chunks_exact_mut(t).enumerate() {
            let n = r + 1;
            let yi = &packed[off..off + n];
            off += n;
            let (kept, above) = oi.split_at_mut(n);
            let dot = lane_sum(yi, kept, |a, b| a * b);
            for (o, &a) in kept.iter_mut().zip(yi) {
                *o = a * (*o - dot);
            }
            above.fill(T::zero());
        }
    });
    d_x
}

#[doc(hidden)]
pub struct softmax_causal {}
impl softmax_causal {
    /// Forward pass: the value and a tape holding its kept (on or below the diagonal)
    /// entries, `T(T+1)/2` per `[T, T]` block.
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>,) + use<S, T, D>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let (y, saved) = softmax_causal_packing(x, true);
        let dim = y.raw_dim();
        (
            y,
            Tape::with_heap_bytes(nbytes::<T>(saved.len()), move |d: Array<T, D>| {
                (softmax_causal_vjp_packed(&saved, dim, d),)
            }),
        )
    }
}

// ------------------------------------------------------------------ attention

fn check_attention(op: &str, q: &[usize], k: &[usize], v: &[usize]) {
    if q != k {
        panic!("{op}: q is {} but k is {}", shape_str(q), shape_str(k));
    }
    if q != v {
        panic!("{op}: q is {} but v is {}", shape_str(q), shape_str(v));
    }
}

/// Scaled dot-product attention over `[B, H, T, d]`: per batch and head,
/// `O = softmax(Q·Kᵀ/√d + M)·V`, `M` = −∞ above the diagonal when `causal` (Vaswani et
/// al. 2017, eq. 1). Returns `O` `[B, H, T, d]`.
///
/// The companion's tape keeps `Q`, `K`, `V`, `O` and one log-sum-exp per row
/// (`m_i + ln Σ_j e^(s_ij − m_i)`, `B·H·T` numbers), never the `T×T` probabilities: the
/// backward pass recomputes them block by block (per head) from that statistic, as
/// FlashAttention does (Dao et al. 2022, Algorithm 2 and §3.1). Tape bytes are
/// O(B·H·T·d). `f32` or `f64`; any layout.
///
/// # Panics
/// If `q`, `k` and `v` do not all have the same shape (naming the op and two shapes).
///
/// ```
/// use ndarray::Array4;
/// // With one key, the output is that key's value whatever the query.
/// let q = Array4::from_elem((1, 1, 1, 2), 3.0f64);
/// let k = Array4::from_elem((1, 1, 1, 2), -1.0);
/// let v = Array4::from_shape_vec((1, 1, 1, 2), vec![0.25, 4.0]).unwrap();
/// assert_eq!(backprop::ops::attention(&q, &k, &v, true), v);
/// ```
pub fn attention<S1, S2, S3, T>(
    q: &ArrayBase<S1, Ix4>,
    k: &ArrayBase<S2, Ix4>,
    v: &ArrayBase<S3, Ix4>,
    causal: bool,
) -> Array4<T>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    attention_with_stats(q, k, v, causal).0
}

/// Rows per block of a causal head: block `[r0, r1)` of `S`, `P` and `d_S` only has
/// entries in columns `< r1`, so the products skip the blocks above the diagonal
/// (36 of 64 block pairs computed at T = 256, 3 of 4 at T = 64). A multiple of the
/// softmax kernel's 16 lanes, so a causal row's rounded-up span stays inside its block.
const CAUSAL_BLOCK: usize = 32;

/// The row blocks of a head of `t` rows and, for each, the columns it can reach:
/// `[(r0, r1, cols)]`, `cols = r1` when causal, else one block of all `t`.
fn row_blocks(t: usize, causal: bool) -> impl Iterator<Item = (usize, usize, usize)> {
    let step = if causal { CAUSAL_BLOCK } else { t.max(1) };
    (0..t).step_by(step).map(move |r0| {
        let r1 = (r0 + step).min(t);
        (r0, r1, if causal { r1 } else { t })
    })
}

/// `S = Q_h·K_hᵀ/√d` for one head; with `causal`, only the blocks on or below the
/// diagonal are computed and the rest is 0 (the softmax masks it).
fn head_scores<T: Real>(
    q: ArrayView2<'_, T>,
    k: ArrayView2<'_, T>,
    scale: T,
    causal: bool,
) -> Array2<T> {
    let t = q.nrows();
    let mut s = Array2::zeros((t, t));
    for (r0, r1, cols) in row_blocks(t, causal) {
        super::matmul_one_thread(
            s.slice_mut(s![r0..r1, ..cols]),
            q.slice(s![r0..r1, ..]),
            k.slice(s![..cols, ..]).t(),
        );
        // `s` is this function's own standard-layout array: its rows are slices.
        let rows = s.as_slice_mut().expect("standard layout");
        for row in rows[r0 * t..r1 * t].chunks_exact_mut(t) {
            row[..cols].iter_mut().for_each(|v| *v *= scale);
        }
    }
    s
}

/// One head's forward, written into `o` (`[T, d]`) and `lse` (`T`). Row `i` keeps
/// columns `< kept(i)`; a row whose kept scores are all −∞ gets `P = 0`, `O = 0` and
/// `lse = −∞`.
fn head_forward<T: Real>(
    q: ArrayView2<'_, T>,
    k: ArrayView2<'_, T>,
    v: ArrayView2<'_, T>,
    scale: T,
    causal: bool,
    mut o: ndarray::ArrayViewMut2<'_, T>,
    lse: &mut [T],
) {
    let t = q.nrows();
    let mut p = head_scores(q, k, scale, causal);
    if t > 0 {
        let keep = if causal { Keep::Causal } else { Keep::All };
        let ps = p.as_slice_mut().unwrap();
        let x = ps.to_vec();
        kernel::forward(&x, t, keep, ps, lse);
    }
    for (r0, r1, cols) in row_blocks(t, causal) {
        super::matmul_one_thread(
            o.slice_mut(s![r0..r1, ..]),
            p.slice(s![r0..r1, ..cols]),
            v.slice(s![..cols, ..]),
        );
    }
}

/// One head's backward (Dao et al. 2022, Algorithm 2, with blocks of rows when causal),
/// written into `[d_Q, d_K, d_V]` (each `[T, d]`; every row is written).
fn head_backward<T: Real>(
    q: ArrayView2<'_, T>,
    k: ArrayView2<'_, T>,
    v: ArrayView2<'_, T>,
    o: ArrayView2<'_, T>,
    d_o: ArrayView2<'_, T>,
    lse: &[T],
    scale: T,
    causal: bool,
    [mut dq, mut dk, mut dv]: [ndarray::ArrayViewMut2<'_, T>; 3],
) {
    let t = q.nrows();
    let mut p = head_scores(q, k, scale, causal);
    if !p.is_empty() {
        kernel::exp_shifted(p.as_slice_mut().unwrap(), t, causal, lse);
    }
    // d_P = d_O·Vᵀ on the reachable blocks (0 elsewhere, where P is 0 too).
    let mut ds = Array2::zeros((t, t));
    for (r0, r1, cols) in row_blocks(t, causal) {
        super::matmul_one_thread(
            ds.slice_mut(s![r0..r1, ..cols]),
            d_o.slice(s![r0..r1, ..]),
            v.slice(s![..cols, ..]).t(),
        );
    }
    // d_S = P ⊙ (d_P − D_i)·scale, D_i = ⟨d_O_i, O_i⟩, over the columns row i reaches. `ds` and `p` are this function's own standard-
    // layout arrays, so their rows are slices.
    let (dss, ps) = (ds.as_slice_mut().unwrap(), p.as_slice().unwrap());
    for (i, (dsr, pr)) in dss.chunks_exact_mut(t).zip(ps.chunks_exact(t)).enumerate() {
        let di: T = match (d_o.row(i).to_slice(), o.row(i).to_slice()) {
            (Some(a), Some(c)) => lane_sum(a, c, |x, y| x * y),
            _ => d_o.row(i).iter().zip(o.row(i)).map(|(&a, &c)| a * c).sum(),
        };
        let reach = if causal { i + 1 } else { t };
        for (x, &pv) in dsr[..reach].iter_mut().zip(&pr[..reach]) {
            *x = pv * (*x - di) * scale;
        }
        // Above the diagonal inside row i's block d_P was computed but P is 0: d_S is
        // 0 there (the products below read the whole block).
        let block_end = if causal {
            ((i / CAUSAL_BLOCK + 1) * CAUSAL_BLOCK).min(t)
        } else {
            t
        };
        dsr[reach..block_end].fill(T::zero());
    }
    for (r0, r1, cols) in row_blocks(t, causal) {
        // Rows r0..r1 of d_Q reach columns < cols; columns r0..r1 of P and d_S are
        // reached by rows from r0 on when causal (from 0 otherwise).
        let from = if causal { r0 } else { 0 };
        super::matmul_one_thread(
            dq.slice_mut(s![r0..r1, ..]),
            ds.slice(s![r0..r1, ..cols]),
            k.slice(s![..cols, ..]),
        );
        super::matmul_one_thread(
            dk.slice_mut(s![r0..r1, ..]),
            ds.slice(s![from.., r0..r1]).t(),
            q.slice(s![from.., ..]),
        );
        super::matmul_one_thread(
            dv.slice_mut(s![r0..r1, ..]),
            p.slice(s![from.., r0..r1]).t(),
            d_o.slice(s![from.., ..]),
        );
    }
}

/// [`attention`] and its log-sum-exp per row (`[B, H, T]` row-major), what
/// [`attention_vjp`] reads.
///
/// # Panics
/// As [`attention`].
pub fn attention_with_stats<S1, S2, S3, T>(
    q: &ArrayBase<S1, Ix4>,
    k: &ArrayBase<S2, Ix4>,
    v: &ArrayBase<S3, Ix4>,
    causal: bool,
) -> (Array4<T>, Vec<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    let (out, lse, _) = attention_forward(q, k, v, causal, false);
    (out, lse)
}

/// `O` and the log-sum-exp per row, and with `keep` copies of `Q`, `K`, `V` and `O` for
/// the tape, each head's written by the job that computes that head (in cache, on
/// rayon's threads) rather than by four copies of the whole arrays afterwards. Every
/// result is allocated uninitialised and each head's piece zeroed just before the job
/// writes it.
#[allow(clippy::type_complexity)]
fn attention_forward<S1, S2, S3, T>(
    q: &ArrayBase<S1, Ix4>,
    k: &ArrayBase<S2, Ix4>,
    v: &ArrayBase<S3, Ix4>,
    causal: bool,
    keep: bool,
) -> (Array4<T>, Vec<T>, Option<[Array4<T>; 4]>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    check_attention("attention", q.shape(), k.shape(), v.shape());
    let (b, h, t, d) = q.dim();
    let scale = T::one() / T::from(d.max(1)).unwrap().sqrt();
    let (qv, kv, vv) = (q.view(), k.view(), v.view());
    let dims = (b, h, t, d);
    let kept_dims = if keep { dims } else { (0, 0, 0, 0) };
    let mut out = Array4::uninit(dims);
    let mut kept = [(); 4].map(|_| Array4::uninit(kept_dims));
    let mut lse = Vec::new();
    lse.resize_with(b * h * t, MaybeUninit::uninit);
    let piece = if keep { t * d } else { 0 };
    let [kq, kk, kvv, ko] = kept.each_mut().map(|a| a.as_slice_mut().unwrap());
    let outs = [
        (out.as_slice_mut().unwrap(), t * d),
        (&mut lse[..], t),
        (kq, piece),
        (kk, piece),
        (kvv, piece),
        (ko, piece),
    ];
    super::per_chunks(
        outs,
        b * h,
        b * h * t * t * d,
        |i, [o, l, cq, ck, cv, co]| {
            let sl = s![i / h, i % h, .., ..];
            let (o, l) = (crate::kernels::zeroed(o), crate::kernels::zeroed(l));
            let (qh, kh, vh) = (qv.slice(sl), kv.slice(sl), vv.slice(sl));
            let ov = ndarray::ArrayViewMut2::from_shape((t, d), &mut *o).unwrap();
            head_forward(qh, kh, vh, scale, causal, ov, l);
            if keep {
                for (dst, src) in [(cq, qh), (ck, kh), (cv, vh)] {
                    for (c, &x) in dst.iter_mut().zip(src.iter()) {
                        c.write(x);
                    }
                }
                for (c, &x) in co.iter_mut().zip(o.iter()) {
                    c.write(x);
                }
            }
        },
    );
    // SAFETY: the B·H jobs cover `out` and `lse` whole (T·d and T per head) and zeroed
    // then wrote each piece; with `keep`, each job wrote its head's T·d elements of
    // every copy (the views iterate in the copies' row-major order), and without it the
    // copies are empty.
    let out = unsafe { out.assume_init() };
    let kept = keep.then(|| kept.map(|a| unsafe { a.assume_init() }));
    // SAFETY: as above, every element of `lse` is initialised.
    let lse = unsafe { crate::kernels::assume_init_vec(lse) };
    (out, lse, kept)
}

/// Pullback of [`attention`] from `Q`, `K`, `V`, the output `O` and the saved
/// log-sum-exp per row (Dao et al. 2022, Algorithm 2, one block per head): recompute
/// `P = e^(S − lse)` (0 where masked), then `d_V = Pᵀ·d_O`, `d_P = d_O·Vᵀ`,
/// `D_i = Σ_j d_O_ij·O_ij`, `d_S = P ⊙ (d_P − D)`, `d_Q = d_S·K/√d`, `d_K = d_Sᵀ·Q/√d`.
/// Returns `(d_Q, d_K, d_V)`.
///
/// # Panics
/// If the shapes disagree (naming the op and two shapes) or `lse` is not `B·H·T` long.
pub fn attention_vjp<S1, S2, S3, S4, S5, T>(
    q: &ArrayBase<S1, Ix4>,
    k: &ArrayBase<S2, Ix4>,
    v: &ArrayBase<S3, Ix4>,
    o: &ArrayBase<S4, Ix4>,
    lse: &[T],
    causal: bool,
    d_o: &ArrayBase<S5, Ix4>,
) -> (Array4<T>, Array4<T>, Array4<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    S4: Data<Elem = T>,
    S5: Data<Elem = T>,
    T: Real,
{
    check_attention("attention_vjp", q.shape(), k.shape(), v.shape());
    super::same_shape("attention_vjp", "q", q.shape(), "d_o", d_o.shape());
    super::same_shape("attention_vjp", "q", q.shape(), "o", o.shape());
    let (b, h, t, d) = q.dim();
    assert!(
        lse.len() == b * h * t,
        "attention_vjp: q is {} but lse holds {} rows",
        shape_str(q.shape()),
        lse.len()
    );
    let scale = T::one() / T::from(d.max(1)).unwrap().sqrt();
    let (qv, kv, vv, ov, dov) = (q.view(), k.view(), v.view(), o.view(), d_o.view());
    let mut dq = Array4::zeros((b, h, t, d));
    let mut dk = Array4::zeros((b, h, t, d));
    let mut dv = Array4::zeros((b, h, t, d));
    let outs = [
        dq.as_slice_mut().unwrap(),
        dk.as_slice_mut().unwrap(),
        dv.as_slice_mut().unwrap(),
    ]
    .map(|o| (o, t * d));
    super::per_chunks(outs, b * h, 2 * b * h * t * t * d, |i, grads| {
        let sl = s![i / h, i % h, .., ..];
        let grads = grads.map(|g| ndarray::ArrayViewMut2::from_shape((t, d), g).unwrap());
        head_backward(
            qv.slice(sl),
            kv.slice(sl),
            vv.slice(sl),
            ov.slice(sl),
            dov.slice(sl),
            &lse[i * t..(i + 1) * t],
            scale,
            causal,
            grads,
        );
    });
    (dq, dk, dv)
}

#[doc(hidden)]
pub struct attention {}
impl attention {
    /// Forward pass: `O` and a tape holding `Q`, `K`, `V`, `O` and one log-sum-exp per
    /// row: `(4·B·H·T·d + B·H·T)` elements, linear in `T`.
    #[inline]
    pub fn forward<S1, S2, S3, T>(
        q: &ArrayBase<S1, Ix4>,
        k: &ArrayBase<S2, Ix4>,
        v: &ArrayBase<S3, Ix4>,
        causal: bool,
    ) -> (
        Array4<T>,
        Tape<
            impl FnOnce(Array4<T>) -> (Array4<T>, Array4<T>, Array4<T>, Inactive) + use<S1, S2, S3, T>,
        >,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        S3: Data<Elem = T>,
        T: Real,
    {
        let (o, lse, kept) = attention_forward(q, k, v, causal, true);
        let [qs, ks, vs, os] = kept.expect("kept above");
        let heap = nbytes::<T>(qs.len() + ks.len() + vs.len() + os.len() + lse.len());
        (
            o,
            Tape::with_heap_bytes(heap, move |d: Array4<T>| {
                let (dq, dk, dv) = attention_vjp(&qs, &ks, &vs, &os, &lse, causal, &d);
                (dq, dk, dv, Inactive)
            }),
        )
    }
}

// ------------------------------------------------------------------ GELU (exact), dropout

/// GELU in its exact form, `x·Φ(x) = ½x·(1 + erf(x/√2))` (Hendrycks & Gimpel 2016, §2;
/// PyTorch's `gelu(approximate='none')`). `Φ` is evaluated as `½·erfc(−x/√2)` in f64,
/// so the left tail keeps its relative accuracy, and the result rounded to `T`: for f64
/// with fdlibm's `erfc` (about 1 ulp; see `kernels::erf`); for f32 with a branch-free
/// Chebyshev fit of `erfc` (fractional error below 1.2·10⁻⁷; Press et al., *Numerical
/// Recipes*, §6.2), which vectorises (AVX2 + FMA, dispatched at run time) and keeps
/// the f32 result within 2 ulp of the fdlibm one. `gelu_exact(−∞) = 0`. [`gelu`] is
/// the tanh approximation.
///
/// Shapes: any; the result has `x`'s. `f32` or `f64`. The companion's tape saves `x`.
///
/// ```
/// let y = backprop::ops::gelu_exact(&ndarray::array![0.0f64, 1.0, -1.0]);
/// assert_eq!(y[0], 0.0);
/// assert!((y[1] - 0.8413447460685429).abs() < 1e-15);
/// assert!((y[2] + 0.15865525393145707).abs() < 1e-15);
/// ```
///
/// [`gelu`]: super::gelu
pub fn gelu_exact<S, T, D>(x: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    super::activation::apply(Unary::GeluExact, x)
}

/// Pullback of [`gelu_exact`]: `d_x = d_y·(Φ(x) + x·φ(x))`, `φ(x) = e^(−x²/2)/√(2π)`.
///
/// # Panics
/// If `x` and `d_y` differ in shape.
pub fn gelu_exact_vjp<S1, S2, T, D>(x: &ArrayBase<S1, D>, d_y: &ArrayBase<S2, D>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    super::activation::pull("gelu_exact_vjp", Unary::GeluExact, x, d_y)
}

/// SplitMix64's output `i` for `seed` (Steele, Lea & Flood 2014): a counter-based
/// stream, so element `i`'s draw does not depend on the order elements are visited.
#[inline]
fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The keep mask of [`dropout`] over `n` elements (standard-layout order), one bit per
/// element (`bit i of word i/64`): element `i` is kept when its uniform draw
/// `u_i ∈ [0, 1)` (53 bits of SplitMix64 output `i` of `seed`) is ≥ `p`.
///
/// # Panics
/// If `p` is not in `[0, 1]`.
pub fn dropout_mask(n: usize, p: f64, seed: u64) -> Vec<u64> {
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout: p must be in [0, 1], got {p}"
    );
    let mut bits = vec![0u64; n.div_ceil(64)];
    for i in 0..n {
        let u = (splitmix(seed, i as u64) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        if u >= p {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

fn apply_mask<S: Data<Elem = T>, T: Real, D: Dimension>(
    x: &ArrayBase<S, D>,
    bits: &[u64],
    p: f64,
) -> Array<T, D> {
    let scale = T::from(1.0 / (1.0 - p)).unwrap_or(T::zero());
    let xs = x.as_standard_layout();
    let mut y = Array::zeros(x.raw_dim());
    for (i, (o, &v)) in y.iter_mut().zip(xs.iter()).enumerate() {
        // A dropped element is `v · 0`, not a written 0: a NaN or ±∞ stays NaN, as in
        // PyTorch's `x · mask / (1 − p)` (nothing hides a NaN).
        *o = if bits[i / 64] >> (i % 64) & 1 == 1 {
            v * scale
        } else {
            v * T::zero()
        };
    }
    y
}

/// Inverted dropout: `y = x ⊙ keep/(1 − p)`, each element kept with probability `1 − p`
/// (Srivastava et al. 2014; the `1/(1 − p)` scale at training time, as PyTorch's
/// `dropout`). Deterministic for a `seed`: the mask is [`dropout_mask`]`(x.len(), p,
/// seed)` in `x`'s logical (row-major) order, the same in f32 and f64. `p = 1` drops
/// everything (output and gradient 0). A dropped element is `x · 0`, so a NaN or ±∞
/// input gives NaN there (as PyTorch), never a silent 0; the pullback likewise.
///
/// Shapes: any; the result has `x`'s. The companion's tape saves the mask as bits
/// (`⌈n/64⌉` words), not `x`.
///
/// # Panics
/// If `p` is not in `[0, 1]`.
///
/// ```
/// let x = ndarray::Array1::from_elem(1000, 1.0f64);
/// let y = backprop::ops::dropout(&x, 0.25, 7);
/// let kept = y.iter().filter(|&&v| v != 0.0).count();
/// assert!((700..800).contains(&kept));
/// assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-15));
/// assert_eq!(y, backprop::ops::dropout(&x, 0.25, 7));
/// ```
pub fn dropout<S, T, D>(x: &ArrayBase<S, D>, p: f64, seed: u64) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    let bits = dropout_mask(x.len(), p, seed);
    apply_mask(x, &bits, p)
}

/// Pullback of [`dropout`] from the saved mask bits: `d_x = d_y ⊙ keep/(1 − p)`.
///
/// # Panics
/// If `bits` holds fewer than `d_y.len()` bits.
pub fn dropout_vjp<S, T, D>(bits: &[u64], p: f64, d_y: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    assert!(
        bits.len() * 64 >= d_y.len(),
        "dropout_vjp: d_y is {} but the mask holds {} bits",
        shape_str(d_y.shape()),
        bits.len() * 64
    );
    apply_mask(d_y, bits, p)
}

#[doc(hidden)]
pub struct dropout {}
impl dropout {
    /// Forward pass: the value and a tape holding the keep mask, 1 bit per element.
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
        p: f64,
        seed: u64,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>, Inactive, Inactive) + use<S, T, D>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let bits = dropout_mask(x.len(), p, seed);
        let y = apply_mask(x, &bits, p);
        (
            y,
            Tape::with_heap_bytes(nbytes::<u64>(bits.len()), move |d: Array<T, D>| {
                (dropout_vjp(&bits, p, &d), Inactive, Inactive)
            }),
        )
    }
}

// ------------------------------------------------------------------ cross-entropy

/// Flattens `[.., V]` logits to `[N, V]` and the labels to `N`, checking they agree.
fn flatten_xent<'a, S, T, D, I>(
    logits: &'a ArrayBase<S, D>,
    labels: &I,
) -> (ndarray::CowArray<'a, T, Ix2>, Vec<usize>)
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
    I: Ids + ?Sized,
{
    let sh = logits.shape();
    let lab = labels.ids();
    if sh.is_empty() || sh[..sh.len() - 1] != *lab.shape() {
        panic!(
            "cross_entropy: logits are {} but labels are {} (want the logits' leading axes)",
            shape_str(sh),
            shape_str(lab.shape())
        );
    }
    let v = sh[sh.len() - 1];
    let n = lab.len();
    let two = logits
        .as_standard_layout()
        .into_shape_with_order((n, v))
        .unwrap();
    (two, lab.iter().copied().collect())
}

/// Mean softmax cross-entropy over `[.., V]` logits (`[N, V]`, or `[B, T, V]` for a
/// sequence model) against integer labels of the leading shape (`[N]`, `[B, T]`, or
/// flat): [`softmax_cross_entropy`](super::softmax_cross_entropy) on the flattened
/// rows, with its [`XentOptions`]: rows whose label is `ignore_index` add no loss and
/// no gradient and are not counted in the mean; `label_smoothing` ε makes the target
/// `(1 − ε)·one_hot(y) + ε/V` (PyTorch's `cross_entropy(ignore_index, label_smoothing)`;
/// Szegedy et al. 2016, §7). If every row is ignored the loss is 0 and the gradient 0
/// (PyTorch gives NaN).
///
/// `f32` or `f64`; any layout. The companion computes the loss and gradient in one
/// fused pass and keeps the gradient (`N·V`) on the tape.
///
/// # Panics
/// If the labels' shape is not the logits' leading shape (naming the op and both
/// shapes), a label is ≥ V and not ignored, or a counted row is entirely −∞.
///
/// ```
/// use backprop::ops::{cross_entropy, XentOptions};
/// let logits = ndarray::Array3::<f64>::zeros((2, 3, 4)); // [B, T, V]
/// let labels = ndarray::array![[0usize, 1, 9], [3, 9, 2]]; // 9 = padding
/// let opts = XentOptions { ignore_index: Some(9), ..XentOptions::default() };
/// assert!((cross_entropy(&logits, &labels, opts) - 4f64.ln()).abs() < 1e-15);
/// ```
pub fn cross_entropy<S, T, D, I>(logits: &ArrayBase<S, D>, labels: &I, opts: XentOptions<T>) -> T
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
    I: Ids + ?Sized,
{
    let (x, lab) = flatten_xent(logits, labels);
    super::softmax_cross_entropy(&x, &lab, opts)
}

/// Pullback of [`cross_entropy`]: `d_logits = d_loss·(softmax(x) − t)/N` per counted
/// row, 0 on ignored rows, in the logits' shape.
///
/// # Panics
/// As [`cross_entropy`].
pub fn cross_entropy_vjp<S, T, D, I>(
    logits: &ArrayBase<S, D>,
    labels: &I,
    opts: XentOptions<T>,
    d_loss: T,
) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
    I: Ids + ?Sized,
{
    cross_entropy_with_grad(logits, labels, opts, d_loss).1
}

fn cross_entropy_with_grad<S, T, D, I>(
    logits: &ArrayBase<S, D>,
    labels: &I,
    opts: XentOptions<T>,
    d_loss: T,
) -> (T, Array<T, D>)
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
    I: Ids + ?Sized,
{
    let (x, lab) = flatten_xent(logits, labels);
    let mut g = Array2::zeros(x.raw_dim());
    let loss = super::softmax_cross_entropy_with_grad(&x, &lab, opts, d_loss, &mut g);
    (loss, g.into_shape_with_order(logits.raw_dim()).unwrap())
}

#[doc(hidden)]
pub struct cross_entropy {}
impl cross_entropy {
    /// Forward pass: the loss, computed with its gradient in one fused pass; the tape
    /// keeps that gradient and the backward pass scales it by the cotangent.
    #[inline]
    pub fn forward<S, T, D, I>(
        logits: &ArrayBase<S, D>,
        labels: &I,
        opts: XentOptions<T>,
    ) -> (
        T,
        Tape<impl FnOnce(T) -> (Array<T, D>, Inactive, Inactive) + use<S, T, D, I>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
        I: Ids + ?Sized,
    {
        let (loss, mut grad) = cross_entropy_with_grad(logits, labels, opts, T::one());
        (
            loss,
            Tape::with_heap_bytes(nbytes::<T>(grad.len()), move |d: T| {
                if d != T::one() {
                    grad.mapv_inplace(|g| crate::rules::scalar::strong_mul(d, g));
                }
                (grad, Inactive, Inactive)
            }),
        )
    }
}
