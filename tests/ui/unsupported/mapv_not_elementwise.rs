use backprop::grad;
use ndarray::Array2;

#[grad(x)]
fn g(x: &Array2<f64>) -> f64 {
    x.mapv(|v| v.atan2(1.0)).sum()
}

fn main() {}
