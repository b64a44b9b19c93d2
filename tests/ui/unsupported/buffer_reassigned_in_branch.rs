use backprop::grad;

// Replacing a whole buffer inside a branch is not supported yet.
#[grad]
fn f(x: &[f64], c: bool) -> f64 {
    let mut h = x.to_vec();
    if c {
        h = vec![0.0; 2];
    }
    h[0]
}

fn main() {}
