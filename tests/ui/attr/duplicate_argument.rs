use backprop::grad;

#[grad(a, a)]
fn f(a: f64, b: f64) -> f64 {
    a * b
}

fn main() {
    let _ = f_grad(1.0, 2.0);
}
