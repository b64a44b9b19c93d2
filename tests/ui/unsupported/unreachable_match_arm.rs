use backprop::grad;

// An arm after a catch-all is unreachable.
#[grad]
fn f(x: f64, k: usize) -> f64 {
    match k {
        _ => x,
        0 => 2.0 * x,
    }
}

fn main() {}
