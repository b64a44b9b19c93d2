//! Arrays through loops and branches: array state reassigned in `for`/`while` bodies
//! and `if` arms, gradchecked and equal to the same code unrolled by hand.

#![allow(
    clippy::needless_range_loop,
    clippy::assign_op_pattern,
    clippy::too_many_arguments
)]

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

/// A recurrent cell run `n` steps with a loss at every step; the state is not read
/// after the loop (its cotangent there is zero).
#[grad]
fn recurrent(x: &Array1<f64>, w_h: &Array2<f64>, w_x: &Array2<f64>, n: usize) -> f64 {
    let mut h = x.dot(w_x).tanh();
    let mut loss = 0.0;
    for _ in 0..n {
        h = (h.dot(w_h) + x.dot(w_x)).tanh();
        loss += h.sum();
    }
    loss
}

#[grad]
fn recurrent2_unrolled(x: &Array1<f64>, w_h: &Array2<f64>, w_x: &Array2<f64>) -> f64 {
    let h0 = x.dot(w_x).tanh();
    let h1 = (h0.dot(w_h) + x.dot(w_x)).tanh();
    let h2 = (h1.dot(w_h) + x.dot(w_x)).tanh();
    h1.sum() + h2.sum()
}

/// A `while` loop over array state, and an `if` on arrays inside it.
#[grad]
fn while_and_branch(x: &Array2<f64>, w: &Array2<f64>, flip: bool) -> f64 {
    let mut h = x.clone();
    let mut k = 0;
    while k < 3 {
        if flip && k == 1 {
            h = &h * 2.0;
        } else {
            h = h.dot(w).tanh();
        }
        k += 1;
    }
    h.sum()
}

#[grad]
fn while_and_branch_unrolled(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h1 = x.dot(w).tanh();
    let h2 = &h1 * 2.0;
    let h3 = h2.dot(w).tanh();
    h3.sum()
}

/// An `if` expression whose arms compute different arrays.
#[grad]
fn branch_value(x: &Array2<f64>, w: &Array2<f64>, deep: bool) -> f64 {
    let h = if deep { x.dot(w).tanh() } else { x * 3.0 };
    (&h * &h).sum()
}

#[test]
fn recurrent_equals_unrolled_and_gradchecks() {
    let x = array![0.5, -1.0, 0.25];
    let (_, w, _) = point();
    let w_x = array![[0.2, -0.1, 0.4], [0.3, 0.2, -0.5], [-0.6, 0.1, 0.2]];
    let (v, g) = recurrent_grad(&x, &w, &w_x, 2);
    let (vu, gu) = recurrent2_unrolled_grad(&x, &w, &w_x);
    assert!((v - vu).abs() < 1e-15, "{v} vs {vu}");
    for (a, b) in g.w_h.iter().zip(&gu.w_h) {
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }
    for (a, b) in g.w_x.iter().zip(&gu.w_x) {
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }
    backprop::gradcheck!(recurrent(x = &x, w_h = &w, w_x = &w_x, n = const 4)).assert();
    // Zero steps: only the first state's sum is... not in the loss: the loss is 0 and
    // so is every gradient (the zero of an array no iteration read).
    let (v0, g0) = recurrent_grad(&x, &w, &w_x, 0);
    assert_eq!(v0, 0.0);
    assert!(g0.w_h.iter().all(|v| *v == 0.0) && g0.w_h.dim() == (3, 3));
}

#[test]
fn while_loop_with_an_array_branch_equals_unrolled() {
    let (x, w, _) = point();
    let (v, g) = while_and_branch_grad(&x, &w, true);
    let (vu, gu) = while_and_branch_unrolled_grad(&x, &w);
    assert_eq!(v, vu);
    assert_eq!(g.w, gu.w);
    assert_eq!(g.x, gu.x);
    backprop::gradcheck!(while_and_branch(x = &x, w = &w, flip = const false)).assert();
    backprop::gradcheck!(while_and_branch(x = &x, w = &w, flip = const true)).assert();
}

#[test]
fn array_if_expression_by_hand() {
    let x = array![[1.0, 2.0]];
    let w = array![[0.5, 0.0], [0.0, 0.5]];
    // Shallow: h = 3x, Σh² = 9·5 = 45, ∂x = 18x, w gets zeros of its shape.
    let (v, g) = branch_value_grad(&x, &w, false);
    assert_eq!(v, 45.0);
    assert_eq!(g.x, array![[18.0, 36.0]]);
    assert_eq!(g.w, Array2::<f64>::zeros((2, 2)));
    backprop::gradcheck!(branch_value(x = &x, w = &w, deep = const true)).assert();
}

/// A layer as a `#[grad]` function of a layer struct.
#[grad]
fn dense_layer(x: &Array2<f64>, layer: &Layer) -> Array2<f64> {
    (x.dot(&layer.w) + &layer.b).tanh()
}

/// LayerNorm without gains (statistics over the columns of `xᵀ`).
#[grad]
fn normalize(x: &Array2<f64>) -> Array2<f64> {
    let xt = x.t();
    let mean = xt.mean_axis(ndarray::Axis(0)).unwrap();
    let xc = &xt - &mean;
    let var = (&xc * &xc).mean_axis(ndarray::Axis(0)).unwrap();
    (&xc / &(var + 1e-5).sqrt()).t().to_owned()
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Mlp {
    layers: Vec<Layer>,
}

/// Layers called as `#[grad]` functions inside the loop, on the loop's own array.
#[grad(layers)]
fn mlp_of_calls(layers: &[Layer], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in layers {
        h = dense_layer(&h, layer);
    }
    (&h * &h).mean().unwrap()
}

/// Residual blocks with a norm, through a field of a struct.
#[grad(p, x)]
fn residual_stack(p: &Mlp, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in &p.layers {
        let z = dense_layer(&normalize(&h), layer);
        h = &h + &z;
    }
    h.sum()
}

#[grad]
fn residual_stack_unrolled(
    w0: &Array2<f64>,
    b0: &Array1<f64>,
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    x: &Array2<f64>,
) -> f64 {
    let n0 = normalize(x);
    let h1 = x + &(n0.dot(w0) + b0).tanh();
    let n1 = normalize(&h1);
    let h2 = &h1 + &(n1.dot(w1) + b1).tanh();
    h2.sum()
}

#[test]
fn layer_calls_in_a_loop_equal_inline_layers() {
    let (x, _, _) = point();
    let ls = layers();
    let (v, g) = mlp_of_calls_grad(&ls, &x);
    let (vu, gu) = mlp_grad(&ls, &x);
    assert_eq!(v, vu);
    assert_eq!(g.layers, gu.layers);
}

#[test]
fn residual_blocks_over_a_vec_field_equal_unrolled() {
    let (x, _, _) = point();
    let p = square_layers(&[1.0, -0.5]);
    let (v, g) = residual_stack_grad(&p, &x);
    let l = &p.layers;
    let (vu, gu) = residual_stack_unrolled_grad(&l[0].w, &l[0].b, &l[1].w, &l[1].b, &x);
    assert!((v - vu).abs() < 1e-13, "{v} vs {vu}");
    let close =
        |a: &Array2<f64>, b: &Array2<f64>| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-12);
    assert!(close(&g.p.layers[0].w, &gu.w0));
    assert!(close(&g.p.layers[1].w, &gu.w1));
    assert!(
        g.p.layers[1]
            .b
            .iter()
            .zip(&gu.b1)
            .all(|(a, b)| (a - b).abs() < 1e-12)
    );
    assert!(close(&g.x, &gu.x));
}

/// Square 3×3 layers, one per scale of the same weights.
fn square_layers(scales: &[f64]) -> Mlp {
    let sq = |s: f64| Layer {
        w: array![[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [0.2, 0.1, 0.0]] * s,
        b: array![0.1, 0.0, -0.1] * s,
    };
    Mlp {
        layers: scales.iter().map(|&s| sq(s)).collect(),
    }
}

/// The layers walked backwards (a decoder mirroring an encoder), as a user writes it.
#[grad(p)]
fn reversed_stack(p: &Mlp, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in p.layers.iter().rev() {
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    h.sum()
}

/// The same by index.
#[grad(p)]
fn reversed_stack_by_index(p: &Mlp, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for i in (0..p.layers.len()).rev() {
        let layer = &p.layers[i];
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    h.sum()
}

/// `.enumerate().rev()` numbers in the list's order, `.rev().enumerate()` in the
/// reversed one: each layer's output is scaled by its number plus one.
#[grad(p)]
fn numbered_stacks(p: &Mlp, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for (i, layer) in p.layers.iter().enumerate().rev() {
        h = (h.dot(&layer.w) + &layer.b).tanh() * (i as f64 + 1.0);
    }
    let mut g = x.clone();
    for (i, layer) in p.layers.iter().rev().enumerate() {
        g = (g.dot(&layer.w) + &layer.b).tanh() * (i as f64 + 1.0);
    }
    h.sum() + 2.0 * g.sum()
}

#[grad(p)]
fn numbered_stacks_by_index(p: &Mlp, x: &Array2<f64>) -> f64 {
    let n = p.layers.len();
    let mut h = x.clone();
    for i in (0..n).rev() {
        let layer = &p.layers[i];
        h = (h.dot(&layer.w) + &layer.b).tanh() * (i as f64 + 1.0);
    }
    let mut g = x.clone();
    for k in (0..n).rev() {
        let layer = &p.layers[k];
        g = (g.dot(&layer.w) + &layer.b).tanh() * ((n - 1 - k) as f64 + 1.0);
    }
    h.sum() + 2.0 * g.sum()
}

#[test]
fn reversed_and_numbered_struct_loops_equal_index_loops() {
    let (x, _, _) = point();
    let p = square_layers(&[1.0, -0.5, 0.7]);
    let (v, g) = reversed_stack_grad(&p, &x);
    let (vi, gi) = reversed_stack_by_index_grad(&p, &x);
    assert_eq!(v, vi);
    assert_eq!(g.p, gi.p);
    let (v, g) = numbered_stacks_grad(&p, &x);
    let (vi, gi) = numbered_stacks_by_index_grad(&p, &x);
    assert_eq!(v, vi);
    assert_eq!(g.p, gi.p);
    // And the reversed stack against central differences.
    backprop::gradcheck!(reversed_stack(p = &p, x = const &x)).assert();
}

/// What a loop over layers keeps: per iteration one activation (the state entering it:
/// `dot`'s pullback reads it, and `tanh`'s output is the next iteration's entry, relayed
/// in reverse instead of saved again) and two shapes of a few words.
#[test]
fn loop_tape_holds_one_activation_per_iteration() {
    use backprop::Pullback;
    let x = Array2::from_elem((64, 32), 0.1);
    let w = Array2::from_elem((32, 32), 0.01);
    let b = Array1::from_elem(32, 0.0);
    let bytes = |n: usize| deep_forward(&x, &w, &b, n).1.bytes();
    let activation = 64 * 32 * 8;
    let step = bytes(2) - bytes(1);
    for n in 2..6 {
        assert_eq!(bytes(n + 1) - bytes(n), step, "linear in the trip count");
    }
    assert!(
        step >= activation && step < activation + 256,
        "one activation ({activation} B) and a few words per iteration, got {step}"
    );
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct GLayer<T> {
    w: Array2<T>,
    b: Array1<T>,
}

/// The loop over layers, generic over the float type.
#[grad(layers)]
fn mlp_generic<T: backprop::Real>(layers: &[GLayer<T>], x: &Array2<T>) -> T {
    let mut h = x.clone();
    for layer in layers {
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    (&h * &h).sum()
}

#[test]
fn generic_loop_over_layers_f32_agrees_with_f64() {
    let (x, _, _) = point();
    let ls: Vec<GLayer<f64>> = layers()
        .into_iter()
        .map(|l| GLayer { w: l.w, b: l.b })
        .collect();
    let ls32: Vec<GLayer<f32>> = ls
        .iter()
        .map(|l| GLayer {
            w: l.w.mapv(|v| v as f32),
            b: l.b.mapv(|v| v as f32),
        })
        .collect();
    let (v, g) = mlp_generic_grad(&ls, &x);
    let (v32, g32) = mlp_generic_grad(&ls32, &x.mapv(|v| v as f32));
    assert!(
        (v32 as f64 - v).abs() < 1e-5 * (1.0 + v.abs()),
        "{v32} vs {v}"
    );
    for (a, b) in g32.layers.iter().zip(&g.layers) {
        for (x, y) in a.w.iter().zip(&b.w) {
            assert!((*x as f64 - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    backprop::gradcheck!(mlp_generic(layers = &ls, x = const &x)).assert();
}

mod readme {
    //! The README's "Models: layers in a `Vec`, stacked in a loop" example, as written
    //! there.
    use backprop::optim::{AdamW, AdamWConfig, Optimizer};
    use backprop::{Differentiable, grad};
    use ndarray::{Array1, Array2, array};

    #[derive(Clone, Differentiable)]
    struct Layer {
        w: Array2<f64>,
        b: Array1<f64>,
    }

    #[derive(Clone, Differentiable)]
    struct Mlp {
        layers: Vec<Layer>,
    }

    #[grad]
    fn dense(x: &Array2<f64>, layer: &Layer) -> Array2<f64> {
        (x.dot(&layer.w) + &layer.b).tanh()
    }

    #[grad(p)]
    fn loss(p: &Mlp, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
        let mut h = x.clone();
        for layer in &p.layers {
            h = dense(&h, layer);
        }
        let e = &h - y;
        (&e * &e).mean().unwrap()
    }

    #[test]
    fn readme_model_in_a_vec_learns_xor() {
        let layer = |i: usize, o: usize| Layer {
            w: Array2::from_shape_fn((i, o), |(r, c)| ((r * o + c) as f64 * 0.7).sin() * 0.5),
            b: Array1::zeros(o),
        };
        let mut p = Mlp {
            layers: vec![layer(2, 8), layer(8, 8), layer(8, 1)],
        };
        let (x, y) = (
            array![[0., 0.], [0., 1.], [1., 0.], [1., 1.]],
            array![[0.], [1.], [1.], [0.]],
        );
        let mut opt = AdamW::<f64>::new(AdamWConfig {
            lr: 0.05,
            weight_decay: 0.0,
            ..Default::default()
        });
        let before = loss(&p, &x, &y);
        for _ in 0..300 {
            let (_, g) = loss_grad(&p, &x, &y);
            assert_eq!(g.p.layers[1].w.dim(), (8, 8));
            opt.step(&mut p, &g.p).unwrap();
        }
        let after = loss(&p, &x, &y);
        assert!(after < 0.01, "loss {before} -> {after}");
        backprop::gradcheck!(loss(p = &p, x = const &x, y = const &y)).assert();
    }
}

/// `loop` with a `break` and a `continue` over array state.
#[grad]
fn loop_with_jumps(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    let mut k = 0;
    loop {
        k += 1;
        if k == 2 {
            continue;
        }
        h = h.dot(w).tanh();
        if k >= 4 {
            break;
        }
    }
    h.sum()
}

/// A `match` choosing the layer's activation per step.
#[grad]
fn match_per_step(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for i in (0..3).rev() {
        h = match i {
            0 => h.dot(w),
            1 => h.dot(w).tanh(),
            _ => &h * &h,
        };
    }
    h.sum()
}

#[test]
fn jumps_and_matches_over_arrays_equal_unrolled() {
    let (x, w, _) = point();
    // k = 1, 3, 4 apply the layer; k = 2 skips it.
    let (v, g) = loop_with_jumps_grad(&x, &w);
    let (vu, gu) = deep_unrolled_grad(&x, &w, &Array1::zeros(3));
    let three = x.dot(&w).tanh().dot(&w).tanh().dot(&w).tanh();
    assert_eq!(v, three.sum());
    // deep_unrolled is the mean square of the same three layers: a different loss,
    // the same network (its value pins the layers, not the gradient).
    assert_eq!(vu, (&three * &three).mean().unwrap());
    assert_eq!(g.w.dim(), gu.w.dim());
    backprop::gradcheck!(loop_with_jumps(x = &x, w = &w)).assert();
    let (m, _) = match_per_step_grad(&x, &w);
    let want = {
        let h = &x * &x;
        h.dot(&w).tanh().dot(&w).sum()
    };
    assert_eq!(m, want);
    backprop::gradcheck!(match_per_step(x = &x, w = &w)).assert();
}

/// A loop whose iterations keep a runtime op's tape (attention keeps Q, K, V, O and the
/// row statistics): the loop's `tape.bytes()` counts each iteration's nested tape.
#[grad(x)]
fn attention_loop(x: &ndarray::Array4<f64>, n: usize) -> f64 {
    let mut h = x.to_owned();
    for _ in 0..n {
        h = backprop::ops::attention(&h, &h, &h, true);
    }
    h.sum()
}

#[test]
fn loop_tape_counts_nested_op_tapes() {
    use backprop::Pullback;
    let x = ndarray::Array4::from_elem((1, 2, 8, 4), 0.1);
    let one = backprop::ops::attention::forward(&x, &x, &x, true)
        .1
        .bytes();
    let bytes = |n: usize| attention_loop_forward(&x, n).1.bytes();
    let step = bytes(3) - bytes(2);
    assert!(
        step >= one,
        "each iteration keeps one attention tape ({one} B), the loop grew by {step} B"
    );
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct ScaleBlock {
    s: f64,
    w: Array2<f64>,
}

/// The same over a list of structs, with a view of the state reshaped for the op, as
/// a transformer block inlined in `for blk in &p.blocks` is.
#[grad(x, blocks)]
fn attention_blocks(x: &ndarray::Array4<f64>, blocks: &[ScaleBlock]) -> f64 {
    let mut h = x.to_owned();
    for blk in blocks {
        let (b, nh, t, d) = h.dim();
        let flat = h.to_shape((b * nh * t, d)).unwrap();
        let z = flat
            .dot(&blk.w)
            .into_shape_with_order((b, nh, t, d))
            .unwrap();
        let a = backprop::ops::attention(&z, &z, &z, true);
        h = a * blk.s;
    }
    h.sum()
}

#[test]
fn loop_over_structs_counts_nested_op_tapes() {
    use backprop::Pullback;
    let x = ndarray::Array4::from_elem((1, 2, 8, 4), 0.1);
    let one = backprop::ops::attention::forward(&x, &x, &x, true)
        .1
        .bytes();
    let blk = ScaleBlock {
        s: 0.5,
        w: Array2::from_elem((4, 4), 0.2),
    };
    let bytes = |n: usize| {
        attention_blocks_forward(&x, &vec![blk.clone(); n])
            .1
            .bytes()
    };
    let step = bytes(3) - bytes(2);
    assert!(
        step >= one,
        "each iteration keeps one attention tape ({one} B), the loop grew by {step} B"
    );
}

// An array state that one loop leaves and the next takes up: the first loop's reverse
// reads its last output (`tanh` keeps it), which the second loop's state also starts
// from. Before, the second loop moved it and the function did not compile (E0382).

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct EncoderDecoder {
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
}

#[grad]
fn encode_decode(p: &EncoderDecoder, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in &p.encoder {
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    for layer in &p.decoder {
        h = (h.dot(&layer.w) + &layer.b).tanh();
    }
    (&h * &h).sum()
}

#[grad]
fn encode_decode_unrolled(p: &EncoderDecoder, x: &Array2<f64>) -> f64 {
    let e0 = &p.encoder[0];
    let e1 = &p.encoder[1];
    let d0 = &p.decoder[0];
    let h1 = (x.dot(&e0.w) + &e0.b).tanh();
    let h2 = (h1.dot(&e1.w) + &e1.b).tanh();
    let h3 = (h2.dot(&d0.w) + &d0.b).tanh();
    (&h3 * &h3).sum()
}

/// One `for`, then a `while`, then an `if` that may take one more step, then a new name.
#[grad]
fn for_while_if_rename(x: &Array2<f64>, w: &Array2<f64>, more: usize, once_more: bool) -> f64 {
    let mut h = x.clone();
    for _ in 0..2 {
        h = h.dot(w).tanh();
    }
    let mut k = 0;
    while k < more {
        h = h.dot(w).tanh();
        k += 1;
    }
    if once_more {
        h = h.dot(w).tanh();
    }
    let y = h;
    (&y * &y).sum()
}

fn for_while_if_rename_by_hand(x: &Array2<f64>, w: &Array2<f64>, steps: usize) -> f64 {
    let mut h = x.clone();
    for _ in 0..steps {
        h = h.dot(w).tanh();
    }
    (&h * &h).sum()
}

/// `let y = h;` of an array whose rule keeps it, with no loop at all.
#[grad]
fn renamed_output(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h = x.dot(w).tanh();
    let y = h;
    (&y * &y).sum() + y.sum()
}

#[test]
fn a_state_handed_from_loop_to_loop_equals_unrolled() {
    let (x, w, b) = point();
    let layer = |s: f64| Layer {
        w: w.mapv(|v| v * s),
        b: b.mapv(|v| v + s),
    };
    let p = EncoderDecoder {
        encoder: vec![layer(1.0), layer(-0.7)],
        decoder: vec![layer(0.4)],
    };
    let (v, g) = encode_decode_grad(&p, &x);
    let (vu, gu) = encode_decode_unrolled_grad(&p, &x);
    assert_eq!(v, vu);
    assert_eq!(g.p, gu.p);
    assert_eq!(g.x, gu.x);
    backprop::gradcheck!(encode_decode(p = &p, x = &x)).assert();
}

#[test]
fn a_state_through_for_while_if_and_a_new_name_is_exact() {
    let (x, w, _) = point();
    for more in 0..3 {
        for once_more in [false, true] {
            let steps = 2 + more + usize::from(once_more);
            let v = for_while_if_rename(&x, &w, more, once_more);
            assert_eq!(v, for_while_if_rename_by_hand(&x, &w, steps));
            backprop::gradcheck!(for_while_if_rename(
                x = &x,
                w = &w,
                more = const more,
                once_more = const once_more
            ))
            .assert();
        }
    }
    // By hand: y = tanh(x·w), f = Σ y² + Σ y, so ∂f/∂(xw) = (2y + 1)(1 − y²).
    let (v, g) = renamed_output_grad(&x, &w);
    let y = x.dot(&w).tanh();
    assert_eq!(v, (&y * &y).sum() + y.sum());
    let d_z = (&y * 2.0 + 1.0) * (1.0 - &y * &y);
    let expect_w = x.t().dot(&d_z);
    for (a, e) in g.w.iter().zip(expect_w.iter()) {
        assert!((a - e).abs() < 1e-14, "{a} vs {e}");
    }
}

// Layers taken by value (`[Layer; 2]`, `Vec<Layer>`, a struct of layers) and lent to a
// `#[grad]` layer: the argument ends with the forward pass, so each call runs on a copy
// its tape keeps (before, the callee's tape borrowed it: E0505 and E0597).

#[grad]
fn layer_on(x: &Array2<f64>, l: &Layer) -> Array2<f64> {
    (x.dot(&l.w) + &l.b).tanh()
}

#[grad(layers)]
fn owned_array_of_layers(layers: [Layer; 2], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for l in &layers {
        h = layer_on(&h, l);
    }
    h.sum()
}

#[grad(layers)]
fn owned_vec_of_layers(layers: Vec<Layer>, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for l in layers.iter() {
        h = layer_on(&h, l);
    }
    h.sum()
}

#[grad(layers)]
fn borrowed_layers(layers: &[Layer], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for l in layers {
        h = layer_on(&h, l);
    }
    h.sum()
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct TwoLayers {
    l1: Layer,
    l2: Layer,
}

#[grad(p)]
fn owned_struct_of_layers(p: TwoLayers, x: &Array2<f64>) -> f64 {
    let h = layer_on(x, &p.l1);
    layer_on(&h, &p.l2).sum()
}

#[test]
fn layers_taken_by_value_equal_layers_borrowed() {
    let (x, w, b) = point();
    let layer = |s: f64| Layer {
        w: w.mapv(|v| v * s),
        b: b.mapv(|v| v - s * 0.1),
    };
    let layers = [layer(1.0), layer(-0.5)];
    let (v, g) = borrowed_layers_grad(&layers, &x);
    let (va, ga) = owned_array_of_layers_grad(layers.clone(), &x);
    let (vv, gv) = owned_vec_of_layers_grad(layers.to_vec(), &x);
    let two = TwoLayers {
        l1: layers[0].clone(),
        l2: layers[1].clone(),
    };
    let (vs, gs) = owned_struct_of_layers_grad(two, &x);
    assert_eq!((va, vv, vs), (v, v, v));
    assert_eq!(ga.layers.to_vec(), g.layers);
    assert_eq!(gv.layers, g.layers);
    assert_eq!(
        (gs.p.l1, gs.p.l2),
        (g.layers[0].clone(), g.layers[1].clone())
    );
    backprop::gradcheck!(owned_array_of_layers(layers = layers.clone(), x = const &x)).assert();
}

// A list of arrays in a struct (`ws: Vec<Array2<f64>>`): `for w in &p.ws`, with
// `.enumerate()`, `&p.ws[i]` in an expression or bound to a local, `p.ws[i].t()`. Each
// element is a place whose adjoint is `d_p.ws[i]`. Before, the loop was taken for one
// over floats (E0271/E0277 at the `for`) and `&p.ws[i]` was refused.

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct ArrayLists {
    ws: Vec<Array2<f64>>,
    bs: Vec<Array1<f64>>,
}

#[grad(p)]
fn over_array_list(p: &ArrayLists, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for (i, w) in p.ws.iter().enumerate() {
        let b = &p.bs[i];
        h = (h.dot(w) + b).tanh();
    }
    let last = &p.ws[p.ws.len() - 1];
    h.sum() + last.t().sum() * 0.5
}

#[grad(p)]
fn over_array_list_by_index(p: &ArrayLists, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for i in 0..p.ws.len() {
        h = (h.dot(&p.ws[i]) + &p.bs[i]).tanh();
    }
    h.sum() + p.ws[2].t().sum() * 0.5
}

#[grad(p)]
fn over_array_list_unrolled(p: &ArrayLists, x: &Array2<f64>) -> f64 {
    let h1 = (x.dot(&p.ws[0]) + &p.bs[0]).tanh();
    let h2 = (h1.dot(&p.ws[1]) + &p.bs[1]).tanh();
    let h3 = (h2.dot(&p.ws[2]) + &p.bs[2]).tanh();
    h3.sum() + p.ws[2].sum() * 0.5
}

#[test]
fn lists_of_arrays_in_a_struct_are_places() {
    let (x, w, b) = point();
    let p = ArrayLists {
        ws: vec![w.clone(), w.mapv(|v| -0.7 * v), w.t().to_owned()],
        bs: vec![b.clone(), b.mapv(|v| v + 0.2), b.mapv(|v| -v)],
    };
    let (v, g) = over_array_list_grad(&p, &x);
    let (vi, gi) = over_array_list_by_index_grad(&p, &x);
    let (vu, gu) = over_array_list_unrolled_grad(&p, &x);
    assert_eq!((v, vi), (vu, vu));
    assert_eq!(g.p, gu.p);
    assert_eq!(gi.p, gu.p);
    // The `0.5·Σ wᵀ` term alone adds 0.5 to every element of `d_p.ws[2]`.
    let (_, g_last) = over_array_list_grad(
        &ArrayLists {
            ws: p.ws.clone(),
            bs: p.bs.clone(),
        },
        &x,
    );
    assert_eq!(g_last.p.ws.len(), 3);
    backprop::gradcheck!(over_array_list(p = &p, x = const &x)).assert();
}

/// The form the refusal of `break h.clone()` advises: the result declared before the
/// `loop`, assigned before the `break` (its first value is never read).
#[allow(unused_assignments)]
#[grad(w)]
fn settle(w: &Array2<f64>) -> f64 {
    let mut h = w.clone();
    let mut out = h.clone();
    loop {
        h = h.tanh();
        if h.sum() < 1.0 {
            out = h.clone();
            break;
        }
    }
    (&out * &out).sum()
}

#[test]
fn an_array_leaves_a_loop_through_a_variable() {
    let w = array![[0.9, 0.7], [0.5, 0.3]];
    // tanh applied until the sum is below 1: count the steps by hand.
    let mut h = w.clone();
    let mut steps = 0;
    loop {
        h = h.tanh();
        steps += 1;
        if h.sum() < 1.0 {
            break;
        }
    }
    let (v, g) = settle_grad(&w);
    assert_eq!(v, (&h * &h).sum());
    // d/dw of Σ tanh^k(w)² is elementwise: 2·h·Π (1 − tanh(h_j)²) over the steps.
    let mut d = h.mapv(|x| 2.0 * x);
    let mut hs = vec![w.clone()];
    for _ in 0..steps {
        let next = hs.last().unwrap().tanh();
        hs.push(next);
    }
    for k in (1..=steps).rev() {
        d = &d * &hs[k].mapv(|y| 1.0 - y * y);
    }
    for (a, e) in g.w.iter().zip(d.iter()) {
        assert!((a - e).abs() < 1e-14, "{a} vs {e}");
    }
    backprop::gradcheck!(settle(w = &w)).assert();
}

// A part of the list of layers (`&p.layers[1..]`, `p.layers[..2].iter()` with
// `.enumerate().rev()`), and a `fold` over the layers: the loops over places they mean.
// Before, both compiled to rustc errors out of the expansion.

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Stack {
    layers: Vec<Layer>,
}

#[grad(p)]
fn over_parts_of_the_list(p: &Stack, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in &p.layers[1..] {
        h = layer_on(&h, layer);
    }
    for (i, layer) in p.layers[..2].iter().enumerate().rev() {
        h = layer_on(&h, layer) * (i as f64 + 1.0);
    }
    h.sum()
}

#[grad(p)]
fn over_parts_by_index(p: &Stack, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for k in 1..p.layers.len() {
        h = layer_on(&h, &p.layers[k]);
    }
    for k in (0..2).rev() {
        h = layer_on(&h, &p.layers[k]) * (k as f64 + 1.0);
    }
    h.sum()
}

#[grad(p)]
fn folded_layers(p: &Stack, x: &Array2<f64>) -> f64 {
    p.layers
        .iter()
        .fold(x.clone(), |h, l| layer_on(&h, l))
        .sum()
}

#[grad(p)]
fn looped_layers(p: &Stack, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for l in &p.layers {
        h = layer_on(&h, l);
    }
    h.sum()
}

#[test]
fn parts_of_a_list_and_folds_over_it_equal_index_loops() {
    let (x, w, b) = point();
    let layer = |s: f64| Layer {
        w: w.mapv(|v| v * s),
        b: b.mapv(|v| v + 0.1 * s),
    };
    let p = Stack {
        layers: vec![layer(1.0), layer(-0.5), layer(0.8)],
    };
    let (v, g) = over_parts_of_the_list_grad(&p, &x);
    let (vi, gi) = over_parts_by_index_grad(&p, &x);
    assert_eq!((v, &g.p), (vi, &gi.p));
    let (vf, gf) = folded_layers_grad(&p, &x);
    let (vl, gl) = looped_layers_grad(&p, &x);
    assert_eq!((vf, &gf.p), (vl, &gl.p));
    backprop::gradcheck!(over_parts_of_the_list(p = &p, x = const &x)).assert();
    backprop::gradcheck!(folded_layers(p = &p, x = const &x)).assert();
}
