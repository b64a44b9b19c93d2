//! Generated code is clean under `#![deny(warnings)]`, with missing docs denied too.
#![deny(warnings, missing_docs)]
//! A crate whose public loss is differentiated.

use backprop::{grad, sigmoid};
use num_traits::Float;

/// A public generic loss with a constant argument and a nested `const`.
#[grad(w)]
pub fn loss<T: Float>(w: T, x: T, n: i32) -> T {
    const HALF: f64 = 0.5;
    let h = T::from(HALF).unwrap();
    let z = sigmoid(w * x).powi(n);
    h * z * z
}

fn main() {
    let (l, g) = loss_grad(0.3_f64, 2.0, 2);
    assert_eq!(l, loss(0.3, 2.0, 2));
    assert!(g.w.is_finite());
    let (_, g32) = loss_grad(0.3_f32, 2.0, 2);
    assert!(g32.w.is_finite());
}
