//! The main job's MLP (`src/mlp.rs`) at the shape the forward-mode and second-order
//! benches time: 784-256-128-10, f32, batch 128, deterministic irregular values.

use ndarray::{Array1, Array2};

/// The weights (or a direction of their shapes): `w1, b1, w2, b2, w3, b3`.
pub type Weights = (
    Array2<f32>,
    Array1<f32>,
    Array2<f32>,
    Array1<f32>,
    Array2<f32>,
    Array1<f32>,
);

fn filled(r: usize, c: usize, s: f32) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        0.05 * (((i * c + j) as f32 + s) * 0.37).sin()
    })
}

fn bias(n: usize, s: f32) -> Array1<f32> {
    Array1::from_shape_fn(n, |i| 0.01 * ((i as f32 + s) * 0.7).cos())
}

/// Inputs (128×784), labels, the weights, and a second set of the weights' shapes (a
/// tangent or direction).
pub fn mlp_case() -> (Array2<f32>, Vec<usize>, Weights, Weights) {
    let x = filled(128, 784, 0.0);
    let labels: Vec<usize> = (0..128).map(|i| i % 10).collect();
    let weights = (
        filled(784, 256, 1.0),
        bias(256, 1.0),
        filled(256, 128, 2.0),
        bias(128, 2.0),
        filled(128, 10, 3.0),
        bias(10, 3.0),
    );
    let direction = (
        filled(784, 256, 4.0),
        bias(256, 4.0),
        filled(256, 128, 5.0),
        bias(128, 5.0),
        filled(128, 10, 6.0),
        bias(10, 6.0),
    );
    (x, labels, weights, direction)
}
