use backprop::grad;

/// `xs` is a constant of `inner`: no gradient flows to it.
#[grad(w)]
fn inner(w: &[f64], xs: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..w.len() {
        s += (w[i] * xs[i]).tanh();
    }
    s
}

/// `xs` depends on `w` here, so it is active where `inner` takes a constant.
#[grad]
fn outer(w: &[f64]) -> f64 {
    let mut xs = vec![0.0; w.len()];
    for i in 0..w.len() {
        xs[i] = w[i] * 2.0;
    }
    inner(w, &xs)
}

fn main() {
    let _ = outer_grad(&[0.3, -0.5]);
}
