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
}
