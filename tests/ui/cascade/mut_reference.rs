use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let mut y = x;
    let r = &mut y;
    *r *= 2.0;
    y
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
