use backprop::grad;

fn helper(x: &[f64]) -> f64 {
    x[0] * 2.0
}

#[grad]
fn f(x: &[f64]) -> f64 {
    helper(x) * x[1]
}

fn main() {
    let (_, g) = f_grad(&[1.0, 2.0]);
    let _: Vec<f64> = g.x;
}
