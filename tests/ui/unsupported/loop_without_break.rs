use backprop::grad;

// A `loop` that never breaks never returns its value.
#[grad]
fn f(x: f64) -> f64 {
    let mut v = x;
    loop {
        v = v * 0.5;
    }
    v
}

fn main() {}
