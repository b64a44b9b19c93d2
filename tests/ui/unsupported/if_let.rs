use backprop::grad;

// `if let Some(s) = option` is supported; other patterns are not.
#[grad]
fn f(x: f64, scale: Result<f64, ()>) -> f64 {
    if let Ok(s) = scale { x * s } else { x }
}

fn main() {}
