use backprop::grad;
use ndarray::{Array1, Zip};

#[grad]
fn loss(x: &Array1<f64>, y: &Array1<f64>) -> f64 {
    let mut out = Array1::zeros(x.len());
    Zip::from(&mut out).and(x).and(y).for_each(|o, &a, &b| *o = a * b);
    out.sum()
}

fn main() {
    let _ = loss_grad;
}
