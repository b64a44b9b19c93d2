//! What a call of another function's gradient compiles to (`let (l, g) = h_grad(x);`
//! inside a `#[grad]` function): the pullback of `x ↦ (h(x), ∇h(x))` at a cotangent
//! `(d_l, d_g)` is `d_l · ∇h(x) + ∇²h(x) · d_g`, a Hessian-vector product along the
//! gradient's own cotangent (Pearlmutter 1994, "Fast exact multiplication by the
//! Hessian"). The rule companion `h_grad {}` calls `h_hvp` and adds the two here, one
//! argument at a time.

use crate::params::Params;
use core::ops::{Add, Mul};
use ndarray::{Array, Dimension};

/// `d · g + hv` for a float argument.
#[inline(always)]
pub fn combine_scalar<F: Copy + Mul<Output = F> + Add<Output = F>>(d: F, g: F, hv: F) -> F {
    d * g + hv
}

/// `d · g + hv` for a buffer argument, in `g`'s memory.
///
/// # Panics
/// If `g` and `hv` differ in length (they are the same argument's gradient and
/// Hessian-vector product, so only a broken `f_hvp` could make them differ).
pub fn combine_slice<F: Copy + Mul<Output = F> + Add<Output = F>>(
    d: F,
    mut g: Vec<F>,
    hv: Vec<F>,
) -> Vec<F> {
    assert_eq!(
        g.len(),
        hv.len(),
        "nested gradient: the gradient has {} elements, the Hessian-vector product {}",
        g.len(),
        hv.len()
    );
    for (x, h) in g.iter_mut().zip(hv) {
        *x = d * *x + h;
    }
    g
}

/// `d · g + hv` for a struct argument (a set of parameters), buffer by buffer, in
/// `g`'s memory.
///
/// # Panics
/// If the two sets differ in their buffers' number or lengths, naming the buffer.
pub fn combine_params<F, P>(d: F, mut g: P, hv: P) -> P
where
    F: Copy + Mul<Output = F> + Add<Output = F>,
    P: Params<F>,
{
    let hv = hv.buffers();
    let mut k = 0;
    g.visit_mut("", &mut |b| {
        let h = hv.get(k).unwrap_or_else(|| {
            panic!("nested gradient: the Hessian-vector product has no buffer `{}`", b.name)
        });
        assert_eq!(
            b.values.len(),
            h.values.len(),
            "nested gradient: `{}` has {} elements in the gradient, {} in the Hessian-vector product",
            b.name,
            b.values.len(),
            h.values.len()
        );
        for (x, y) in b.values.iter_mut().zip(h.values) {
            *x = d * *x + *y;
        }
        k += 1;
    });
    assert_eq!(
        k,
        hv.len(),
        "nested gradient: the two sets have different buffers"
    );
    g
}

/// `d · g + hv` for an ndarray argument, in `g`'s memory.
///
/// # Panics
/// If `g` and `hv` differ in shape (naming both).
pub fn combine_array<F, D>(d: F, mut g: Array<F, D>, hv: Array<F, D>) -> Array<F, D>
where
    F: Copy + Mul<Output = F> + Add<Output = F>,
    D: Dimension,
{
    assert_eq!(
        g.shape(),
        hv.shape(),
        "nested gradient: the gradient is {:?}, the Hessian-vector product {:?}",
        g.shape(),
        hv.shape()
    );
    g.zip_mut_with(&hv, |x, &h| *x = d * *x + h);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_each_kind() {
        assert_eq!(combine_scalar(2.0, 3.0, 0.5), 6.5);
        assert_eq!(
            combine_slice(2.0, vec![1.0, -1.0], vec![0.5, 0.25]),
            vec![2.5, -1.75]
        );
        let g = (vec![1.0_f64, 2.0], ndarray::arr2(&[[1.0, 0.0], [0.0, 1.0]]));
        let hv = (vec![0.5, 0.5], ndarray::arr2(&[[0.0, 1.0], [1.0, 0.0]]));
        let out = combine_params(-1.0, g, hv);
        assert_eq!(out.0, vec![-0.5, -1.5]);
        assert_eq!(out.1, ndarray::arr2(&[[-1.0, 1.0], [1.0, -1.0]]));
    }

    #[test]
    #[should_panic(expected = "has 2 elements in the gradient, 3")]
    fn names_a_length_mismatch() {
        combine_params(1.0, vec![1.0_f64, 2.0], vec![1.0, 2.0, 3.0]);
    }
}
