use backprop::grad;

// A refused body with a buffer argument: one error, none at the caller's `g.x`.
#[grad]
fn f(x: &[f64], n: usize) -> f64 {
    let mut s = 0.0;
    for w in x.windows(n) {
        s += w[0];
    }
    s
}

fn main() {
    let (_, g) = f_grad(&[1.0, 2.0], 2);
    let _: f64 = g.x[0];
}
