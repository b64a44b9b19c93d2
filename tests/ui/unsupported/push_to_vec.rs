use backprop::grad;

// `push` changes the `Vec` it is called on, which `#[grad]` cannot follow.
#[grad]
fn f(x: &[f64]) -> f64 {
    let mut h = Vec::new();
    for v in x {
        h.push(v * v);
    }
    h[0]
}

fn main() {}
