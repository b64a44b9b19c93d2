//! Matrix products, a bilinear rule: each input's cotangent is the product of the
//! cotangent with the other input, transposed (lesson "Matmul backward, decoded"):
//! `Y = A·B` ⇒ `∂L/∂A = ∂L/∂Y·Bᵀ`, `∂L/∂B = Aᵀ·∂L/∂Y`. The transposes are views into the
//! strided kernel, never copies.

use super::shape_str;
use crate::kernels::Real;
use crate::kernels::matmul::{self as kernel, Accum};
use ndarray::{Array1, Array2, ArrayBase, Axis, Data, Ix1, Ix2};

/// `Y = A·B` for 2-D arrays (`m×k · k×n → m×n`), any layouts, via the strided kernel.
///
/// # Panics
/// If the inner dimensions differ: `"matmul: lhs is 128×784 but rhs is 785×256"`.
///
/// ```
/// let a = ndarray::array![[1.0f32, 2.0], [3.0, 4.0]];
/// assert_eq!(backprop::ops::matmul(&a, &a.t()), ndarray::array![[5.0, 11.0], [11.0, 25.0]]);
/// ```
pub fn matmul<S1, S2, T>(a: &ArrayBase<S1, Ix2>, b: &ArrayBase<S2, Ix2>) -> Array2<T>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
{
    kernel::matmul_new(a.view(), b.view())
}

/// Pullback of [`matmul`]: `(d_a, d_b) = (d_y·bᵀ, aᵀ·d_y)`. Saves both inputs.
///
/// # Panics
/// If the shapes disagree; the message names all three.
pub fn matmul_vjp<S1, S2, S3, T>(
    a: &ArrayBase<S1, Ix2>,
    b: &ArrayBase<S2, Ix2>,
    d_y: &ArrayBase<S3, Ix2>,
) -> (Array2<T>, Array2<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    let (m, n) = (a.nrows(), b.ncols());
    if a.ncols() != b.nrows() || d_y.dim() != (m, n) {
        panic!(
            "matmul_vjp: lhs is {} and rhs is {} but d_y is {}",
            shape_str(a.shape()),
            shape_str(b.shape()),
            shape_str(d_y.shape())
        );
    }
    let mut d_a = Array2::zeros(a.raw_dim());
    let mut d_b = Array2::zeros(b.raw_dim());
    kernel::matmul(d_a.view_mut(), d_y.view(), b.t(), Accum::Replace);
    kernel::matmul(d_b.view_mut(), a.t(), d_y.view(), Accum::Replace);
    (d_a, d_b)
}

/// `y = A·x` for a matrix and a vector (`m×k · k → m`).
///
/// # Panics
/// If `x.len() != A.ncols()`: `"matvec: lhs is 2×3 but rhs is 4"`.
///
/// ```
/// let a = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
/// assert_eq!(backprop::ops::matvec(&a, &ndarray::array![1.0, 1.0]), ndarray::array![3.0, 7.0]);
/// ```
pub fn matvec<S1, S2, T>(a: &ArrayBase<S1, Ix2>, x: &ArrayBase<S2, Ix1>) -> Array1<T>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
{
    if a.ncols() != x.len() {
        panic!(
            "matvec: lhs is {} but rhs is {}",
            shape_str(a.shape()),
            shape_str(x.shape())
        );
    }
    let mut y = Array2::zeros((a.nrows(), 1));
    kernel::matmul(
        y.view_mut(),
        a.view(),
        x.view().insert_axis(Axis(1)),
        Accum::Replace,
    );
    y.remove_axis(Axis(1))
}

/// Pullback of [`matvec`]: `d_a = d_y·xᵀ` (outer product), `d_x = Aᵀ·d_y`. Saves both.
///
/// # Panics
/// If the shapes disagree; the message names all three.
pub fn matvec_vjp<S1, S2, S3, T>(
    a: &ArrayBase<S1, Ix2>,
    x: &ArrayBase<S2, Ix1>,
    d_y: &ArrayBase<S3, Ix1>,
) -> (Array2<T>, Array1<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    if a.ncols() != x.len() || d_y.len() != a.nrows() {
        panic!(
            "matvec_vjp: lhs is {} and rhs is {} but d_y is {}",
            shape_str(a.shape()),
            shape_str(x.shape()),
            shape_str(d_y.shape())
        );
    }
    let g = d_y.view().insert_axis(Axis(1));
    let mut d_a = Array2::zeros(a.raw_dim());
    kernel::matmul(
        d_a.view_mut(),
        g,
        x.view().insert_axis(Axis(0)),
        Accum::Replace,
    );
    let mut d_x = Array2::zeros((x.len(), 1));
    kernel::matmul(d_x.view_mut(), a.t(), g, Accum::Replace);
    (d_a, d_x.remove_axis(Axis(1)))
}
