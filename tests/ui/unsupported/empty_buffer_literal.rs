use backprop::grad;

// A buffer literal needs an element to take its type and length from.
#[grad]
fn f(x: f64) -> f64 {
    let h: Vec<f64> = vec![];
    x
}

fn main() {}
