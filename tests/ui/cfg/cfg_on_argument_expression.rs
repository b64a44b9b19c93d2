use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let v = [x, #[cfg(any())] x, 2.0];
    v[0] * v[1]
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
