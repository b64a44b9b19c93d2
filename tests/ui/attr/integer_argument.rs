use backprop::grad;

#[grad(x, n)]
fn f(x: f64, n: i32) -> f64 {
    x.powi(n)
}

fn main() {
    let (_, g) = f_grad(1.0, 2);
    let _ = g.x;
}
