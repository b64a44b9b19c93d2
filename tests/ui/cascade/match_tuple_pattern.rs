use backprop::grad;

#[grad]
fn f(x: f64, a: usize, b: usize) -> f64 {
    match (a, b) {
        (0, 0) => x,
        _ => x * x,
    }
}

fn main() {
    let (_, g) = f_grad(1.0, 0, 1);
    let _: f64 = g.x;
}
