use backprop::grad;
use ndarray::{Array1, array};

// A refused body with a generic array argument: one error, none at the caller's `g.x`
// (the stub gradient keeps the array field, as an accepted function's would).
#[grad]
fn f<T: backprop::Real>(x: &Array1<T>) -> T {
    x.mapv(|v| v.to_degrees()).sum()
}

fn main() {
    let (_, g) = f_grad(&array![1.0_f64, 2.0]);
    let _: f64 = g.x[0];
    let (_, g32) = f_grad(&array![1.0_f32]);
    let _: &Array1<f32> = &g32.x;
}
