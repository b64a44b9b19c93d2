use backprop::{Differentiable, grad};
use ndarray::Array2;

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Layer {
    w: Array2<f64>,
}

// A struct argument's field is the caller's data: the write must go to a local copy.
#[grad(p)]
fn zeroed(mut p: Layer) -> f64 {
    p.w[[0, 0]] = 0.0;
    p.w.sum()
}

fn main() {}
