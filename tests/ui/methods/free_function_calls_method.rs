use backprop::{Differentiable, grad};

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: f64,
}

#[grad]
impl Model {
    #[grad]
    fn loss(&self, x: f64) -> f64 {
        self.w * x
    }
}

#[grad]
fn total(m: &Model, x: f64) -> f64 {
    m.loss(x) + x
}

fn main() {
    let (_, g) = total_grad(&Model { w: 1.0 }, 2.0);
    let _ = g.m.w;
}
