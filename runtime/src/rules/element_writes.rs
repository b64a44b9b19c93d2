//! Element reads `a[[i, j]]` of ndarray arrays (see [`index_get_vjp`]), and element
//! writes into an ndarray array the `#[grad]` function owns: `a[[i, j]] = v`
//! (a causal mask `scores[[i, j]] = f64::NEG_INFINITY`, an array built element by
//! element from `Array2::zeros`) and `a[[i, j]] += v` (`-=` is `+=` of `-v`).
//!
//! In the IR a write is a new version of the array, `a₁ = a₀ with a₀[idx] = v`, so
//! the rules are those of a functional update (JAX's `x.at[idx].set(v)` and
//! `.add(v)`, whose transposes these are): for `set`, `d_v = d_a₁[idx]` and
//! `d_a₀ = d_a₁` with `[idx]` zeroed (the old element no longer reaches the result);
//! for `add`, `d_v = d_a₁[idx]` and `d_a₀ = d_a₁`. Both the forward and the pullback
//! work in place on an array they own, so a loop writing `n` elements costs O(n), not
//! O(n) copies of the array.

use super::tensor::ArrayShape;
use crate::kernels::Real;
use ndarray::{Array, Dimension, NdIndex};
use std::fmt::Debug;

/// `a[idx] = v`, in place on the owned `a`, which is returned.
///
/// # Panics
/// If `idx` is outside `a`'s shape: `"`scores[[i, j]] = v`: index [4, 0] is out of
/// bounds for an array of shape 4×4"`.
#[track_caller]
pub fn index_set<T: Real, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    what: &str,
    mut a: Array<T, D>,
    idx: I,
    v: T,
) -> Array<T, D> {
    *element(what, &mut a, idx) = v;
    a
}

/// `a[idx] += v`, in place on the owned `a`, which is returned.
///
/// # Panics
/// As [`index_set`].
#[track_caller]
pub fn index_add<T: Real, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    what: &str,
    mut a: Array<T, D>,
    idx: I,
    v: T,
) -> Array<T, D> {
    let e = element(what, &mut a, idx);
    *e += v;
    a
}

/// Pullback of [`index_set`]: `(d_a, d_v) = (d with d[idx] = 0, d[idx])`, in place on
/// the cotangent, which it takes.
pub fn index_set_vjp<T: Real, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    mut d: Array<T, D>,
    idx: I,
) -> (Array<T, D>, T) {
    let e = element("index_set_vjp", &mut d, idx);
    let d_v = *e;
    *e = T::zero();
    (d, d_v)
}

/// Pullback of [`index_add`]: `(d_a, d_v) = (d, d[idx])`.
pub fn index_add_vjp<T: Real, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    mut d: Array<T, D>,
    idx: I,
) -> (Array<T, D>, T) {
    let d_v = *element("index_add_vjp", &mut d, idx);
    (d, d_v)
}

/// Pullback of an element read `t = a[idx]`: `d_t` at `idx` in zeros of `a`'s shape
/// (the transpose of a gather, as JAX's and PyTorch's indexing give; O(size of `a`)).
pub fn index_get_vjp<T: Real, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    shape: &ArrayShape<T, D>,
    idx: &I,
    d: &T,
) -> Array<T, D> {
    let mut out = Array::zeros(shape.dim.clone());
    *element("index_get_vjp", &mut out, *idx) = *d;
    out
}

/// `a.fill(v)` on the owned `a`, which is returned: every element `v`.
pub fn fill<T: Real, D: Dimension>(mut a: Array<T, D>, v: T) -> Array<T, D> {
    a.fill(v);
    a
}

/// Pullback of [`fill`]: `(d_a, d_v) = (0, Σ d)`; the zero reuses `d`'s allocation.
pub fn fill_vjp<T: Real, D: Dimension>(mut d: Array<T, D>) -> (Array<T, D>, T) {
    let d_v = d.iter().fold(T::zero(), |s, &e| s + e);
    d.fill(T::zero());
    (d, d_v)
}

#[track_caller]
fn element<'a, T, D: Dimension, I: NdIndex<D> + Debug + Copy>(
    what: &str,
    a: &'a mut Array<T, D>,
    idx: I,
) -> &'a mut T {
    if a.get(idx).is_none() {
        panic!(
            "{what}: index {idx:?} is out of bounds for an array of shape {}",
            crate::ops::shape_str(a.shape())
        );
    }
    a.get_mut(idx).expect("checked above")
}
