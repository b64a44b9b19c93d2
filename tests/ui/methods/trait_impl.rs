use backprop::{Differentiable, grad};

#[derive(Clone, Debug, Differentiable)]
struct Model {
    w: f64,
}

trait Loss {
    fn loss(&self, x: f64) -> f64;
}

#[grad]
impl Loss for Model {
    #[grad]
    fn loss(&self, x: f64) -> f64 {
        self.w * x
    }
}

fn main() {
    let _ = Model { w: 1.0 }.loss(2.0);
}
