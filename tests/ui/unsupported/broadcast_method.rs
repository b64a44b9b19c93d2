use backprop::{grad, Differentiable};
use ndarray::{Array2, Array3, s};
#[derive(Clone, Debug, Differentiable)]
struct M { wte: Array2<f64> }
#[grad(p)]
fn loss(p: &M, x: &Array3<f64>) -> f64 {
    let (b, t, d) = x.dim();
    let pos = p.wte.slice(s![..t, ..]);
    let y = x + &pos.broadcast((b, t, d)).unwrap();
    y.sum()
}
fn main() { let _ = loss_grad(&M { wte: Array2::ones((2, 2)) }, &Array3::ones((1, 2, 2))); }
