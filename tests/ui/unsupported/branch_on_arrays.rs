use backprop::grad;
use ndarray::Array1;

#[grad]
fn f(x: &Array1<f64>, flip: bool) -> f64 {
    let y = if flip { x * 2.0 } else { x * 3.0 };
    y.sum()
}

fn main() {}
