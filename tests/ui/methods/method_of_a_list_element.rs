// `layer.forward(&h)` on the layers of a model, as PyTorch code reads: one error on the
// call, naming the free-function form to write instead.
use backprop::{Differentiable, grad};
use ndarray::Array2;

#[derive(Clone, Debug, Differentiable)]
pub struct Linear {
    w: Array2<f64>,
}

#[derive(Clone, Debug, Differentiable)]
pub struct Model {
    layers: Vec<Linear>,
}

#[grad]
impl Linear {
    #[grad]
    fn forward(&self, x: &Array2<f64>) -> Array2<f64> {
        x.dot(&self.w).tanh()
    }
}

#[grad]
impl Model {
    #[grad(self)]
    fn loss(&self, x: &Array2<f64>) -> f64 {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        h.sum()
    }
}

fn main() {
    let m = Model { layers: vec![] };
    let x = Array2::<f64>::zeros((1, 1));
    let _ = m.loss_grad(&x);
}
