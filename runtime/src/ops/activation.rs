//! Elementwise activations; kernels in [`crate::kernels::activation`].

use super::same_shape;
use crate::kernels::Real;
use crate::kernels::activation::Unary;
use ndarray::{Array, ArrayBase, Data, Dimension};

pub(super) fn apply<S, T, D>(op: Unary<T>, x: &ArrayBase<S, D>) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    let x = x.as_standard_layout();
    let mut y = Array::uninit(x.raw_dim());
    crate::kernels::activation::forward_uninit(
        op,
        x.as_slice().unwrap(),
        y.as_slice_mut().unwrap(),
    );
    // SAFETY: forward_uninit wrote every element (it panics on a length mismatch).
    unsafe { y.assume_init() }
}

pub(super) fn pull<S1, S2, T, D>(
    name: &str,
    op: Unary<T>,
    saved: &ArrayBase<S1, D>,
    d_y: &ArrayBase<S2, D>,
) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    same_shape(name, "saved", saved.shape(), "d_y", d_y.shape());
    let s = saved.as_standard_layout();
    let d = d_y.as_standard_layout();
    let mut d_x = Array::uninit(s.raw_dim());
    crate::kernels::activation::backward_uninit(
        op,
        s.as_slice().unwrap(),
        d.as_slice().unwrap(),
        d_x.as_slice_mut().unwrap(),
    );
    // SAFETY: backward_uninit wrote every element (it panics on a length mismatch).
    unsafe { d_x.assume_init() }
}

macro_rules! unary_op {
    ($(#[$doc:meta])* $f:ident, $vjp:ident, $op:expr, $saved:ident, $formula:literal) => {
        $(#[$doc])*
        ///
        /// Any shape; the result has `x`'s shape in standard (row-major) layout.
        pub fn $f<S, T, D>(x: &ArrayBase<S, D>) -> Array<T, D>
        where
            S: Data<Elem = T>,
            T: Real,
            D: Dimension,
        {
            apply($op, x)
        }

        #[doc = concat!("Pullback of [`", stringify!($f), "`]: `d_x = ", $formula, "`, from the saved `",
            stringify!($saved), "` (the forward's ", stringify!($saved), ").")]
        ///
        /// # Panics
        #[doc = concat!("If `", stringify!($saved), "` and `d_y` differ in shape.")]
        pub fn $vjp<S1, S2, T, D>($saved: &ArrayBase<S1, D>, d_y: &ArrayBase<S2, D>) -> Array<T, D>
        where
            S1: Data<Elem = T>,
            S2: Data<Elem = T>,
            T: Real,
            D: Dimension,
        {
            pull(stringify!($vjp), $op, $saved, d_y)
        }
    };
}

unary_op!(
    /// `y = max(x, 0)`. Kink: `relu′(0) = 0` (minimum-norm subgradient).
    ///
    /// ```
    /// use backprop::ops::{relu, relu_vjp};
    /// let x = ndarray::array![-1.0f32, 0.0, 2.0];
    /// let y = relu(&x);
    /// assert_eq!(y, ndarray::array![0.0, 0.0, 2.0]);
    /// assert_eq!(relu_vjp(&y, &ndarray::array![5.0, 5.0, 5.0]), ndarray::array![0.0, 0.0, 5.0]);
    /// ```
    relu, relu_vjp, Unary::Relu, y, "d_y·1[y > 0]"
);
unary_op!(
    /// GELU, tanh form (Hendrycks & Gimpel 2016): `y = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    ///
    /// ```
    /// let y = backprop::ops::gelu(&ndarray::array![0.0f64, 10.0]);
    /// assert_eq!(y[0], 0.0);
    /// assert!((y[1] - 10.0).abs() < 1e-12);
    /// ```
    gelu, gelu_vjp, Unary::Gelu, x, "d_y·(½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)), t = tanh u"
);
unary_op!(
    /// SiLU / swish (Elfwing et al. 2018): `y = x·σ(x)`.
    ///
    /// ```
    /// let y = backprop::ops::silu(&ndarray::array![0.0f64]);
    /// assert_eq!(y[0], 0.0);
    /// ```
    silu, silu_vjp, Unary::Silu, x, "d_y·σ(x)(1 + x(1 − σ(x)))"
);
unary_op!(
    /// Logistic sigmoid `y = 1/(1 + e⁻ˣ)`; saturates to exactly 0 and 1, never NaN.
    ///
    /// ```
    /// let y = backprop::ops::sigmoid(&ndarray::array![0.0f32, -1000.0, 1000.0]);
    /// assert_eq!(y, ndarray::array![0.5, 0.0, 1.0]);
    /// ```
    sigmoid, sigmoid_vjp, Unary::Sigmoid, y, "d_y·y(1 − y)"
);
unary_op!(
    /// Hyperbolic tangent.
    ///
    /// ```
    /// let y = backprop::ops::tanh(&ndarray::array![0.0f64, 50.0]);
    /// assert_eq!(y, ndarray::array![0.0, 1.0]);
    /// ```
    tanh, tanh_vjp, Unary::Tanh, y, "d_y·(1 − y²)"
);
unary_op!(
    /// Softplus `y = ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^−|x|)` (no overflow).
    ///
    /// ```
    /// let y = backprop::ops::softplus(&ndarray::array![0.0f64, 1000.0]);
    /// assert!((y[0] - std::f64::consts::LN_2).abs() < 1e-15);
    /// assert_eq!(y[1], 1000.0);
    /// ```
    softplus, softplus_vjp, Unary::Softplus, x, "d_y·σ(x)"
);
unary_op!(
    /// `y = eˣ`.
    ///
    /// ```
    /// assert_eq!(backprop::ops::exp(&ndarray::array![0.0f64])[0], 1.0);
    /// ```
    exp, exp_vjp, Unary::Exp, y, "d_y·y (strong zero: d_y = 0 gives 0 even where y = ∞)"
);
unary_op!(
    /// `y = ln x`.
    ///
    /// ```
    /// assert_eq!(backprop::ops::ln(&ndarray::array![1.0f64])[0], 0.0);
    /// ```
    ln, ln_vjp, Unary::Ln, x, "d_y/x (strong zero: d_y = 0 gives 0 at x = 0)"
);
unary_op!(
    /// `y = √x`.
    ///
    /// ```
    /// use backprop::ops::{sqrt, sqrt_vjp};
    /// let y = sqrt(&ndarray::array![0.0f64, 4.0]);
    /// assert_eq!(sqrt_vjp(&y, &ndarray::array![0.0, 1.0]), ndarray::array![0.0, 0.25]);
    /// ```
    sqrt, sqrt_vjp, Unary::Sqrt, y, "d_y/(2y) (strong zero: d_y = 0 gives 0 at y = 0)"
);

/// Leaky ReLU: `y = x` for `x > 0`, `slope·x` otherwise. Kink: `f′(0) = slope`
/// (the minimum-norm subgradient for `0 ≤ slope ≤ 1`).
///
/// ```
/// let y = backprop::ops::leaky_relu(&ndarray::array![-2.0f64, 3.0], 0.1);
/// assert_eq!(y, ndarray::array![-0.2, 3.0]);
/// ```
pub fn leaky_relu<S, T, D>(x: &ArrayBase<S, D>, slope: T) -> Array<T, D>
where
    S: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    apply(Unary::LeakyRelu(slope), x)
}

/// Pullback of [`leaky_relu`]: `d_x = d_y·(1 if x > 0 else slope)`, from the saved `x`.
///
/// # Panics
/// If `x` and `d_y` differ in shape.
pub fn leaky_relu_vjp<S1, S2, T, D>(
    x: &ArrayBase<S1, D>,
    slope: T,
    d_y: &ArrayBase<S2, D>,
) -> Array<T, D>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D: Dimension,
{
    pull("leaky_relu_vjp", Unary::LeakyRelu(slope), x, d_y)
}
