use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    (x % 1.5) * x
}

fn main() {}
