use backprop::grad;

// A method that may write an active buffer and has no rule is an error even though its
// result is unused: never a silently wrong gradient.
#[grad]
fn f(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h.rotate_left(1);
    h[0] * 2.0
}

fn main() {}
