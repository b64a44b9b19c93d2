//! Dense derivative matrices for small problems, one column or row at a time from the
//! products `#[grad]` generates: [`hessian`] from Hessian-vector products (`f_hvp`),
//! [`jacobian`] from vector-Jacobian products (`f_vjp`, or `f_grad` of each output).
//!
//! Each costs one product per column (row): `n` HVPs for an `n × n` Hessian, `m` VJPs
//! for an `m × n` Jacobian. For large `n`, use the products themselves (a Newton-CG or
//! trust-region solver needs only `H·v`).

use ndarray::Array2;
use num_traits::Float;

/// The `n × n` Hessian of `f` at `x`, column `k` being `H·eₖ` from `hvp(x, eₖ)`.
///
/// - `x`: the point, length `n`; `hvp(x, v)` returns `∇²f(x)·v`, length `n` (typically
///   `|x, v| f_hvp(x, v).2.x` for a `#[grad] fn f(x: &[f64]) -> f64`).
/// - Returns an `Array2<T>` of shape `(n, n)`, not symmetrised: `H[j][k] = H[k][j]` up
///   to rounding is a check of the products (`(H − Hᵀ)` is printed by the tests).
///
/// # Panics
/// If `hvp` returns a vector whose length is not `n`.
///
/// # Example
/// ```
/// use backprop::grad;
///
/// #[grad]
/// fn rosenbrock(x: &[f64]) -> f64 {
///     100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2)
/// }
///
/// let h = backprop::hessian(&[1.0, 1.0], |x, v| rosenbrock_hvp(x, v).2.x);
/// // At the minimum (1, 1): [[802, −400], [−400, 200]].
/// assert_eq!(h, ndarray::array![[802.0, -400.0], [-400.0, 200.0]]);
/// ```
pub fn hessian<T: Float>(x: &[T], mut hvp: impl FnMut(&[T], &[T]) -> Vec<T>) -> Array2<T> {
    let n = x.len();
    let mut h = Array2::zeros((n, n));
    let mut e = vec![T::zero(); n];
    for k in 0..n {
        e[k] = T::one();
        let column = hvp(x, &e);
        assert_eq!(
            column.len(),
            n,
            "hessian: the Hessian-vector product has {} elements, x has {}",
            column.len(),
            n
        );
        for (j, v) in column.into_iter().enumerate() {
            h[[j, k]] = v;
        }
        e[k] = T::zero();
    }
    h
}

/// The `m × n` Jacobian of a function with `m` outputs at `x` (length `n`), row `i`
/// being `eᵢᵀ J` from `vjp(x, eᵢ)`.
///
/// - `vjp(x, d_out)` returns `d_outᵀ · ∂f/∂x`, length `n` (for a `#[grad]` layer
///   `fn f(x: &Array1<f64>) -> Array1<f64>`: `|x, d| f_vjp(x, d).1.x`).
/// - Returns an `Array2<T>` of shape `(m, n)`.
///
/// # Panics
/// If `vjp` returns a vector whose length is not `n`.
///
/// # Example
/// ```
/// use backprop::grad;
/// use ndarray::{Array1, array};
///
/// #[grad]
/// fn layer(x: &Array1<f64>) -> Array1<f64> {
///     x.mapv(|v| v.tanh()) * 2.0
/// }
///
/// let x = array![0.5, -1.0];
/// let j = backprop::jacobian(x.as_slice().unwrap(), 2, |x, d| {
///     let (x, d) = (Array1::from(x.to_vec()), Array1::from(d.to_vec()));
///     layer_vjp(&x, d).1.x.to_vec()
/// });
/// // Diagonal: 2(1 − tanh² xᵢ).
/// assert!((j[[0, 0]] - 2.0 * (1.0 - 0.5f64.tanh().powi(2))).abs() < 1e-15);
/// assert_eq!(j[[0, 1]], 0.0);
/// ```
pub fn jacobian<T: Float>(
    x: &[T],
    m: usize,
    mut vjp: impl FnMut(&[T], &[T]) -> Vec<T>,
) -> Array2<T> {
    let n = x.len();
    let mut jac = Array2::zeros((m, n));
    let mut e = vec![T::zero(); m];
    for i in 0..m {
        e[i] = T::one();
        let row = vjp(x, &e);
        assert_eq!(
            row.len(),
            n,
            "jacobian: the vector-Jacobian product has {} elements, x has {}",
            row.len(),
            n
        );
        for (j, v) in row.into_iter().enumerate() {
            jac[[i, j]] = v;
        }
        e[i] = T::zero();
    }
    jac
}
