use backprop::grad;

// An arm that binds part of the value (`Some(v)`) is not supported yet.
#[grad]
fn f(x: f64, w: Option<f64>) -> f64 {
    match w {
        Some(v) => v * x,
        None => x,
    }
}

fn main() {}
