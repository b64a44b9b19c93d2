use backprop::grad;

#[grad(a = 1.0)]
fn f(a: f64) -> f64 {
    a * a
}

fn main() {}
