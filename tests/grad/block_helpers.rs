//! A transformer block built from `#[grad]` helpers (LayerNorm, causal self-attention,
//! an MLP), stacked in a loop over `Vec<Block>`, against the same network written inline
//! in one function (issue 14): same value, same gradient; and a `#[custom_vjp]` layer
//! with an array result inside it.

#![allow(clippy::too_many_arguments)]

use backprop::{Differentiable, grad, ops};
use ndarray::{Array1, Array2, Axis};

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Block {
    g1: Array1<f64>,
    b1: Array1<f64>,
    wq: Array2<f64>,
    wk: Array2<f64>,
    wv: Array2<f64>,
    wo: Array2<f64>,
    g2: Array1<f64>,
    b2: Array1<f64>,
    w_fc: Array2<f64>,
    w_out: Array2<f64>,
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Model {
    blocks: Vec<Block>,
}

/// LayerNorm over each row (eps 1e-5), written with array methods.
#[grad]
fn norm(x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>) -> Array2<f64> {
    let mean = x.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let xc = x - &mean;
    let var = (&xc * &xc).mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    &xc / &(var + 1e-5).sqrt() * g + b
}

/// One causal self-attention head over `[T, d]`.
#[grad]
fn attend(x: &Array2<f64>, blk: &Block) -> Array2<f64> {
    let q = x.dot(&blk.wq);
    let k = x.dot(&blk.wk);
    let v = x.dot(&blk.wv);
    let d = q.ncols() as f64;
    let att = ops::softmax_causal(&(q.dot(&k.t()) / d.sqrt()));
    att.dot(&v).dot(&blk.wo)
}

#[grad]
fn mlp(x: &Array2<f64>, blk: &Block) -> Array2<f64> {
    ops::gelu_exact(&x.dot(&blk.w_fc)).dot(&blk.w_out)
}

/// A pre-norm block: x + attn(ln1(x)), then + mlp(ln2(.)).
#[grad]
fn block(x: &Array2<f64>, blk: &Block) -> Array2<f64> {
    let h = x + &attend(&norm(x, &blk.g1, &blk.b1), blk);
    &h + &mlp(&norm(&h, &blk.g2, &blk.b2), blk)
}

#[grad(p, x)]
fn model_loss(p: &Model, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for blk in &p.blocks {
        h = block(&h, blk);
    }
    (&h * &h).mean().unwrap()
}

/// The same two blocks, every layer inline.
#[grad(p, x)]
fn model_loss_inline(p: &Model, x: &Array2<f64>) -> f64 {
    let b0 = &p.blocks[0];
    let mean = x.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let xc = x - &mean;
    let var = (&xc * &xc).mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let n = &xc / &(var + 1e-5).sqrt() * &b0.g1 + &b0.b1;
    let q = n.dot(&b0.wq);
    let k = n.dot(&b0.wk);
    let v = n.dot(&b0.wv);
    let d = q.ncols() as f64;
    let att = ops::softmax_causal(&(q.dot(&k.t()) / d.sqrt()));
    let h = x + &att.dot(&v).dot(&b0.wo);
    let mean = h.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let hc = &h - &mean;
    let var = (&hc * &hc).mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let n = &hc / &(var + 1e-5).sqrt() * &b0.g2 + &b0.b2;
    let y = &h + &ops::gelu_exact(&n.dot(&b0.w_fc)).dot(&b0.w_out);
    let b1 = &p.blocks[1];
    let mean = y.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let yc = &y - &mean;
    let var = (&yc * &yc).mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let n = &yc / &(var + 1e-5).sqrt() * &b1.g1 + &b1.b1;
    let q = n.dot(&b1.wq);
    let k = n.dot(&b1.wk);
    let v = n.dot(&b1.wv);
    let att = ops::softmax_causal(&(q.dot(&k.t()) / d.sqrt()));
    let h = &y + &att.dot(&v).dot(&b1.wo);
    let mean = h.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let hc = &h - &mean;
    let var = (&hc * &hc).mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let n = &hc / &(var + 1e-5).sqrt() * &b1.g2 + &b1.b2;
    let out = &h + &ops::gelu_exact(&n.dot(&b1.w_fc)).dot(&b1.w_out);
    (&out * &out).mean().unwrap()
}

fn filled(r: usize, c: usize, seed: u64, scale: f64) -> Array2<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Array2::from_shape_simple_fn((r, c), || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}

fn model(d: usize, seed: u64) -> Model {
    let blk = |k: u64| Block {
        g1: Array1::from_shape_fn(d, |i| 1.0 + 0.1 * i as f64),
        b1: Array1::from_shape_fn(d, |i| 0.05 * i as f64 - 0.1),
        wq: filled(d, d, seed + 10 * k, 0.4),
        wk: filled(d, d, seed + 10 * k + 1, 0.4),
        wv: filled(d, d, seed + 10 * k + 2, 0.4),
        wo: filled(d, d, seed + 10 * k + 3, 0.4),
        g2: Array1::from_shape_fn(d, |i| 0.9 - 0.05 * i as f64),
        b2: Array1::from_shape_fn(d, |i| 0.02 * i as f64),
        w_fc: filled(d, 4 * d, seed + 10 * k + 4, 0.4),
        w_out: filled(4 * d, d, seed + 10 * k + 5, 0.2),
    };
    Model {
        blocks: vec![blk(0), blk(1)],
    }
}

fn close(a: &Array2<f64>, b: &Array2<f64>, what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
}

#[test]
fn blocks_from_grad_helpers_equal_the_inline_network() {
    let (t, d) = (5, 4);
    let p = model(d, 7);
    let x = filled(t, d, 3, 1.0);
    let (v, g) = model_loss_grad(&p, &x);
    let (vi, gi) = model_loss_inline_grad(&p, &x);
    assert!((v - vi).abs() <= 1e-13 * vi.abs(), "{v} vs {vi}");
    close(&g.x, &gi.x, "x");
    for (k, (a, b)) in g.p.blocks.iter().zip(&gi.p.blocks).enumerate() {
        close(&a.wq, &b.wq, &format!("block {k} wq"));
        close(&a.wk, &b.wk, &format!("block {k} wk"));
        close(&a.wv, &b.wv, &format!("block {k} wv"));
        close(&a.wo, &b.wo, &format!("block {k} wo"));
        close(&a.w_fc, &b.w_fc, &format!("block {k} w_fc"));
        close(&a.w_out, &b.w_out, &format!("block {k} w_out"));
        for (name, u, w) in [
            ("g1", &a.g1, &b.g1),
            ("b1", &a.b1, &b.b1),
            ("g2", &a.g2, &b.g2),
            ("b2", &a.b2, &b.b2),
        ] {
            for (x, y) in u.iter().zip(w) {
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                    "block {k} {name}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn blocks_from_grad_helpers_gradcheck() {
    let p = model(3, 11);
    let x = filled(4, 3, 5, 1.0);
    backprop::gradcheck!(model_loss(p = &p, x = &x)).assert();
}

/// `y = x · s` with a hand-written pullback, on arrays.
#[backprop::custom_vjp(scale_rows_vjp)]
fn scale_rows(x: &Array2<f64>, s: &Array1<f64>) -> Array2<f64> {
    x * &s.view().insert_axis(Axis(1))
}

fn scale_rows_vjp(
    x: &Array2<f64>,
    s: &Array1<f64>,
    _y: Array2<f64>,
    d: Array2<f64>,
) -> (Array2<f64>, Array1<f64>) {
    (
        &d * &s.view().insert_axis(Axis(1)),
        (&d * x).sum_axis(Axis(1)),
    )
}

#[grad]
fn scaled_loss(x: &Array2<f64>, s: &Array1<f64>) -> f64 {
    let y = scale_rows(x, s);
    let z = scale_rows(&y.tanh(), s);
    (&z * &z).sum()
}

#[test]
fn custom_vjp_with_an_array_result_gradcheck() {
    let x = filled(3, 4, 1, 1.0);
    let s = Array1::from(vec![0.5, -1.5, 2.0]);
    backprop::gradcheck!(scaled_loss(x = &x, s = &s)).assert();
}
