use backprop::grad;

// A guard inside `matches!` is not supported; write it with `&&` after it.
#[grad]
fn f(x: f64, k: usize) -> f64 {
    if matches!(k, 0..=2 if k > 0) { x } else { 2.0 * x }
}

fn main() {}
