use backprop::grad;

fn apply(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    f(x)
}

#[grad]
fn f(x: f64) -> f64 {
    let act = |z: f64| z.tanh();
    apply(act, x)
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
