use backprop::grad;

struct P {
    v: f64,
}

#[grad]
fn f(x: f64) -> f64 {
    let mut p = P { v: 0.0 };
    p.v = x;
    x
}

fn main() {}
