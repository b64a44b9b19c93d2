use backprop::grad;

// Sub-slices are half-open; `a..=b` is refused with the rewrite to use.
#[grad]
fn f(x: &[f64]) -> f64 {
    let s = &x[0..=1];
    s[0] + s[1]
}

fn main() {}
