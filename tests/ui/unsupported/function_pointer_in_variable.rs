use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let act = backprop::sigmoid::<f64>;
    act(x)
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
