use backprop::grad;
use ndarray::Array2;

// A refused `mapv` closure with another `mapv` chained on it: one error, on the refused
// closure (this crashed rustc with a stack overflow in the macro before).
#[grad]
fn loss(x: &Array2<f64>) -> f64 {
    x.mapv(|v| v % 2.0).mapv(f64::exp).sum()
}

fn main() {
    let _ = loss_grad;
}
