use backprop::grad;

/// `k` is a constant of `scaled`: no gradient flows to it.
#[grad(x)]
fn scaled(x: f64, k: f64) -> f64 {
    x * k
}

#[grad]
fn f(x: f64, y: f64) -> f64 {
    let u = x.sin();
    let v = scaled(x, y);
    u + v
}

fn main() {
    let _ = f_grad(1.0, 2.0);
}
