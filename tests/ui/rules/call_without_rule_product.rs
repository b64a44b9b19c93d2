use backprop::grad;

fn helper(v: f64) -> f64 {
    v * v
}

// The call's result is multiplied, so the reverse pass needs it saved: still one error.
#[grad]
fn g(x: f64) -> f64 {
    helper(x) * x
}

fn main() {
    let _ = g_grad(1.0);
}
