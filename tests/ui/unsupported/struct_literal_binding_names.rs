use backprop::grad;
use backprop::ops::{XentOptions, cross_entropy};
use ndarray::{Array2, Array3};

/// A field that binds a name of its own (`Some(eps) => eps`) after the function's `eps`
/// was shadowed: refused, since the field would read the wrong `eps`.
#[grad(x)]
fn shadowed(x: &Array3<f64>, y: &Array2<usize>, smoothing: Option<f64>, eps: f64) -> f64 {
    let eps = eps * 0.5;
    let opts = XentOptions {
        label_smoothing: match smoothing {
            Some(eps) => eps,
            None => 0.0,
        },
        ..Default::default()
    };
    cross_entropy(x, y, opts) + eps
}

fn main() {
    let _ = shadowed_grad;
}
