//! Arrays through loops and branches: array state reassigned in `for`/`while` bodies
//! and `if` arms, gradchecked and equal to the same code unrolled by hand.

#![allow(clippy::needless_range_loop, clippy::assign_op_pattern)]

use backprop::grad;
use ndarray::{Array1, Array2, array};

#[grad]
fn deep(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>, n: usize) -> f64 {
    let mut h = x.clone();
    for _ in 0..n {
        h = (h.dot(w) + b).tanh();
    }
    (&h * &h).mean().unwrap()
}

#[grad]
fn deep_unrolled(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let h1 = (x.dot(w) + b).tanh();
    let h2 = (h1.dot(w) + b).tanh();
    let h3 = (h2.dot(w) + b).tanh();
    (&h3 * &h3).mean().unwrap()
}

fn point() -> (Array2<f64>, Array2<f64>, Array1<f64>) {
    (
        array![[1.0, 2.0, 0.5], [0.5, -1.0, 0.25]],
        array![[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [0.2, 0.1, 0.0]],
        array![0.1, 0.0, -0.1],
    )
}

#[test]
fn loop_over_layers_equals_unrolled() {
    let (x, w, b) = point();
    let (v, g) = deep_grad(&x, &w, &b, 3);
    let (vu, gu) = deep_unrolled_grad(&x, &w, &b);
    assert_eq!(v, vu);
    assert_eq!(g.w, gu.w);
    assert_eq!(g.b, gu.b);
    assert_eq!(g.x, gu.x);
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Layer {
    w: Array2<f64>,
    b: Array1<f64>,
}

/// An MLP as a loop over its layers (tanh between, none after the last).
#[grad(layers)]
fn mlp(layers: &[Layer], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in layers {
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    (&h * &h).mean().unwrap()
}

/// The same MLP with an index, reading `layers[i].w` directly.
#[grad(layers)]
fn mlp_indexed(layers: &[Layer], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for i in 0..layers.len() {
        h = (h.dot(&layers[i].w) + &layers[i].b).tanh();
    }
    (&h * &h).mean().unwrap()
}

/// The same, unrolled by hand for three layers.
#[grad]
fn mlp3_unrolled(
    w0: &Array2<f64>,
    b0: &Array1<f64>,
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
    x: &Array2<f64>,
) -> f64 {
    let h = (x.dot(w0) + b0).tanh();
    let h = (h.dot(w1) + b1).tanh();
    let h = (h.dot(w2) + b2).tanh();
    (&h * &h).mean().unwrap()
}

fn layers() -> Vec<Layer> {
    vec![
        Layer {
            w: array![[0.1, -0.2], [0.4, 0.5], [0.2, 0.1]],
            b: array![0.1, -0.1],
        },
        Layer {
            w: array![[0.3, -0.7, 0.2, 0.1], [0.6, 0.2, -0.4, 0.5]],
            b: array![0.0, 0.2, -0.3, 0.05],
        },
        Layer {
            w: array![[0.5], [-0.3], [0.8], [0.1]],
            b: array![0.2],
        },
    ]
}

#[test]
fn loop_over_a_slice_of_layers_equals_unrolled() {
    let (x, _, _) = point();
    let ls = layers();
    let (v, g) = mlp_grad(&ls, &x);
    let (vi, gi) = mlp_indexed_grad(&ls, &x);
    let (vu, gu) = mlp3_unrolled_grad(
        &ls[0].w, &ls[0].b, &ls[1].w, &ls[1].b, &ls[2].w, &ls[2].b, &x,
    );
    assert_eq!(v, vu);
    assert_eq!(vi, vu);
    let want = [(&gu.w0, &gu.b0), (&gu.w1, &gu.b1), (&gu.w2, &gu.b2)];
    for (k, (w, b)) in want.iter().enumerate() {
        assert_eq!(&g.layers[k].w, *w, "layer {k}");
        assert_eq!(&g.layers[k].b, *b, "layer {k}");
        assert_eq!(&gi.layers[k].w, *w, "layer {k}");
        assert_eq!(&gi.layers[k].b, *b, "layer {k}");
    }
}
