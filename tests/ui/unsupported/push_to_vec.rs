use backprop::grad;

// `push` grows a buffer made by `Vec::new()`; one made with a length (`vec![0.0; n]`,
// `x.to_vec()`) keeps it, so `#[grad]` refuses to push onto it.
#[grad]
fn f(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    for v in x {
        h.push(v * v);
    }
    h[0]
}

fn main() {}
