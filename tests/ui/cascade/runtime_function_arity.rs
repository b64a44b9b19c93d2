use backprop::grad;

#[grad]
fn f(x: f64, y: f64) -> f64 {
    backprop::leaky_relu(x * 2.0) * y
}

fn main() {
    println!("{:?}", f_grad(0.3, 0.7).1.x);
}
