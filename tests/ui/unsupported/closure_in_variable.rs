use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let scale = |v: f64| v * 2.0;
    scale(x)
}

fn main() {}
