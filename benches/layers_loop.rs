//! A loop over layers against the same layers unrolled (issue 14: within 5%, same run).
//!
//! A 4-layer ReLU MLP, 256 wide, batch 64, f32, written twice as `#[grad]` functions:
//! `for layer in &p.layers { h = relu(&(h.dot(&layer.w) + &layer.b)) }` over a
//! `Vec<Layer>`, and the four layers written out with their own weight arguments.
//! Interleaved rounds (this machine's speed drifts ±20% over minutes): each round times
//! one gradient of each, alternating which goes first; the figure is the median of the
//! per-round ratios.
//!
//! ```text
//! cargo bench --bench layers_loop
//! ```

use backprop::{Differentiable, grad, ops};
use ndarray::{Array1, Array2};
use std::hint::black_box;
use std::time::Instant;

#[derive(Clone, Differentiable)]
struct Layer {
    w: Array2<f32>,
    b: Array1<f32>,
}

#[derive(Clone, Differentiable)]
struct Mlp {
    layers: Vec<Layer>,
}

#[grad(p)]
fn looped(p: &Mlp, x: &Array2<f32>) -> f32 {
    let mut h = x.clone();
    for layer in &p.layers {
        h = ops::relu(&(h.dot(&layer.w) + &layer.b));
    }
    (&h * &h).mean().unwrap()
}

#[allow(clippy::too_many_arguments)]
#[grad(w0, b0, w1, b1, w2, b2, w3, b3)]
fn unrolled(
    x: &Array2<f32>,
    w0: &Array2<f32>,
    b0: &Array1<f32>,
    w1: &Array2<f32>,
    b1: &Array1<f32>,
    w2: &Array2<f32>,
    b2: &Array1<f32>,
    w3: &Array2<f32>,
    b3: &Array1<f32>,
) -> f32 {
    let h = ops::relu(&(x.dot(w0) + b0));
    let h = ops::relu(&(h.dot(w1) + b1));
    let h = ops::relu(&(h.dot(w2) + b2));
    let h = ops::relu(&(h.dot(w3) + b3));
    (&h * &h).mean().unwrap()
}

fn main() {
    const B: usize = 64;
    const W: usize = 256;
    let filled = |r: usize, c: usize, seed: usize| {
        Array2::from_shape_fn((r, c), |(i, j)| {
            (((i * 31 + j * 17 + seed) % 13) as f32 / 13.0 - 0.45) * 0.15
        })
    };
    let p = Mlp {
        layers: (0..4)
            .map(|k| Layer {
                w: filled(W, W, k),
                b: Array1::from_elem(W, 0.01),
            })
            .collect(),
    };
    let x = filled(B, W, 9);
    let l = &p.layers;
    let run_loop = || black_box(looped_grad(black_box(&p), black_box(&x)));
    let run_unrolled = || {
        black_box(unrolled_grad(
            black_box(&x),
            &l[0].w,
            &l[0].b,
            &l[1].w,
            &l[1].b,
            &l[2].w,
            &l[2].b,
            &l[3].w,
            &l[3].b,
        ))
    };
    // Same value and gradient.
    let (v, g) = looped_grad(&p, &x);
    let (vu, gu) = unrolled_grad(
        &x, &l[0].w, &l[0].b, &l[1].w, &l[1].b, &l[2].w, &l[2].b, &l[3].w, &l[3].b,
    );
    assert_eq!(v, vu);
    assert_eq!(g.p.layers[0].w, gu.w0);
    assert_eq!(g.p.layers[3].b, gu.b3);
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    for _ in 0..20 {
        run_loop();
        run_unrolled();
    }
    let rounds = 200;
    let (mut tl, mut tu, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (a, b) = if r % 2 == 0 {
            let a = time(&|| {
                run_loop();
            });
            (
                a,
                time(&|| {
                    run_unrolled();
                }),
            )
        } else {
            let b = time(&|| {
                run_unrolled();
            });
            (
                time(&|| {
                    run_loop();
                }),
                b,
            )
        };
        tl.push(a);
        tu.push(b);
        ratios.push(a / b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (ml, mu, mr) = (median(&mut tl), median(&mut tu), median(&mut ratios));
    println!("layers_loop: 4 layers × {W} wide, batch {B}, f32, {rounds} interleaved rounds");
    println!("  loop over Vec<Layer>  median {:.3} ms", ml * 1e3);
    println!("  unrolled              median {:.3} ms", mu * 1e3);
    println!("  loop / unrolled       median of per-round ratios {mr:.3}");
}
