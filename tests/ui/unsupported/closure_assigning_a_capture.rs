use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let mut total = 0.0;
    let mut add = |z: f64| total += z * z;
    add(x);
    add(2.0 * x);
    total
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
