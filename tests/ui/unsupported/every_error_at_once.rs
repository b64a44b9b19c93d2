use backprop::grad;

// One compile shows every problem, each on its own span.
#[grad]
fn f(x: f64, y: f64) -> f64 {
    let a = [x, y];
    let b = &x;
    let mut c = x;
    c %= 2.0;
    let d = x.to_degrees();
    a[0] + *b + c + d
}

fn main() {}
