use backprop::grad;

// Element writes go to buffers the function creates; an argument is read-only.
#[grad]
fn f(mut x: Vec<f64>) -> f64 {
    x[0] = 2.0 * x[1];
    x[0]
}

fn main() {}
