/// L = (σ(w·x + b) − y)², differentiated in w and b only.
#[grad(w, b)]
fn sigmoid_mse(w: f64, x: f64, b: f64, y: f64) -> f64 {
    let p = backprop::sigmoid(w * x + b);
    let e = p - y;
    e * e
}
