use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let mut v = x;
    loop {
        v = v * 0.5;
        if v < 0.1 {
            break;
        }
    }
    v
}

fn main() {}
