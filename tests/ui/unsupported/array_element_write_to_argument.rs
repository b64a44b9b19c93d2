use backprop::grad;
use ndarray::Array2;

// An argument is the caller's data, which the reverse pass may read: the write must go
// to a local copy.
#[grad(q)]
fn masked(mut q: Array2<f64>) -> f64 {
    q[[0, 1]] = 0.0;
    q.sum()
}

fn main() {}
