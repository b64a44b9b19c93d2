// A hyperparameter, a flag and an optional bias in a struct of parameters: one error on
// each field's type, saying where such values go, and no trait errors besides.
use backprop::{Differentiable, grad};
use ndarray::{Array1, Array2};

#[derive(Clone, Debug, Differentiable)]
pub struct Attention {
    w_qkv: Array2<f64>,
    n_head: usize,
    causal: bool,
    bias: Option<Array1<f64>>,
}

#[grad(p)]
fn loss(p: &Attention, x: &Array2<f64>) -> f64 {
    x.dot(&p.w_qkv).sum()
}

fn main() {}
