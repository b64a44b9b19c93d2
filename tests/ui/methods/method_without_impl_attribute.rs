use backprop::{Differentiable, grad};

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: f64,
}

impl Model {
    #[grad]
    fn loss(&self, x: f64) -> f64 {
        self.w * x
    }
}

fn main() {
    let m = Model { w: 1.0 };
    let _ = m.loss(2.0);
    // No second error at the call sites.
    let (v, g) = m.loss_grad(2.0);
    let _ = v + g.self_.w + g.x;
    let (_, tape) = m.loss_forward(2.0);
    let _ = Model::loss_backward(tape, 1.0).self_;
}
