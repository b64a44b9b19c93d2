use backprop::grad;
use ndarray::Array2;

#[grad]
fn f(x: &Array2<f64>) -> f64 {
    x.powf(1.5).sum()
}

fn main() {}
