//! What forward mode's generated code calls (`f_jvp`, and each rule companion's `jvp`):
//! the tangent an argument was given or a zero of its shape, and the pairing
//! `⟨cotangent, tangent⟩` that turns a gradient into a directional derivative.
//!
//! A rule companion's `jvp(args.., tangents)` takes one `Option` per argument: `Some`
//! of the caller's tangent where the caller's value varies, `None` where it is a
//! constant (the callee then uses a zero of the argument's shape). A buffer's tangent
//! is passed as a slice and a struct's by reference, whatever the argument's own type,
//! so a caller needs to know only what kind of value it passes, not the callee's types.

use crate::params::Params;
use num_traits::Float;

/// `⟨g, t⟩` for floats: `g · t`, and 0 for a zero tangent whatever `g` is (the strong
/// zero of the rules: an infinite partial derivative along a direction that does not
/// move its argument contributes nothing, as in the tangent pass).
#[inline(always)]
pub fn dot_scalar<F: Float>(g: F, t: F) -> F {
    if t == F::zero() { F::zero() } else { g * t }
}

/// `⟨g, t⟩ = Σ gᵢ tᵢ` for a buffer's gradient and tangent.
///
/// # Panics
/// If the lengths differ (the message names both).
#[inline]
pub fn dot_buffer<F: Float>(g: &[F], t: &[F]) -> F {
    assert_eq!(
        g.len(),
        t.len(),
        "jvp: the tangent of a buffer has {} elements, its argument {}",
        t.len(),
        g.len()
    );
    lanes_dot(g, t)
}

/// `Σ aᵢ bᵢ` over equal-length slices, in 8 independent partial sums (which the
/// compiler keeps in vector registers; one running sum would wait on each add).
#[inline]
fn lanes_dot<F: Float>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = acc[k] + x[k] * y[k];
        }
    }
    let mut sum = F::zero();
    for (x, y) in ra.iter().zip(rb) {
        sum = sum + *x * *y;
    }
    let sum = acc.iter().fold(sum, |s, &v| s + v);
    if sum.is_nan() {
        // Again with strong zeros: a zero tangent skips its (infinite or NaN) partial.
        return a
            .iter()
            .zip(b)
            .fold(F::zero(), |s, (&x, &y)| s + dot_scalar(x, y));
    }
    sum
}

/// `⟨g, t⟩` over every parameter of a struct (or list of structs), buffer by buffer in
/// the order [`Params::visit`] gives them.
///
/// # Panics
/// If the tangent's buffers do not have the gradient's names and shapes.
pub fn dot_params<F: Float, G: Params<F> + ?Sized, T: Params<F> + ?Sized>(g: &G, t: &T) -> F {
    let (gs, ts) = (g.buffers(), t.buffers());
    assert_eq!(
        gs.len(),
        ts.len(),
        "jvp: the tangent struct has {} parameter buffers, the argument {}",
        ts.len(),
        gs.len()
    );
    let mut sum = F::zero();
    for (a, b) in gs.iter().zip(&ts) {
        assert_eq!(
            a.shape, b.shape,
            "jvp: the tangent's `{}` has shape {:?}, the argument's {:?}",
            b.name, b.shape, a.shape
        );
        sum = sum + dot_buffer(a.values, b.values);
    }
    sum
}

/// `⟨g, t⟩ = Σ gᵢ tᵢ` for an array argument's gradient and tangent.
///
/// # Panics
/// If the shapes differ (the message names both).
pub fn dot_array<F, S, D>(g: &ndarray::Array<F, D>, t: &ndarray::ArrayBase<S, D>) -> F
where
    F: Float,
    S: ndarray::Data<Elem = F>,
    D: ndarray::Dimension,
{
    assert_eq!(
        g.shape(),
        t.shape(),
        "jvp: the tangent of an array has shape {:?}, its argument {:?}",
        t.shape(),
        g.shape()
    );
    match (g.as_slice_memory_order(), t.as_slice_memory_order()) {
        (Some(a), Some(b)) if g.strides() == t.strides() => lanes_dot(a, b),
        _ => g
            .iter()
            .zip(t.iter())
            .fold(F::zero(), |acc, (&a, &b)| acc + dot_scalar(a, b)),
    }
}

/// The zero tangent of a float constant: 0 of `x`'s type.
#[inline(always)]
pub fn zero_of<F: num_traits::Zero>(_: &F) -> F {
    F::zero()
}

/// The zero tangent of a constant buffer that a write makes vary: zeros of its length.
#[inline]
pub fn zeros_of<F: Float>(x: &[F]) -> Vec<F> {
    vec![F::zero(); x.len()]
}

/// The tangent of a float argument: the one given, or 0.
#[inline(always)]
pub fn scalar_or_zero<F: Float>(t: Option<F>) -> F {
    t.unwrap_or_else(F::zero)
}

/// The tangent of a buffer argument of `n` elements: the one given, or zeros kept in
/// `zeros` (which the caller declares, so the slice outlives this call).
///
/// # Panics
/// If a given tangent does not have `n` elements.
#[inline]
pub fn buffer_or_zero<'a, F: Float>(
    t: Option<&'a [F]>,
    n: usize,
    zeros: &'a mut Vec<F>,
    name: &str,
) -> &'a [F] {
    match t {
        Some(t) => {
            assert_eq!(
                t.len(),
                n,
                "jvp: the tangent of the buffer `{name}` has {} elements, its argument {}",
                t.len(),
                n
            );
            t
        }
        None => {
            zeros.clear();
            zeros.resize(n, F::zero());
            &zeros[..]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// The 8-lane pairing equals the running sum (to rounding) at every tail length, and
    /// arrays pair element by element whatever their layout.
    #[test]
    fn pairings_match_the_plain_sums() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot_buffer(&a, &b) - plain).abs() < 1e-12, "n = {n}");
        }
        let g = Array2::from_shape_fn((3, 5), |(i, j)| (i * 5 + j) as f64);
        let t = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 * 0.5);
        let t_view = t.t();
        let plain: f64 = g.iter().zip(t_view.iter()).map(|(x, y)| x * y).sum();
        assert_eq!(dot_array(&g, &t_view), plain);
        assert_eq!(
            dot_array(&g, &g.view()),
            g.iter().map(|x| x * x).sum::<f64>()
        );
    }

    #[test]
    #[should_panic(expected = "the tangent of an array has shape [3, 5], its argument [5, 3]")]
    fn a_tangent_of_another_shape_is_named() {
        let _ = dot_array(&Array2::<f64>::zeros((5, 3)), &Array2::<f64>::zeros((3, 5)));
    }
}

/// The tangent a caller's tangent program passes for an argument it holds as a
/// constant: zero, of whatever type the callee's parameter has.
#[derive(Clone, Copy, Debug)]
pub struct NoTangent;

/// A float argument's tangent slot in a companion's `tangent_forward`: the caller's
/// tangent, or [`NoTangent`] for a constant.
pub trait ScalarSlot<T> {
    fn tangent(self) -> T;
}

impl<T: Float> ScalarSlot<T> for T {
    #[inline(always)]
    fn tangent(self) -> T {
        self
    }
}

impl<T: Float> ScalarSlot<T> for NoTangent {
    #[inline(always)]
    fn tangent(self) -> T {
        T::zero()
    }
}

/// The tangent program of a one-argument function at a point where `f' = first` and
/// `f'' = second`: `t_y = f'·t` and its tape, `dd ↦ (f''·t·dd, f'·dd)` (strong zeros:
/// a zero tangent or cotangent contributes nothing, even against an infinite
/// derivative).
#[inline(always)]
#[allow(clippy::type_complexity)]
pub fn tangent_of_unary<T: Float>(
    first: T,
    second: T,
    t: T,
) -> (T, crate::Tape<impl FnOnce(T) -> (T, T)>) {
    let mul = crate::rules::scalar::strong_mul;
    let tape = crate::Tape::new(move |dd: T| (mul(mul(dd, t), second), mul(dd, first)));
    (mul(t, first), tape)
}

/// `f_hvp`'s check of a buffer's direction: `direction` (named `v`) must have the
/// length of its argument (named `x`).
///
/// # Panics
/// If the lengths differ (the message names both).
#[track_caller]
pub fn check_direction_len(v: &str, x: &str, direction: usize, argument: usize) {
    assert!(
        direction == argument,
        "hvp: the direction `{v}` has {direction} elements, its argument `{x}` {argument}"
    );
}

/// `f_hvp`'s check of a struct's direction (or a slice of them): `mismatch` is where
/// its buffers, arrays or lists differ from its argument's, from the reverse pass's own
/// checker ([`zero_like`](crate::private::zero_like)'s third value).
///
/// # Panics
/// If there is one (the message names the field).
#[track_caller]
pub fn direction_mismatch(v: &str, x: &str, mismatch: Option<String>) {
    if let Some(e) = mismatch {
        panic!(
            "hvp: the direction `{v}` does not have the shape of its argument `{x}`: the direction's {e}"
        );
    }
}
