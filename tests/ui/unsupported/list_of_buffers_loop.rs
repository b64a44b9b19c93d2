use backprop::{Differentiable, grad};

// A `Vec<Vec<f64>>` field walked row by row: one error on the row's use as a buffer,
// saying what to write instead (an ndarray array, or a struct per row).
#[derive(Clone, Debug, Differentiable)]
pub struct Rows {
    rows: Vec<Vec<f64>>,
    b: f64,
}

#[grad(p)]
fn loss(p: &Rows, x: &[f64]) -> f64 {
    let mut s = p.b;
    for row in &p.rows {
        let z: f64 = row.iter().zip(x).map(|(w, v)| w * v).sum();
        s += z.tanh();
    }
    s
}

fn main() {
    let _ = loss_grad;
}
