use backprop::grad;
use ndarray::Array2;

#[grad(q)]
fn scaled(q: &Array2<f64>) -> f64 {
    let mut s = q.to_owned();
    s[[0, 1]] *= 2.0;
    s.sum()
}

fn main() {}
