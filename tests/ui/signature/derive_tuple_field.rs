// A tuple in a struct of parameters, and a list of them: one error on each field's type,
// saying to make it a struct of its own.
use backprop::{Differentiable, grad};
use ndarray::{Array1, Array2};

#[derive(Clone, Debug, Differentiable)]
pub struct Block {
    w: Array2<f64>,
    ln: (Array1<f64>, Array1<f64>),
    pairs: Vec<(f64, f64)>,
}

#[grad(b)]
fn loss(x: &Array2<f64>, b: &Block) -> f64 {
    (x.dot(&b.w) * &b.ln.0 + &b.ln.1).sum()
}

fn main() {
    let _ = loss_grad;
}
