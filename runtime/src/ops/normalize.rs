//! Softmax and log-softmax over the last axis (max-shifted, so large logits are safe).

use super::same_shape;
use crate::kernels::Real;
use ndarray::{Array, ArrayBase, Data, Dimension};

/// Applies `f(row_in, row_out)` to every last-axis row, in standard layout.
fn rows<S, T, D>(x: &ArrayBase<S, D>, mut f: impl FnMut(&[T], &mut [T])) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    let x = x.as_standard_layout();
    let mut y = Array::zeros(x.raw_dim());
    let c = x.shape().last().copied().unwrap_or(1);
    if c == 0 || x.is_empty() {
        return y;
    }
    for (xi, yi) in x
        .as_slice()
        .unwrap()
        .chunks_exact(c)
        .zip(y.as_slice_mut().unwrap().chunks_exact_mut(c))
    {
        f(xi, yi);
    }
    y
}

/// `(max, ln Σ e^(x − max))` of a row.
fn shifted_lse<T: Real>(x: &[T]) -> (T, T) {
    let m = x
        .iter()
        .fold(T::neg_infinity(), |a, &b| if b > a { b } else { a });
    let s: T = x.iter().map(|&v| (v - m).exp()).sum();
    (m, s.ln())
}

/// `y_j = e^(x_j − m)/Σ_k e^(x_k − m)` along the last axis (`m` the row max). A row of all
/// −∞ gives NaN (no distribution exists).
///
/// ```
/// let y = backprop::ops::softmax(&ndarray::array![[0.0f64, 0.0], [1e30, 0.0]]);
/// assert_eq!(y, ndarray::array![[0.5, 0.5], [1.0, 0.0]]);
/// ```
pub fn softmax<S, T, D>(x: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    rows(x, |xi, yi| {
        // `e^(x − m)/s`, not `e^(x − (m + ln s))`: rounding `m + ln s` would cost up to
        // half an ulp of `m` in every exponent (1e-5 relative at logits near 1e3 in f32).
        let m = xi
            .iter()
            .fold(T::neg_infinity(), |a, &b| if b > a { b } else { a });
        let mut s = T::zero();
        for (o, &v) in yi.iter_mut().zip(xi) {
            *o = (v - m).exp();
            s += *o;
        }
        let inv = T::one() / s;
        yi.iter_mut().for_each(|o| *o *= inv);
    })
}

/// Pullback of [`softmax`] from the saved output `y`: `d_x = y ⊙ (d_y − ⟨d_y, y⟩)` per
/// row (the Jacobian `diag(y) − y yᵀ` applied to `d_y`).
///
/// # Panics
/// If `y` and `d_y` differ in shape.
pub fn softmax_vjp<S1, S2, T, D>(y: &ArrayBase<S1, D>, d_y: &ArrayBase<S2, D>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("softmax_vjp", "y", y.shape(), "d_y", d_y.shape());
    let d = d_y.as_standard_layout();
    let d = d.as_slice().unwrap();
    let c = y.shape().last().copied().unwrap_or(1).max(1);
    let mut r = 0;
    rows(y, |yi, out| {
        let di = &d[r * c..(r + 1) * c];
        r += 1;
        let dot: T = yi.iter().zip(di).map(|(&a, &b)| a * b).sum();
        for ((o, &a), &b) in out.iter_mut().zip(yi).zip(di) {
            *o = a * (b - dot);
        }
    })
}

/// `y_j = x_j − m − ln Σ_k e^(x_k − m)` along the last axis.
///
/// ```
/// let y = backprop::ops::log_softmax(&ndarray::array![0.0f64, 0.0]);
/// assert_eq!(y, ndarray::array![-std::f64::consts::LN_2, -std::f64::consts::LN_2]);
/// ```
pub fn log_softmax<S, T, D>(x: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    rows(x, |xi, yi| {
        let (m, ln_s) = shifted_lse(xi);
        for (o, &v) in yi.iter_mut().zip(xi) {
            *o = (v - m) - ln_s;
        }
    })
}

/// Pullback of [`log_softmax`] from the saved output `y`: `d_x = d_y − e^y·Σ_k d_y_k`
/// per row (`e^y` is the softmax).
///
/// # Panics
/// If `y` and `d_y` differ in shape.
pub fn log_softmax_vjp<S1, S2, T, D>(y: &ArrayBase<S1, D>, d_y: &ArrayBase<S2, D>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("log_softmax_vjp", "y", y.shape(), "d_y", d_y.shape());
    let d = d_y.as_standard_layout();
    let d = d.as_slice().unwrap();
    let c = y.shape().last().copied().unwrap_or(1).max(1);
    let mut r = 0;
    rows(y, |yi, out| {
        let di = &d[r * c..(r + 1) * c];
        r += 1;
        let s: T = di.iter().copied().sum();
        for ((o, &a), &b) in out.iter_mut().zip(yi).zip(di) {
            *o = b - a.exp() * s;
        }
    })
}

/// Tangent of `y = log_softmax(x)` along `t` (forward mode): `t_j − Σ_k p_k t_k` per row
/// along the last axis, `p = exp(y)`. (The Jacobian `I − 1pᵀ` is not symmetric: this is
/// its product with `t`, where [`log_softmax_vjp`] is its transpose's.)
///
/// # Panics
/// If `y` and `t` differ in shape (the message names both).
pub fn log_softmax_jvp<S1, S2, T, D>(y: &ArrayBase<S1, D>, t: &ArrayBase<S2, D>) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape("log_softmax_jvp", "y", y.shape(), "t", t.shape());
    let tt = t.as_standard_layout();
    let tt = tt.as_slice().unwrap();
    let c = y.shape().last().copied().unwrap_or(1).max(1);
    let mut r = 0;
    rows(y, |yi, out| {
        let ti = &tt[r * c..(r + 1) * c];
        r += 1;
        let s: T = yi.iter().zip(ti).map(|(&a, &b)| a.exp() * b).sum();
        for (o, &b) in out.iter_mut().zip(ti) {
            *o = b - s;
        }
    })
}
