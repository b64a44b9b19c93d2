//! A deprecated loss: its companions are deprecated with it, and the expansion's own
//! mention of `f` does not trip the lint.
#![deny(warnings)]
#![allow(deprecated)]

use backprop::grad;

#[grad]
#[deprecated(note = "use g")]
fn f(x: f64) -> f64 {
    x * x
}

fn main() {
    assert_eq!(f_grad(3.0).1.x, 6.0);
}
