use backprop::grad;

// `fold` takes a two-argument closure (`|acc, v| ..`) or a function path (`f64::max`).
#[grad]
fn f(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |a| a)
}

fn main() {}
