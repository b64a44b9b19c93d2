use backprop::grad;

#[grad(z)]
fn f(a: f64, b: f64) -> f64 {
    a * b
}

fn main() {
    let (_, g) = f_grad(1.0, 2.0);
    println!("{}", g.a);
}
