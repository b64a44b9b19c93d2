use backprop::grad;

#[grad(x)]
fn f(x: f64, act: impl Fn(f64) -> f64) -> f64 {
    act(x) * x
}

fn main() {
    let _ = f_grad(1.0, |v| v.tanh());
}
