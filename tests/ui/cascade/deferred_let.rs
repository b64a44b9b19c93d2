use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let y;
    if x > 0.0 {
        y = x * x;
    } else {
        y = -x;
    }
    y
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
