use backprop::custom_vjp;

#[custom_vjp]
fn f(x: f64) -> f64 {
    x * x
}

fn main() {}
