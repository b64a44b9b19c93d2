use backprop::grad;
use ndarray::Array2;

#[grad(q)]
fn filled(mut q: Array2<f64>, c: f64) -> f64 {
    q.fill(c);
    q.sum()
}

fn main() {}
