//! A `#[grad] impl` is clean under `#![deny(warnings)]`, with missing docs denied too:
//! the hidden free functions, the gradient struct and the forwarding methods.
#![deny(warnings, missing_docs)]
//! A crate with a differentiated method.

use backprop::{Differentiable, grad};
use ndarray::Array1;

/// A private struct of parameters (its public method must not leak it).
#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: Array1<f64>,
    b: f64,
}

/// A public one, with a generic impl.
#[derive(Clone, Debug, Differentiable)]
pub struct Scale<T: backprop::Real> {
    /// Weights.
    pub w: Array1<T>,
}

#[grad]
impl Model {
    /// `Σ w ⊙ x + b`, through a helper.
    #[grad(self)]
    pub fn score(&self, x: &Array1<f64>) -> f64 {
        self.dot(x) + self.b
    }

    /// The dot product.
    #[grad]
    fn dot(&self, x: &Array1<f64>) -> f64 {
        (x * &self.w).sum()
    }
}

#[grad]
impl<T: backprop::Real> Scale<T> {
    /// `Σ tanh(w ⊙ x)`.
    #[grad]
    pub fn energy(&self, x: &Array1<T>) -> T {
        (x * &self.w).tanh().sum()
    }
}

fn main() {
    let m = Model {
        w: Array1::from(vec![1.0, 2.0]),
        b: 0.5,
    };
    let x = Array1::from(vec![3.0, 4.0]);
    let (v, g) = m.score_grad(&x);
    assert_eq!(v, 11.5);
    assert_eq!(g.self_.b, 1.0);
    let s = Scale { w: Array1::from(vec![0.5_f32]) };
    let (_, g) = s.energy_grad(&Array1::from(vec![1.0_f32]));
    assert!(g.self_.w[0] > 0.0);
}
