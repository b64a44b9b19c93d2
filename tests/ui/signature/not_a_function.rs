use backprop::grad;

#[grad]
struct Params {
    w: f64,
}

fn main() {}
