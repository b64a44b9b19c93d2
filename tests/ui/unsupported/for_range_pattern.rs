use backprop::grad;

// A `for` over a range binds its index to a name or `_`.
#[grad]
fn f(x: f64) -> f64 {
    let mut v = x;
    for (a, b) in 0..3 {
        v = v * 2.0;
    }
    v
}

fn main() {}
