use backprop::{Differentiable, grad};

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: f64,
}

#[grad(x)]
impl Model {
    #[grad]
    fn loss(&self, x: f64) -> f64 {
        self.w * x
    }
}

fn main() {
    let (_, g) = Model { w: 1.0 }.loss_grad(2.0);
    let _ = g.x;
}
