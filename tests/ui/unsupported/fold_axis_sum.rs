use backprop::grad;
use ndarray::{Array2, Axis};

#[grad(x)]
fn f(x: &Array2<f64>) -> f64 {
    let s = x.fold_axis(Axis(1), 0.0, |&a, &b| a + b);
    s.sum()
}

fn main() {}
