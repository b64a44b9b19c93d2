use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let y = x * x;
    return y;
    #[allow(unreachable_code)]
    y
}

fn main() {}
