use backprop::grad;
use ndarray::Array2;

// An element of an expression's result: the array must be named first.
#[grad(x)]
fn corner(x: &Array2<f64>) -> f64 {
    x.t()[[1, 0]]
}

fn main() {}
