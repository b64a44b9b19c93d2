use backprop::grad;
use ndarray::{Array2, LinalgScalar, ScalarOperand};
use num_traits::Float;

// The function itself compiles with ndarray's bounds; its companions need `T` to be one
// of the kernels' floats, so a generic caller must say so.
#[grad(w)]
fn loss<T: Float + LinalgScalar + ScalarOperand>(w: &Array2<T>, x: &Array2<T>) -> T {
    x.dot(w).sum()
}

fn caller<T: Float + LinalgScalar + ScalarOperand>(w: &Array2<T>, x: &Array2<T>) -> T {
    loss_grad(w, x).0
}

fn main() {
    let _ = caller::<f64>;
}
