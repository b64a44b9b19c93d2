use backprop::grad;

#[grad]
fn inner(x: f64) -> f64 {
    x.sin() * x
}

// `inner_forward` returns a tape, which has no derivative; `inner_grad` is the form
// that nests.
#[grad]
fn outer(x: f64) -> f64 {
    let (value, tape) = inner_forward(x);
    let _ = tape;
    value * x
}

fn main() {
    let (_, g) = outer_grad(1.0);
    let _: f64 = g.x;
}
