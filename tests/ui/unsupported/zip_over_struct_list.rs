use backprop::{Differentiable, grad};
use ndarray::{Array1, Array2};

#[derive(Clone, Differentiable)]
struct Lin {
    w: Array2<f64>,
    b: Array1<f64>,
}

#[derive(Clone, Differentiable)]
struct Net {
    layers: Vec<Lin>,
}

#[grad(p)]
fn loss(p: &Net, xs: &[Array2<f64>]) -> f64 {
    let mut s = 0.0;
    for (l, x) in p.layers.iter().zip(xs) {
        s += (x.dot(&l.w) + &l.b).sum();
    }
    s
}

fn main() {
    let _ = loss_grad;
}
