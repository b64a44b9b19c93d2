use backprop::grad;

// `windows` is not one of the iterator forms `#[grad]` knows.
#[grad]
fn f(x: &[f64]) -> f64 {
    let mut acc = 0.0;
    for w in x.windows(2) {
        acc += w[1] - w[0];
    }
    acc
}

fn main() {}
