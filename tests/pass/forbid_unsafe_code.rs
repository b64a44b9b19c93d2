//! A crate that forbids `unsafe` can use `#[grad]`: the expansion has none, including
//! for a layer called on an array the caller made (its tape keeps a copy of the array:
//! `backprop`'s `keep` owns the one `unsafe` block).
#![forbid(unsafe_code)]

use backprop::grad;
use ndarray::{Array1, Array2, array};

#[grad]
fn dense(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    (x.dot(w) + b).tanh()
}

#[grad(w, b)]
fn loss(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>, n: usize) -> f64 {
    let mut h = x.clone();
    for _ in 0..n {
        h = dense(&h, w, b);
    }
    (&h * &h).sum()
}

#[grad]
fn scaled(h: &[f64], s: f64) -> f64 {
    h.iter().map(|v| v * s).sum()
}

#[grad]
fn on_a_local_buffer(x: &[f64], s: f64) -> f64 {
    let h: Vec<f64> = x.iter().map(|v| v * v).collect();
    scaled(&h, s)
}

fn main() {
    let x = array![[0.5, -1.0], [2.0, 0.25]];
    let w = array![[0.3, -0.2], [0.1, 0.4]];
    let b = array![0.05, -0.1];
    let (l, g) = loss_grad(&x, &w, &b, 3);
    assert_eq!(l, loss(&x, &w, &b, 3));
    assert_eq!(g.w.dim(), (2, 2));
    // Σ s·x²: d/ds = Σ x², d/dx = 2·s·x.
    let (_, g) = on_a_local_buffer_grad(&[1.0, 2.0], 3.0);
    assert_eq!((g.s, g.x), (5.0, vec![6.0, 12.0]));
}
