use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let t = (x, 2.0 * x);
    t.0 * t.1
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
