//! `#[grad]` on an `impl` (issue 14): `&self` methods (`model.loss_grad(..)`, the
//! gradient's `self_` a value of the struct), associated functions
//! (`Model::loss_grad(&m, ..)`), calls between the impl's `#[grad]` functions
//! (`self.hidden(x)`, `Self::penalty(..)`), generic impls, and methods returning arrays
//! (`model.layer_vjp(.., d_out)`).
#![allow(clippy::needless_range_loop)]

use backprop::ops::{XentOptions, softmax_cross_entropy};
use backprop::{Differentiable, Pullback, grad, gradcheck};
use ndarray::{Array1, Array2, array};

/// `y ≈ a·x + b`, the smallest method there is.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Line {
    a: f64,
    b: f64,
}

#[grad]
impl Line {
    /// Squared error of the prediction at `x` against `y`.
    #[grad]
    fn loss(&self, x: f64, y: f64) -> f64 {
        let r = self.a * x + self.b - y;
        r * r
    }

    /// Only the line's parameters are differentiated.
    #[grad(self)]
    fn loss_of_params(&self, x: f64, y: f64) -> f64 {
        self.loss(x, y)
    }

    /// An associated function calling the method on its `&Self` argument, both ways.
    #[grad(line)]
    fn two_points(line: &Self, x: f64, y: f64) -> f64 {
        line.loss(x, y) + Self::loss(line, y, x)
    }
}

#[test]
fn a_method_has_a_jvp_with_a_tangent_of_the_self_type() {
    let line = Line { a: 3.0, b: 0.5 };
    // r = 5.5; dr = x·t_a + t_b + a·t_x − t_y; d(r²) = 2r·dr.
    let t = Line { a: 1.0, b: -2.0 };
    let (value, tangent) = line.loss_jvp(2.0, 1.0, &t, 0.5, 0.25);
    assert_eq!(value, 30.25);
    assert_eq!(tangent, 2.0 * 5.5 * (2.0 * 1.0 - 2.0 + 3.0 * 0.5 - 0.25));
    // Only `self` differentiated: one tangent; an associated function through the type.
    let (_, tangent) = line.loss_of_params_jvp(2.0, 1.0, &t);
    assert_eq!(tangent, 2.0 * 5.5 * (2.0 * 1.0 - 2.0));
    // At (2, 1) and (1, 2) along (1, 0.5): r = 5.5, dr = 2.5; r = 1.5, dr = 1.5.
    let t = Line { a: 1.0, b: 0.5 };
    let (_, tangent) = Line::two_points_jvp(&line, 2.0, 1.0, &t);
    assert_eq!(tangent, 2.0 * 5.5 * 2.5 + 2.0 * 1.5 * 1.5);
}

#[test]
fn a_method_has_the_hand_computed_gradient() {
    let line = Line { a: 3.0, b: 0.5 };
    // r = 3·2 + 0.5 − 1 = 5.5; ∂(r²)/∂a = 2r·x, ∂/∂b = 2r, ∂/∂x = 2r·a, ∂/∂y = −2r.
    let (value, g) = line.loss_grad(2.0, 1.0);
    assert_eq!(value, 30.25);
    assert_eq!(value, line.loss(2.0, 1.0));
    assert_eq!(g.self_, Line { a: 22.0, b: 11.0 });
    assert_eq!((g.x, g.y), (33.0, -11.0));
    // Through the forward pass and its tape, with another output cotangent.
    let (value, tape) = line.loss_forward(2.0, 1.0);
    assert_eq!(value, 30.25);
    let g = Line::loss_backward(tape, 0.5);
    assert_eq!(g.self_, Line { a: 11.0, b: 5.5 });
    // A method calling another `#[grad]` method of the same impl.
    let (value, g) = line.loss_of_params_grad(2.0, 1.0);
    assert_eq!(value, 30.25);
    assert_eq!(g.self_, Line { a: 22.0, b: 11.0 });
    // At (1, 2): r = 1.5, so 2.25 more, and (2r·x, 2r) = (3, 3) more.
    let (value, g) = Line::two_points_grad(&line, 2.0, 1.0);
    assert_eq!(value, 32.5);
    assert_eq!(g.line, Line { a: 25.0, b: 14.0 });
}

/// A two-layer network whose loss calls its hidden layer, a method returning an array.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Mlp {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array2<f64>,
    b2: Array1<f64>,
}

#[grad]
impl Mlp {
    /// `tanh(x·w1 + b1)`.
    #[grad]
    fn hidden(&self, x: &Array2<f64>) -> Array2<f64> {
        (x.dot(&self.w1) + &self.b1).tanh()
    }

    /// An L2 penalty on a matrix: an associated function of the same impl.
    #[grad]
    fn penalty(w: &Array2<f64>) -> f64 {
        (w * w).sum()
    }

    /// Cross-entropy of the labels, plus a small penalty on the first layer.
    #[grad(self)]
    fn loss(&self, x: &Array2<f64>, labels: &[usize]) -> f64 {
        let h = self.hidden(x);
        let logits = h.dot(&self.w2) + &self.b2;
        let l2 = Self::penalty(&self.w1);
        softmax_cross_entropy(&logits, labels, XentOptions::default()) + 0.01 * l2
    }
}

fn sample_mlp() -> Mlp {
    Mlp {
        w1: Array2::from_shape_fn((4, 6), |(i, j)| ((i * 6 + j) as f64 * 0.71).cos() * 0.5),
        b1: Array1::from_shape_fn(6, |j| 0.05 * j as f64 - 0.1),
        w2: Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j) as f64 * 1.3).sin() * 0.5),
        b2: array![0.1, 0.0, -0.1],
    }
}

#[test]
fn a_method_calling_another_passes_gradcheck() {
    let m = sample_mlp();
    let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f64 * 0.37).sin());
    let labels = [0, 2, 1, 1, 0];
    let (value, g) = m.loss_grad(&x, &labels);
    assert_eq!(value, m.loss(&x, &labels));
    assert_eq!(g.self_.w1.shape(), &[4, 6]);
    // The free function the method stands for is what `gradcheck!` checks.
    gradcheck!(__Mlp_loss(self_ = &m, x = const &x, labels = const &labels[..])).assert();
}

#[test]
fn an_associated_function_is_called_through_the_type() {
    let w = array![[1.0, -2.0], [0.5, 3.0]];
    let (value, g) = Mlp::penalty_grad(&w);
    assert_eq!(value, 1.0 + 4.0 + 0.25 + 9.0);
    assert_eq!(g.w, &w * 2.0);
}

#[test]
fn a_method_returning_an_array_has_a_vjp() {
    let m = sample_mlp();
    let x = Array2::from_shape_fn((2, 4), |(i, j)| (i as f64 - j as f64) * 0.3);
    let d_out = Array2::from_shape_fn((2, 6), |(i, j)| 1.0 + (i * 6 + j) as f64 * 0.1);
    let (value, g) = m.hidden_vjp(&x, d_out.clone());
    assert_eq!(value, m.hidden(&x));
    // ∂/∂b1 of Σ d_out ⊙ tanh(z) is Σ over the batch of d_out ⊙ (1 − tanh²(z)).
    let want_b1 = (&d_out * &(1.0 - &value * &value)).sum_axis(ndarray::Axis(0));
    for (got, want) in g.self_.b1.iter().zip(want_b1.iter()) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    let want_x = (&d_out * &(1.0 - &value * &value)).dot(&m.w1.t());
    for (got, want) in g.x.iter().zip(want_x.iter()) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    // The tape of the layer, pulled back with the same cotangent.
    let (_, tape) = m.hidden_forward(&x);
    assert!(tape.bytes() > 0);
    let g2 = Mlp::hidden_backward(tape, d_out);
    assert_eq!(g2.self_, g.self_);
}

/// A generic struct of arrays, differentiated at `f32` and `f64`.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Scale<T: backprop::Real> {
    w: Array1<T>,
    b: Array1<T>,
}

#[grad]
impl<T: backprop::Real> Scale<T> {
    /// `Σ tanh(w ⊙ x + b)`.
    #[grad]
    fn energy(&self, x: &Array1<T>) -> T {
        (x * &self.w + &self.b).tanh().sum()
    }
}

#[test]
fn a_generic_impl_at_f32_and_f64() {
    let s = Scale {
        w: array![0.5, -1.0, 2.0],
        b: array![0.1, 0.2, -0.3],
    };
    let x = array![1.0, 0.5, -0.25];
    let (value, g) = s.energy_grad(&x);
    assert_eq!(value, s.energy(&x));
    let z = &x * &s.w + &s.b;
    let dz = z.mapv(|v: f64| 1.0 - v.tanh() * v.tanh());
    for k in 0..3 {
        assert!((g.self_.b[k] - dz[k]).abs() < 1e-12);
        assert!((g.self_.w[k] - dz[k] * x[k]).abs() < 1e-12);
        assert!((g.x[k] - dz[k] * s.w[k]).abs() < 1e-12);
    }
    gradcheck!(__Scale_energy(self_ = &s, x = &x)).assert();
    let s32 = Scale {
        w: s.w.mapv(|v| v as f32),
        b: s.b.mapv(|v| v as f32),
    };
    let x32 = x.mapv(|v| v as f32);
    let (value32, g32) = s32.energy_grad(&x32);
    assert!((value32 as f64 - value).abs() < 1e-5);
    for k in 0..3 {
        assert!((g32.self_.w[k] as f64 - g.self_.w[k]).abs() < 1e-5);
    }
}

#[test]
fn a_method_has_an_hvp_with_a_direction_of_the_self_type() {
    let line = Line { a: 3.0, b: 0.5 };
    // f = r², r = a·x + b − y: H = 2 ∇r ∇rᵀ + 2r ∇²r, with ∇²r = 1 in (a, x) and (x, a).
    let v = Line { a: 1.0, b: -2.0 };
    let (x, y, vx, vy) = (2.0, 1.0, 0.5, 0.25);
    let (value, g, hv) = line.loss_hvp(x, y, &v, vx, vy);
    let r = 3.0 * x + 0.5 - y;
    assert_eq!(value, r * r);
    let (_, g_ref) = line.loss_grad(x, y);
    assert_eq!(
        (g.self_.a, g.self_.b, g.x, g.y),
        (g_ref.self_.a, g_ref.self_.b, g_ref.x, g_ref.y)
    );
    // ∇r = (x, 1, a, −1) over (a, b, x, y); ∇r·v = x·v_a + v_b + a·v_x − v_y.
    let dr = x * v.a + v.b + 3.0 * vx - vy;
    assert_eq!(hv.self_.a, 2.0 * x * dr + 2.0 * r * vx);
    assert_eq!(hv.self_.b, 2.0 * dr);
    assert_eq!(hv.x, 2.0 * 3.0 * dr + 2.0 * r * v.a);
    assert_eq!(hv.y, -2.0 * dr);
}
