//! Our own packed AVX2/FMA f32 microkernel, kept as the measured alternative to the gemm
//! engine (`benches/matmul.rs` runs it side by side; docs/PERFORMANCE.md has the
//! figures and the decision). Single-threaded, f32 only.
//!
//! Blocking (Goto & van de Geijn 2008, BLIS's Haswell sgemm tile): C is computed in
//! MR×NR = 6×16 register tiles; A is packed in MC×KC blocks of 6-row slivers, B in KC×NC
//! panels of 16-column slivers, both k-major and zero-padded at the edges.
//!
//! ```text
//!            B sliver (KC × 16, two ymm per k)
//!          ┌──────────┬──────────┐
//!          │  b0 (8)  │  b1 (8)  │
//!  A  ┌─┐  ├──────────┼──────────┤
//!  6  │a│→ │ acc[0][0]│ acc[0][1]│  12 ymm accumulators
//!  ×  │ │  │   ...    │   ...    │  + 2 for B + 1 broadcast of a[i]
//!  KC └─┘  │ acc[5][0]│ acc[5][1]│  = 15 of 16 ymm registers
//!          └──────────┴──────────┘
//! ```

use super::Accum;
use ndarray::{ArrayView2, ArrayViewMut2};

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 96;

/// `c ← a·b` or `c ← c + a·b` with our microkernel. Falls back to
/// [`super::reference::matmul`] without AVX2/FMA.
///
/// # Panics
/// On shape mismatch, as [`super::matmul`].
pub fn matmul_own(
    mut c: ArrayViewMut2<'_, f32>,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accum: Accum,
) {
    super::check_shapes("matmul", c.dim(), a.dim(), b.dim());
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::Arch::get() == crate::kernels::Arch::Avx2Fma {
            let (m, k) = a.dim();
            let n = b.ncols();
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 {
                if accum == Accum::Replace {
                    c.fill(0.0);
                }
                return;
            }
            // SAFETY: AVX2 and FMA were detected at run time (Arch::Avx2Fma).
            unsafe { blocked_avx2(&mut c, &a, &b, accum) };
            return;
        }
    }
    super::reference::matmul(c, a, b, accum)
}

/// Packs rows `i0..i0+mc`, columns `p0..p0+kc` of `a` into 6-row k-major slivers.
fn pack_a(a: &ArrayView2<'_, f32>, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut Vec<f32>) {
    out.clear();
    for ir in (0..mc).step_by(MR) {
        for p in 0..kc {
            for i in 0..MR {
                let row = ir + i;
                // SAFETY: row < mc and p < kc keep the index inside a's m×k shape.
                out.push(if row < mc {
                    unsafe { *a.uget((i0 + row, p0 + p)) }
                } else {
                    0.0
                });
            }
        }
    }
}

/// Packs rows `p0..p0+kc` of `b` (all columns) into 16-column k-major slivers.
fn pack_b(b: &ArrayView2<'_, f32>, p0: usize, kc: usize, out: &mut Vec<f32>) {
    let n = b.ncols();
    out.clear();
    for jr in (0..n).step_by(NR) {
        for p in 0..kc {
            for j in 0..NR {
                let col = jr + j;
                // SAFETY: col < n and p < kc keep the index inside b's k×n shape.
                out.push(if col < n {
                    unsafe { *b.uget((p0 + p, col)) }
                } else {
                    0.0
                });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn blocked_avx2(
    c: &mut ArrayViewMut2<'_, f32>,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    accum: Accum,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let mut a_pack = Vec::with_capacity(MC * KC);
    let mut b_pack = Vec::with_capacity(n.div_ceil(NR) * NR * KC);
    let mut tile = [0.0f32; MR * NR];
    // Equal k-blocks of at most KC (784 = 4 × 196, not 3 × 256 + 16), so no block is
    // too shallow to amortise its tile write-back.
    let kb = k.div_ceil(k.div_ceil(KC));
    for p0 in (0..k).step_by(kb) {
        let kc = kb.min(k - p0);
        pack_b(b, p0, kc, &mut b_pack);
        // The first k-block replaces (if asked); later ones add.
        let add = accum == Accum::Add || p0 > 0;
        for i0 in (0..m).step_by(MC) {
            let mc = MC.min(m - i0);
            pack_a(a, i0, mc, p0, kc, &mut a_pack);
            for (jb, b_sliver) in b_pack.chunks_exact(NR * kc).enumerate() {
                let j0 = jb * NR;
                let nr = NR.min(n - j0);
                for (ib, a_sliver) in a_pack.chunks_exact(MR * kc).enumerate() {
                    let ii = i0 + ib * MR;
                    let mr = MR.min(m - ii);
                    // SAFETY: the slivers hold kc·MR and kc·NR packed values (chunks_exact),
                    // `tile` holds MR·NR; avx2/fma are enabled on this function.
                    unsafe {
                        kernel_6x16(kc, a_sliver.as_ptr(), b_sliver.as_ptr(), tile.as_mut_ptr())
                    };
                    for i in 0..mr {
                        for j in 0..nr {
                            let v = tile[i * NR + j];
                            // SAFETY: i < mr and j < nr keep the index inside c's m×n shape.
                            let dst = unsafe { c.uget_mut((ii + i, j0 + j)) };
                            *dst = if add { *dst + v } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// The 6×16 register tile: `tile = Σ_p a[p]·b[p]ᵀ` over `kc` packed steps.
///
/// # Safety
/// `a` must hold `6·kc` and `b` `16·kc` readable f32, `tile` 96 writable f32, and the
/// CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel_6x16(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so b + 16p + 15 and a + 6p + 5 are inside the slivers.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(p * MR + i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: tile holds MR·NR values; row i covers tile[16i .. 16i + 16].
        unsafe {
            _mm256_storeu_ps(tile.add(i * NR), row[0]);
            _mm256_storeu_ps(tile.add(i * NR + 8), row[1]);
        }
    }
}
