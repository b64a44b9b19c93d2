use backprop::grad;

// `break` inside an expression (here the value of an `if`) is not rewritten.
#[grad]
fn f(x: f64) -> f64 {
    let mut v = x;
    loop {
        let step = if v > 1.0 { 0.5 } else { break };
        v = v * step;
    }
    v
}

fn main() {}
