use backprop::grad;
use ndarray::{Array2, LinalgScalar, ScalarOperand};
use num_traits::Float;

// `backprop::ops` run on the kernels' floats: ndarray's bounds are not enough.
#[grad(w)]
fn layer<T: Float + LinalgScalar + ScalarOperand>(w: &Array2<T>, x: &Array2<T>) -> Array2<T> {
    backprop::ops::relu(&x.dot(w))
}

fn main() {}
