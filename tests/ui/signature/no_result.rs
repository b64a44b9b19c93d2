use backprop::grad;

#[grad]
fn f(x: f64) {
    let _ = x * x;
}

fn main() {}
