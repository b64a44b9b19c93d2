use backprop::grad;

#[grad]
fn f(x: f64, w: f64) -> f64 {
    let mut acc = 0.0;
    for k in [1.0, 2.0, 3.0] {
        acc += k * x * w;
    }
    acc
}

fn main() {}
