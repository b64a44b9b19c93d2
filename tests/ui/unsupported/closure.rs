use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let sq = |v: f64| v * x;
    sq(2.0)
}

fn main() {}
