// `break` with an array value out of a `loop`: one error on the value, with the form to
// write instead, and none at the call site.
use backprop::grad;
use ndarray::Array2;

#[grad(w)]
fn settle(w: &Array2<f64>) -> f64 {
    let mut h = w.clone();
    let out = loop {
        h = h.tanh();
        if h.sum() < 1.0 {
            break h.clone();
        }
    };
    out.sum()
}

fn main() {
    let w = Array2::<f64>::ones((2, 2));
    let (_, g) = settle_grad(&w);
    let _: Array2<f64> = g.w;
}
