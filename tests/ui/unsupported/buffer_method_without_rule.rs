use backprop::grad;

// A buffer method with no rule is an error when the buffer is active, never a silent zero.
#[grad]
fn f(x: &[f64]) -> f64 {
    let m = x.iter().max_by(|a, b| a.total_cmp(b)).unwrap();
    let s: f64 = x.iter().skip(1).sum();
    m + s
}

fn main() {}
