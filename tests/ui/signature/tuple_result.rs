use backprop::grad;

#[grad]
fn f(x: f64) -> (f64, f64) {
    (x, x)
}

fn main() {
    // The stubs keep call sites compiling: only the error above is reported.
    let (_, g) = f_grad(1.0);
    let _ = g.x;
}
