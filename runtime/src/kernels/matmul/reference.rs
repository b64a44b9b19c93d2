//! The matmul's scalar reference: the fallback without SIMD (or with
//! `BACKPROP_FORCE_ARCH=scalar`) and the oracle the kernel tests compare against
//! (re-exported as `kernels::scalar::matmul` beside the other kernels' references).

use super::{Accum, check_shapes};
use crate::kernels::Real;
use ndarray::{ArrayView2, ArrayViewMut2};

/// `c ← a·b` or `c ← c + a·b`, the schoolbook triple loop over any strides
/// (each `c[i, j]` is one left-to-right dot product).
///
/// # Panics
/// On shape mismatch, as [`super::matmul`].
pub fn matmul<T: Real>(
    mut c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accum: Accum,
) {
    check_shapes("matmul", c.dim(), a.dim(), b.dim());
    let (m, k) = a.dim();
    let n = b.ncols();
    for i in 0..m {
        for j in 0..n {
            let mut s = T::zero();
            for p in 0..k {
                s += a[[i, p]] * b[[p, j]];
            }
            match accum {
                Accum::Replace => c[[i, j]] = s,
                Accum::Add => c[[i, j]] += s,
            }
        }
    }
}
