use backprop::grad;
use ndarray::{Array2, s};

#[grad]
fn loss(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let mut h = x.dot(w);
    h.slice_mut(s![.., 0]).fill(0.0);
    (&h * &h).sum()
}

fn main() {
    let _ = loss_grad;
}
