use backprop::grad;

struct Model;

impl Model {
    #[grad]
    fn loss(x: f64) -> f64 {
        x * x
    }
}

fn main() {
    let _ = Model::loss(1.0);
    // No second error at the call site.
    let (v, g) = Model::loss_grad(1.0);
    let _ = v + g.x;
}
