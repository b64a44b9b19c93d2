use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let act = |z: f64| z.tanh();
    act(x) + act(2.0 * x)
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
