use backprop::custom_vjp;

// A data argument (`k: usize`) has no cotangent: the pullback returns
// `backprop::Inactive` in its slot, and any other type is a type error at the attribute.
#[custom_vjp(scale_vjp)]
fn scale(x: f64, k: usize) -> f64 {
    x * k as f64
}

fn scale_vjp(x: f64, k: usize, _y: f64, d: f64) -> (f64, usize) {
    let _ = x;
    (d * k as f64, 0)
}

fn main() {}
