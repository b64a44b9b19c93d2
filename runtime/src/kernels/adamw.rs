//! The fused Adam/AdamW step: one pass over `w, g, m, v` that reads four streams and
//! writes three (28 bytes per `f32` parameter), which makes it bound by memory bandwidth.
//!
//! Per element, with the step constants of [`AdamWConsts`] (Kingma & Ba 2015, Alg. 1;
//! Loshchilov & Hutter 2019, Alg. 2, decoupled decay):
//!
//! ```text
//! g' = g + l2·w                                   (coupled L2, plain Adam only; usually 0)
//! m  ← β₁·m + (1 − β₁)·g'
//! v  ← β₂·v + (1 − β₂)·g'²
//! w  ← decay·w − lr_c1 · m / (√v · sqrt_c2 + ε)
//!
//! decay   = 1 − lr·λ            (decoupled weight decay, PyTorch's lr·λ convention)
//! lr_c1   = lr / (1 − β₁ᵗ)      (so lr_c1·m = lr·m̂)
//! sqrt_c2 = 1 / √(1 − β₂ᵗ)      (so √v·sqrt_c2 = √v̂)
//! ```
//!
//! which is `w ← w − lr·m̂/(√v̂ + ε) − lr·λ·w` with the bias-corrected moments.
//! Folding the bias corrections into two scalars keeps the per-element work at one sqrt,
//! one division and a handful of FMAs, far below the memory time.
//!
//! Layout of the work: the slices are cut into blocks of [`BLOCK`] elements that the
//! threads (both cores when the tensor is large, see [`PARALLEL_MIN_LEN`]) take in turn;
//! inside a block the AVX2+FMA body handles 16 lanes per iteration (two `__m256`), the
//! scalar reference the tail.
//!
//! ```text
//! w g m v : |blk 0|blk 1|blk 2|blk 3| ...   next free block → whichever thread is free
//! a block : |8|8|8|8| ... |8|8| tail (< 16, scalar; only in the last block)
//! ```

use super::Arch;
use super::Real;

/// Tensors shorter than this run on the calling thread (spawning costs ~10 µs; below
/// ~100k parameters one core finishes sooner than the spawn).
pub const PARALLEL_MIN_LEN: usize = 1 << 17;

/// The per-step scalars of the fused step (see the module docs for the formula).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConsts {
    /// β₁, decay of the first moment.
    pub beta1: f64,
    /// β₂, decay of the second moment.
    pub beta2: f64,
    /// lr / (1 − β₁ᵗ).
    pub lr_c1: f64,
    /// 1 / √(1 − β₂ᵗ).
    pub sqrt_c2: f64,
    /// ε, added to √v̂.
    pub eps: f64,
    /// 1 − lr·λ, the decoupled weight decay factor.
    pub decay: f64,
    /// Coupled L2 coefficient added to the gradient (`g + l2·w`), Adam's `weight_decay`.
    pub l2: f64,
}

impl AdamWConsts {
    /// The constants of step `t` (1-based: the first step is `t = 1`).
    ///
    /// `weight_decay` is AdamW's decoupled λ (multiplied by `lr`), `l2` the coupled
    /// coefficient of Adam with L2 regularisation.
    pub fn new(
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        l2: f64,
        t: u64,
    ) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        AdamWConsts {
            beta1,
            beta2,
            lr_c1: lr / (1.0 - beta1.powi(t)),
            sqrt_c2: 1.0 / (1.0 - beta2.powi(t)).sqrt(),
            eps,
            decay: 1.0 - lr * weight_decay,
            l2,
        }
    }
}

/// The scalar reference of the fused step, in any [`Real`]: the fallback on CPUs
/// without AVX2/FMA, the `f64` path, and the oracle the SIMD path is tested against.
///
/// # Panics
/// If the four slices differ in length.
///
/// ```
/// use backprop::kernels::adamw::{step_scalar, AdamWConsts};
/// let (mut w, g, mut m, mut v) = (vec![1.0f64], vec![0.5], vec![0.0], vec![0.0]);
/// // First Adam step: m̂ = g, v̂ = g², so w moves by lr·g/|g| = lr (ε = 0, λ = 0).
/// step_scalar(&mut w, &g, &mut m, &mut v, &AdamWConsts::new(0.1, 0.9, 0.999, 0.0, 0.0, 0.0, 1));
/// assert!((w[0] - 0.9).abs() < 1e-15);
/// ```
pub fn step_scalar<F: Real>(w: &mut [F], g: &[F], m: &mut [F], v: &mut [F], k: &AdamWConsts) {
    let n = w.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: slices differ in length"
    );
    // (An `f64` converts to `f32` by rounding, to ±∞ past its range: never `None`.)
    let of = |x: f64| <F as num_traits::NumCast>::from(x).expect("a float converts");
    let (b1, b2) = (of(k.beta1), of(k.beta2));
    let (one_b1, one_b2) = (of(1.0 - k.beta1), of(1.0 - k.beta2));
    let (lr_c1, sqrt_c2, eps, decay, l2) =
        (of(k.lr_c1), of(k.sqrt_c2), of(k.eps), of(k.decay), of(k.l2));
    let coupled = k.l2 != 0.0;
    for i in 0..n {
        let gi = if coupled { g[i] + l2 * w[i] } else { g[i] };
        let mi = b1 * m[i] + one_b1 * gi;
        let vi = b2 * v[i] + one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = decay * w[i] - lr_c1 * mi / (vi.sqrt() * sqrt_c2 + eps);
    }
}

/// The fused step over `f32` slices: SIMD when the CPU has AVX2+FMA (unless
/// `BACKPROP_FORCE_ARCH=scalar`), one thread per core for tensors of at least
/// [`PARALLEL_MIN_LEN`] elements. Agrees with [`step_scalar`] to a few ulps (the SIMD
/// path contracts `a·b + c` into FMAs).
///
/// # Panics
/// If the four slices differ in length.
///
/// ```
/// use backprop::kernels::adamw::{step, AdamWConsts};
/// let n = 1000;
/// let (mut w, g, mut m, mut v) = (vec![1.0f32; n], vec![-2.0f32; n], vec![0.0; n], vec![0.0; n]);
/// step(&mut w, &g, &mut m, &mut v, &AdamWConsts::new(1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 1));
/// // First step with λ = 0 moves every weight by lr·sign(−g) = +1e-3 (up to ε).
/// assert!(w.iter().all(|&x| (x - 1.001).abs() < 1e-6));
/// ```
pub fn step(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamWConsts) {
    step_threads(w, g, m, v, k, threads_for(w.len()));
}

/// [`step`] on exactly `threads` threads (the calling one included; 0 counts as 1), for
/// callers that manage their own parallelism or measure scaling.
///
/// # Panics
/// If the four slices differ in length.
pub fn step_threads(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: &AdamWConsts,
    threads: usize,
) {
    let n = w.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: slices differ in length"
    );
    par_zip4(w, g, m, v, threads, |w, g, m, v| step_chunk(w, g, m, v, k));
}

/// Elements per block handed to a thread by [`par_zip4`]: 32 Ki floats, 128 KiB per
/// stream, a multiple of 16 so that blocks split at 64-byte lines.
pub const BLOCK: usize = 1 << 15;

/// Runs `kernel` over matching blocks of four equal-length slices on `threads` threads
/// (the calling one included), each thread taking the next free block until none are
/// left. The work split of [`step`], public so that the benchmark's bandwidth probe
/// shares it exactly.
///
/// PERF: blocks are handed out dynamically, not as one fixed half per thread: when
/// another process takes a core for a while (two engineers share this machine; a
/// training loop shares it with data loading), the other thread takes over the
/// remaining blocks instead of waiting for a fixed share to finish.
///
/// # Panics
/// If the slices differ in length, or if `kernel` panics.
pub fn par_zip4<K>(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    threads: usize,
    kernel: K,
) where
    K: Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
{
    let n = w.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw: slices differ in length"
    );
    if threads <= 1 || n <= BLOCK {
        return kernel(w, g, m, v);
    }
    let blocks = std::sync::Mutex::new(
        w.chunks_mut(BLOCK)
            .zip(g.chunks(BLOCK))
            .zip(m.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK)),
    );
    let work = || loop {
        // The lock is held only to take the next block (~3000 per 100M elements).
        let next = blocks.lock().unwrap_or_else(|e| e.into_inner()).next();
        match next {
            Some((((w, g), m), v)) => kernel(w, g, m, v),
            None => break,
        }
    };
    // rayon's pool, not a thread per call: spawning an OS thread costs tens of µs
    // here, a fifth of a whole step at 1M parameters.
    rayon::scope(|s| {
        for _ in 1..threads.min(n.div_ceil(BLOCK)) {
            s.spawn(|_| work());
        }
        work();
    });
}

/// How many threads a tensor of `n` elements gets: one per core, each with at least
/// `PARALLEL_MIN_LEN / 2` elements.
pub fn threads_for(n: usize) -> usize {
    use std::sync::OnceLock;
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()));
    if n < PARALLEL_MIN_LEN {
        1
    } else {
        cores.min(n / (PARALLEL_MIN_LEN / 2)).max(1)
    }
}

/// Whether any value of `g` is NaN or ±∞: the optimizer's non-finite gradient check,
/// run before the step so that a bad gradient never reaches the state. One read stream
/// (4 bytes per parameter, a seventh of the step's traffic), vectorised with AVX2 and
/// split over the same threads as [`step`].
///
/// ```
/// use backprop::kernels::adamw::any_non_finite;
/// assert!(!any_non_finite(&[1.0, -0.0, f32::MAX]));
/// assert!(any_non_finite(&[1.0, f32::NAN]) && any_non_finite(&[f32::NEG_INFINITY]));
/// ```
pub fn any_non_finite(g: &[f32]) -> bool {
    let threads = threads_for(g.len());
    if threads <= 1 {
        return any_non_finite_chunk(g);
    }
    use rayon::prelude::*;
    let chunk = g.len().div_ceil(threads);
    g.par_chunks(chunk)
        .map(any_non_finite_chunk)
        .reduce(|| false, |a, b| a | b)
}

/// The scalar reference of [`any_non_finite`]: exponent bits all ones ⇔ NaN or ±∞.
pub fn any_non_finite_scalar(g: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    g.iter()
        .fold(0u32, |acc, x| acc | u32::from(x.to_bits() & EXP == EXP))
        != 0
}

fn any_non_finite_chunk(g: &[f32]) -> bool {
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Arch::Avx2Fma` is only returned after run-time detection of AVX2.
        Arch::Avx2Fma => unsafe { x86::any_non_finite_avx2(g) },
        _ => any_non_finite_scalar(g),
    }
}

/// One thread's share, on the arch detected once.
fn step_chunk(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamWConsts) {
    match Arch::get() {
        #[cfg(target_arch = "x86_64")]
        Arch::Avx2Fma => {
            // SAFETY: `Arch::Avx2Fma` is only returned after run-time detection of both
            // features on this CPU; the slices have equal lengths (checked by `step`).
            unsafe { x86::step_avx2_fma(w, g, m, v, k) }
        }
        _ => step_scalar(w, g, m, v, k),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{AdamWConsts, step_scalar};
    use std::arch::x86_64::*;

    /// AVX2 exponent test, 32 floats per iteration; the tail through the scalar reference.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn any_non_finite_avx2(g: &[f32]) -> bool {
        let head = g.len() / 32 * 32;
        let p = g.as_ptr();
        let exp = _mm256_set1_epi32(0x7f80_0000);
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i < head {
            for j in 0..4 {
                // SAFETY: `i + 8·j + 8 <= head <= g.len()`: in bounds; unaligned loads.
                let x = unsafe { _mm256_loadu_si256(p.add(i + 8 * j).cast()) };
                acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(_mm256_and_si256(x, exp), exp));
            }
            i += 32;
        }
        _mm256_testz_si256(acc, acc) == 0 || super::any_non_finite_scalar(&g[head..])
    }

    /// The AVX2+FMA shim: only enables the features for the generic body.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; the four slices must have equal lengths.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn step_avx2_fma(
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        k: &AdamWConsts,
    ) {
        if k.l2 != 0.0 {
            // SAFETY: forwarded contract of this function.
            unsafe { body::<true>(w, g, m, v, k) }
        } else {
            // SAFETY: as above.
            unsafe { body::<false>(w, g, m, v, k) }
        }
    }

    /// The step constants broadcast to all eight lanes.
    struct Splat {
        b1: __m256,
        b2: __m256,
        one_b1: __m256,
        one_b2: __m256,
        lr_c1: __m256,
        sqrt_c2: __m256,
        eps: __m256,
        decay: __m256,
        l2: __m256,
    }

    /// Two `__m256` (16 lanes) per iteration, the tail through the scalar reference.
    /// `COUPLED` adds `l2·w` to the gradient (plain Adam with L2); monomorphised so that
    /// AdamW's loop has no branch.
    ///
    /// # Safety
    /// As [`step_avx2_fma`]; inlined into it so the target features apply.
    #[inline(always)]
    unsafe fn body<const COUPLED: bool>(
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        k: &AdamWConsts,
    ) {
        let n = w.len();
        let head = n / 16 * 16;
        let (wp, gp, mp, vp) = (w.as_mut_ptr(), g.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
        // SAFETY: `_mm256_set1_ps` needs AVX, implied by the caller's AVX2 contract.
        let c = unsafe {
            Splat {
                b1: _mm256_set1_ps(k.beta1 as f32),
                b2: _mm256_set1_ps(k.beta2 as f32),
                one_b1: _mm256_set1_ps((1.0 - k.beta1) as f32),
                one_b2: _mm256_set1_ps((1.0 - k.beta2) as f32),
                lr_c1: _mm256_set1_ps(k.lr_c1 as f32),
                sqrt_c2: _mm256_set1_ps(k.sqrt_c2 as f32),
                eps: _mm256_set1_ps(k.eps as f32),
                decay: _mm256_set1_ps(k.decay as f32),
                l2: _mm256_set1_ps(k.l2 as f32),
            }
        };
        let mut i = 0;
        while i < head {
            // SAFETY: `i + 16 <= head <= n`, so lanes `i..i + 16` are in bounds of all four
            // slices (equal lengths, the caller's contract); AVX2/FMA as above.
            unsafe {
                lane::<COUPLED>(wp.add(i), gp.add(i), mp.add(i), vp.add(i), &c);
                lane::<COUPLED>(
                    wp.add(i + 8),
                    gp.add(i + 8),
                    mp.add(i + 8),
                    vp.add(i + 8),
                    &c,
                );
            }
            i += 16;
        }
        step_scalar(
            &mut w[head..],
            &g[head..],
            &mut m[head..],
            &mut v[head..],
            k,
        );
    }

    /// Eight parameters: the module formula, lane-wise.
    ///
    /// # Safety
    /// AVX2/FMA available; the four pointers valid for 8 `f32` reads (and writes for
    /// `w`, `m`, `v`), `w`, `m`, `v` not aliasing each other or `g`. Unaligned is fine.
    #[inline(always)]
    unsafe fn lane<const COUPLED: bool>(
        wp: *mut f32,
        gp: *const f32,
        mp: *mut f32,
        vp: *mut f32,
        c: &Splat,
    ) {
        // SAFETY: the function's contract.
        unsafe {
            let w0 = _mm256_loadu_ps(wp);
            let mut g0 = _mm256_loadu_ps(gp);
            if COUPLED {
                g0 = _mm256_fmadd_ps(c.l2, w0, g0);
            }
            // m = β₁m + (1−β₁)g ; v = β₂v + (1−β₂)g²
            let m0 = _mm256_fmadd_ps(c.b1, _mm256_loadu_ps(mp), _mm256_mul_ps(c.one_b1, g0));
            let v0 = _mm256_fmadd_ps(
                c.b2,
                _mm256_loadu_ps(vp),
                _mm256_mul_ps(_mm256_mul_ps(c.one_b2, g0), g0),
            );
            // w = decay·w − lr_c1·m / (√v·sqrt_c2 + ε)
            let den = _mm256_fmadd_ps(_mm256_sqrt_ps(v0), c.sqrt_c2, c.eps);
            let upd = _mm256_div_ps(_mm256_mul_ps(c.lr_c1, m0), den);
            let w1 = _mm256_fmsub_ps(c.decay, w0, upd);
            _mm256_storeu_ps(mp, m0);
            _mm256_storeu_ps(vp, v0);
            _mm256_storeu_ps(wp, w1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    type Bufs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    fn bufs(n: usize, seed: u64) -> Bufs {
        let mut r = StdRng::seed_from_u64(seed);
        let mut v = |lo: f32, hi: f32| (0..n).map(|_| r.random_range(lo..hi)).collect::<Vec<f32>>();
        (v(-2.0, 2.0), v(-1.0, 1.0), v(-0.1, 0.1), v(0.0, 0.01))
    }

    /// `a` and `b` agree to `ulps` units in the last place of `scale` (the magnitude of
    /// the terms summed to make them: FMA contraction rounds once where the reference
    /// rounds twice, an error relative to the terms, not to a possibly cancelled result).
    fn agree(a: f32, b: f32, scale: f32, ulps: f32, what: &str, i: usize, n: usize) {
        let tol = ulps * f32::EPSILON * scale.max(f32::MIN_POSITIVE);
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}] of {n}: simd {a} vs scalar {b} (tol {tol})"
        );
    }

    fn compare(n: usize, k: &AdamWConsts) {
        let (w0, g, m0, v0) = bufs(n, n as u64 + 1);
        let (mut w1, mut m1, mut v1) = (w0.clone(), m0.clone(), v0.clone());
        let (mut w2, mut m2, mut v2) = (w0.clone(), m0.clone(), v0.clone());
        step(&mut w1, &g, &mut m1, &mut v1, k);
        step_scalar(&mut w2, &g, &mut m2, &mut v2, k);
        let (b1, b2) = (k.beta1 as f32, k.beta2 as f32);
        for i in 0..n {
            let gi = g[i] + k.l2 as f32 * w0[i];
            agree(m1[i], m2[i], b1 * m0[i].abs() + gi.abs(), 4.0, "m", i, n);
            agree(v1[i], v2[i], b2 * v0[i] + gi * gi, 4.0, "v", i, n);
            let upd = (k.decay as f32 * w0[i] - w2[i]).abs();
            agree(w1[i], w2[i], w0[i].abs() + upd, 8.0, "w", i, n);
        }
    }

    #[test]
    fn simd_matches_scalar_around_vector_width() {
        // Sizes 0..=67 cover empty, tail-only (< 16), one and several 16-lane blocks with
        // every tail length; t = 1 and t = 1000 exercise small and large bias corrections.
        for t in [1, 1000] {
            let k = AdamWConsts::new(1e-3, 0.9, 0.999, 1e-8, 0.01, 0.0, t);
            for n in 0..=67 {
                compare(n, &k);
            }
        }
    }

    #[test]
    fn simd_matches_scalar_large_and_threaded() {
        // Above PARALLEL_MIN_LEN the work is handed to two threads in BLOCK-sized pieces;
        // odd sizes leave a ragged last block with a scalar tail.
        let k = AdamWConsts::new(3e-4, 0.9, 0.95, 1e-8, 0.1, 0.0, 7);
        for n in [PARALLEL_MIN_LEN - 1, PARALLEL_MIN_LEN, 1_000_003] {
            compare(n, &k);
        }
    }

    #[test]
    fn coupled_l2_path_matches_scalar() {
        let k = AdamWConsts::new(1e-2, 0.9, 0.999, 1e-8, 0.0, 0.05, 3);
        for n in [0, 5, 16, 33, 67, 4099] {
            compare(n, &k);
        }
    }

    #[test]
    fn first_step_moves_by_lr_sign() {
        // t = 1, ε = 0, λ = 0: m̂ = g and v̂ = g², so w − lr·g/|g| exactly up to rounding.
        let (mut w, g, _, _) = bufs(67, 9);
        let w0 = w.clone();
        let (mut m, mut v) = (vec![0.0; 67], vec![0.0; 67]);
        step(
            &mut w,
            &g,
            &mut m,
            &mut v,
            &AdamWConsts::new(0.5, 0.9, 0.999, 0.0, 0.0, 0.0, 1),
        );
        for i in 0..67 {
            let want = w0[i] - 0.5 * g[i].signum();
            assert!(
                (w[i] - want).abs() <= 4.0 * f32::EPSILON,
                "{i}: {} vs {want}",
                w[i]
            );
        }
    }

    #[test]
    fn non_finite_check_matches_scalar_at_every_position() {
        // A single NaN, +∞ or −∞ at each position of sizes 0..=67 (head and tail of the
        // 32-lane loop), and the largest finite values, which must not trip it.
        for n in 0..=67 {
            let clean = vec![f32::MAX; n];
            assert!(!any_non_finite(&clean) && !any_non_finite_scalar(&clean));
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for i in 0..n {
                    let mut g = vec![-f32::MAX; n];
                    g[i] = bad;
                    assert!(any_non_finite(&g), "n {n}, {bad} at {i}");
                    assert!(any_non_finite_scalar(&g));
                }
            }
        }
        // Threaded: the bad value in the last thread's chunk.
        let mut g = vec![1.0f32; 1_000_003];
        assert!(!any_non_finite(&g));
        g[1_000_002] = f32::NAN;
        assert!(any_non_finite(&g));
        // ... and in the first chunk, on the pool's other side.
        g[1_000_002] = 1.0;
        g[0] = f32::NEG_INFINITY;
        assert!(any_non_finite(&g));
    }
}
