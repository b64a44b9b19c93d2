use backprop::grad;

fn pair(x: f64) -> (f64, f64) {
    (x, 2.0 * x)
}

// An element of a tuple that carries a derivative has no rule.
#[grad]
fn first(x: f64) -> f64 {
    pair(x).0
}

fn main() {}
