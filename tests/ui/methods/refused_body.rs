use backprop::{Differentiable, grad};

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: f64,
}

#[grad]
impl Model {
    #[grad]
    fn loss(&self, x: f64) -> f64 {
        self.w % x
    }
}

fn main() {
    let m = Model { w: 1.0 };
    // No second error at the call site.
    let (v, g) = m.loss_grad(2.0);
    let _ = v + g.self_.w + g.x;
}
