use backprop::grad;

// A buffer of buffers is not differentiated; left silently as data it would lose its
// gradient, so it is an error unless the active arguments are named.
#[grad]
fn f(w: f64, rows: &[Vec<f64>]) -> f64 {
    w * rows[0][0]
}

fn main() {}
