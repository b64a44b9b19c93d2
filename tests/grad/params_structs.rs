//! Parameters as users structure them (issue 14, part 3): `#[derive(Differentiable)]` on
//! structs holding `Vec<Layer>`, `[Layer; 3]`, `Box<Layer>`, nested structs and generic
//! `Layer<T>` (at f32 and f64), with every trait the macro and the training toolbox use:
//! `zero_like`, `Accumulate`, `Params` (names, counts, optimizer steps, state dicts,
//! clipping, gradient buckets) and `GradValue` (gradient checks).
#![allow(clippy::float_cmp, clippy::needless_range_loop)]

use backprop::dist::Buckets;
use backprop::gradcheck::{GradValue, Options};
use backprop::optim::{AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig, StateDict};
use backprop::params::Params;
use backprop::{Differentiable, Real, grad, gradcheck};
use ndarray::{Array1, Array2, array};

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Layer {
    w: Array2<f64>,
    b: Array1<f64>,
}

/// A stack of layers, as a user keeps one.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Model {
    layers: Vec<Layer>,
}

/// A fixed number of layers.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Fixed {
    layers: [Layer; 3],
}

/// Nested structs, a boxed one, a float and a buffer of floats beside them.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Nested {
    enc: Layer,
    head: Box<Layer>,
    scale: f64,
    offsets: Vec<f64>,
}

/// A layer generic over its float type.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct GLayer<T> {
    w: Array2<T>,
    b: Array1<T>,
    gain: T,
    extra: Vec<T>,
}

/// A stack of generic layers.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct GModel<T> {
    layers: Vec<GLayer<T>>,
}

/// Deterministic, distinct, non-zero values: `k`-th element `0.1·sin(k + seed) + 0.05`.
fn filled(rows: usize, cols: usize, seed: f64) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        0.4 * ((i * cols + j) as f64 + seed).sin() + 0.05
    })
}

fn layer(inp: usize, out: usize, seed: f64) -> Layer {
    Layer {
        w: filled(inp, out, seed),
        b: filled(1, out, seed + 7.0).row(0).to_owned(),
    }
}

/// 3 → 4 → 4 → 2.
fn model() -> Model {
    Model {
        layers: vec![layer(3, 4, 0.0), layer(4, 4, 1.0), layer(4, 2, 2.0)],
    }
}

fn glayer<T: Real>(seed: f64) -> GLayer<T> {
    let t = |v: f64| T::from(v).unwrap();
    GLayer {
        w: filled(3, 2, seed).mapv(t),
        b: array![0.1, -0.2].mapv(t),
        gain: t(1.5),
        extra: vec![t(0.3), t(-0.7), t(0.2)],
    }
}

fn names<F, P: Params<F>>(p: &P) -> Vec<String> {
    p.buffers().into_iter().map(|b| b.name).collect()
}

/// A tuple struct of a list of buffers and a list of layers.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Pair(Vec<Vec<f64>>, [Layer; 2]);

#[test]
fn tuple_structs_and_lists_of_buffers() {
    use backprop::__private::Accumulate;
    let p = Pair(
        vec![vec![1.0, 2.0], vec![3.0]],
        [layer(2, 1, 0.0), layer(1, 1, 1.0)],
    );
    assert_eq!(
        names(&p),
        ["0.0", "0.1", "1.0.w", "1.0.b", "1.1.w", "1.1.b"]
    );
    let z = p.zero_like();
    assert_eq!(z.0, vec![vec![0.0, 0.0], vec![0.0]]);
    let mut acc = p.clone();
    acc.accumulate(p.clone());
    assert_eq!(acc.0, vec![vec![2.0, 4.0], vec![6.0]]);
    assert_eq!(acc.1[1].w, &p.1[1].w * 2.0);
    assert_eq!(p.to_flat().len(), 3 + 2 + 1 + 1 + 1);
    assert_eq!(p.with_flat(&p.to_flat()), p);
}

// ---- zero_like, Accumulate -----------------------------------------------------

#[test]
fn zero_like_keeps_every_shape() {
    let m = model();
    let z = m.zero_like();
    assert_eq!(z.layers.len(), 3);
    for (a, b) in z.layers.iter().zip(&m.layers) {
        assert_eq!(a.w.shape(), b.w.shape());
        assert_eq!(a.b.shape(), b.b.shape());
        assert!(a.w.iter().chain(&a.b).all(|&v| v == 0.0));
    }
    let f = Fixed {
        layers: [layer(2, 3, 0.0), layer(3, 3, 1.0), layer(3, 1, 2.0)],
    };
    let zf = f.zero_like();
    assert_eq!(zf.layers[2].w.shape(), [3, 1]);
    assert!(
        zf.layers
            .iter()
            .all(|l| l.w.sum() == 0.0 && l.b.sum() == 0.0)
    );
    let n = nested();
    let zn = n.zero_like();
    assert_eq!(zn.head.w.shape(), n.head.w.shape());
    assert_eq!((zn.scale, zn.offsets.clone()), (0.0, vec![0.0; 2]));
}

#[test]
fn accumulate_adds_layer_by_layer() {
    use backprop::__private::Accumulate;
    let mut acc = model();
    let add = model();
    acc.accumulate(add.clone());
    for (a, m) in acc.layers.iter().zip(&model().layers) {
        assert_eq!(a.w, &m.w * 2.0);
        assert_eq!(a.b, &m.b * 2.0);
    }
    let mut f = Fixed {
        layers: [layer(2, 3, 0.0), layer(3, 3, 1.0), layer(3, 1, 2.0)],
    };
    let once = f.clone();
    f.accumulate(once.clone());
    assert_eq!(f.layers[1].w, &once.layers[1].w * 2.0);
    let mut n = nested();
    n.accumulate(nested());
    assert_eq!(n.head.b, &nested().head.b * 2.0);
    assert_eq!((n.scale, n.offsets), (2.0 * 0.8, vec![0.2, -0.6]));
}

#[test]
#[should_panic(expected = "a list's cotangent has 2 elements, the list it is added into 3")]
fn accumulating_a_shorter_list_names_both_lengths() {
    use backprop::__private::Accumulate;
    let mut m = model();
    let mut short = model();
    short.layers.pop();
    m.accumulate(short);
}

// ---- Params: names, counts, optimizers, state, clipping, buckets --------------

#[test]
fn params_name_every_tensor_of_every_layer() {
    let m = model();
    assert_eq!(
        names(&m),
        [
            "layers.0.w",
            "layers.0.b",
            "layers.1.w",
            "layers.1.b",
            "layers.2.w",
            "layers.2.b"
        ]
    );
    assert_eq!(Params::<f64>::num_scalars(&m), 12 + 4 + 16 + 4 + 8 + 2);
    assert_eq!(
        Params::<f64>::shapes(&m)[4],
        ("layers.2.w".to_string(), vec![4, 2])
    );

    let f = Fixed {
        layers: [layer(2, 3, 0.0), layer(3, 3, 1.0), layer(3, 1, 2.0)],
    };
    assert_eq!(names(&f)[4..], ["layers.2.w", "layers.2.b"]);
    assert_eq!(Params::<f64>::num_scalars(&f), 9 + 12 + 4);

    let n = nested();
    assert_eq!(
        names(&n),
        ["enc.w", "enc.b", "head.w", "head.b", "scale", "offsets"]
    );
    // A buffer of floats stays one buffer (not one per float).
    assert_eq!(
        Params::<f64>::shapes(&n)[5],
        ("offsets".to_string(), vec![2])
    );
    assert_eq!(
        Params::<f64>::shapes(&vec![1.0f64, 2.0]),
        [(String::new(), vec![2])]
    );
    // And a list of buffers is one per buffer, as before.
    assert_eq!(names(&vec![vec![1.0f64], vec![2.0]]), ["0", "1"]);
}

#[test]
fn sgd_steps_every_layer_of_a_vec_model() {
    let mut m = model();
    let before = m.clone();
    // A gradient with a different value in every element of every layer.
    let mut g = m.zero_like();
    for (k, l) in g.layers.iter_mut().enumerate() {
        l.w.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (k * 100 + i) as f64 * 0.01 - 0.3);
        l.b.fill(k as f64 + 1.0);
    }
    let mut opt = Sgd::<f64>::new(SgdConfig {
        lr: 0.5,
        ..SgdConfig::default()
    });
    opt.step(&mut m, &g).expect("same layout");
    for k in 0..3 {
        assert_eq!(m.layers[k].w, &before.layers[k].w - &(&g.layers[k].w * 0.5));
        assert_eq!(m.layers[k].b, &before.layers[k].b - &(&g.layers[k].b * 0.5));
    }
}

#[test]
fn adamw_steps_every_layer_and_its_state_round_trips_by_name() {
    let mut m = model();
    let before = m.clone();
    let g = model_grad(&m, &inputs(), &targets()).1;
    let cfg = AdamWConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::<f64>::new(cfg);
    opt.step(&mut m, &g).expect("same layout");
    // First step: m̂ = g, v̂ = g², so w ← w − lr·g/(|g| + ε) − lr·λ·w.
    for k in 0..3 {
        let (w0, gw, w1) = (&before.layers[k].w, &g.layers[k].w, &m.layers[k].w);
        for ((&w0, &gw), &w1) in w0.iter().zip(gw).zip(w1) {
            let expected = w0 - 0.01 * gw / (gw.abs() + 1e-8) - 0.01 * 0.1 * w0;
            assert!(
                (w1 - expected).abs() < 1e-12,
                "layer {k}: {w1} vs {expected}"
            );
            assert_ne!(w1, w0, "every weight of layer {k} moves");
        }
        assert!(
            m.layers[k]
                .b
                .iter()
                .zip(&before.layers[k].b)
                .all(|(a, b)| a != b)
        );
    }

    // The state is saved under the parameters' names and loads into a fresh optimizer.
    let sd = opt.state_dict();
    let state_names: Vec<&str> = sd.buffers.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(state_names.len(), 12);
    assert_eq!(
        state_names[..4],
        [
            "layers.0.w.m",
            "layers.0.w.v",
            "layers.0.b.m",
            "layers.0.b.v"
        ]
    );
    assert_eq!(state_names[11], "layers.2.b.v");
    let restored = StateDict::<f64>::from_bytes(&sd.to_bytes()).expect("round trip");
    assert_eq!(restored.buffers, sd.buffers);
    let mut fresh = AdamW::<f64>::new(cfg);
    fresh
        .load_state_dict(&m, &restored)
        .expect("same names and shapes");
    // Both take the same second step.
    let mut m2 = m.clone();
    opt.step(&mut m, &g).unwrap();
    fresh.step(&mut m2, &g).unwrap();
    assert_eq!(m, m2);
    // A model with a layer missing is refused, with both counts.
    let mut short = m.clone();
    short.layers.pop();
    let err = fresh.load_state_dict(&short, &restored).unwrap_err();
    assert!(format!("{err}").contains("expected 8 buffers"), "{err}");
    assert!(format!("{err}").contains("found 12"), "{err}");
}

#[test]
fn clipping_and_buckets_see_every_layer() {
    let g = model_grad(&model(), &inputs(), &targets()).1;
    let norm2: f64 = g
        .layers
        .iter()
        .map(|l| l.w.iter().chain(&l.b).map(|v| v * v).sum::<f64>())
        .sum();
    assert!((backprop::clip::global_norm(&g) - norm2.sqrt()).abs() < 1e-12);
    let mut b = Buckets::<f64>::plan(&g, 7);
    assert_eq!(b.num_scalars(), Params::<f64>::num_scalars(&g));
    b.pack(&g);
    for i in 0..b.len() {
        let (s, r) = b.io(i);
        r.copy_from_slice(s);
    }
    let mut back = g.zero_like();
    b.unpack(&mut back, 0.5);
    for (a, l) in back.layers.iter().zip(&g.layers) {
        assert_eq!(a.w, &l.w * 0.5);
        assert_eq!(a.b, &l.b * 0.5);
    }
}

// ---- gradients of a Vec<Layer> model, through the layers' own companions -------

/// A hidden layer: tanh(x·W + b).
#[grad(l, x)]
fn hidden(l: &Layer, x: &Array2<f64>) -> Array2<f64> {
    (x.dot(&l.w) + &l.b).tanh()
}

/// The output layer and the loss: mean squared error of h·W + b against y.
#[grad(l, h)]
fn head(l: &Layer, h: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let e = h.dot(&l.w) + &l.b - y;
    (&e * &e).mean().unwrap()
}

fn inputs() -> Array2<f64> {
    filled(5, 3, 3.0)
}

fn targets() -> Array2<f64> {
    filled(5, 2, 4.0)
}

fn model_loss(m: &Model, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let (last, hidden_layers) = m.layers.split_last().expect("a layer");
    let mut h = x.clone();
    for l in hidden_layers {
        h = hidden(l, &h);
    }
    head(last, &h, y)
}

/// The loss and its gradient, a `Model`, times `d`: the activations kept forward, the
/// head's gradient pulled back through each hidden layer's VJP in reverse.
fn model_vjp(m: &Model, x: &Array2<f64>, y: &Array2<f64>, d: f64) -> (f64, Model) {
    let (last, hidden_layers) = m.layers.split_last().expect("a layer");
    let mut acts = vec![x.clone()];
    for l in hidden_layers {
        let next = hidden(l, acts.last().expect("an input"));
        acts.push(next);
    }
    let (loss, g_head) = head::vjp(last, acts.last().expect("an input"), y, d);
    let mut grads = vec![g_head.l];
    let mut d_h = g_head.h;
    for (l, a) in hidden_layers.iter().zip(&acts).rev() {
        let (_, g) = hidden_vjp(l, a, d_h);
        grads.push(g.l);
        d_h = g.x;
    }
    grads.reverse();
    (loss, Model { layers: grads })
}

fn model_grad(m: &Model, x: &Array2<f64>, y: &Array2<f64>) -> (f64, Model) {
    model_vjp(m, x, y, 1.0)
}

#[test]
fn a_vec_model_gradient_checks_through_grad_value() {
    let m = model();
    let (x, y) = (inputs(), targets());
    let (loss, g) = model_grad(&m, &x, &y);
    assert_eq!(loss, model_loss(&m, &x, &y));
    assert_eq!(g.flat_len(), Params::<f64>::num_scalars(&m));
    // GradValue flattens layer by layer, in the order Params names them.
    let flat_params: Vec<f64> = m.buffers().iter().flat_map(|b| b.values.to_vec()).collect();
    assert_eq!(m.to_flat(), flat_params);
    assert_eq!(m.with_flat(&m.to_flat()), m);
    let report = backprop::gradcheck::check(
        &[("m", m.to_flat())],
        |p| model_loss(&m.with_flat(&p[0]), &x, &y),
        |p| vec![model_grad(&m.with_flat(&p[0]), &x, &y).1.to_flat()],
        |p, d| vec![model_vjp(&m.with_flat(&p[0]), &x, &y, d).1.to_flat()],
        Options::default(),
    );
    assert!(report.passed(), "{report}");
    assert_eq!(report.args[0].len, 46);
}

#[test]
fn training_a_vec_model_lowers_its_loss() {
    let mut m = model();
    let (x, y) = (inputs(), targets());
    let first = model_loss(&m, &x, &y);
    let mut opt = AdamW::<f64>::new(AdamWConfig {
        lr: 0.02,
        ..AdamWConfig::default()
    });
    for _ in 0..100 {
        let (_, g) = model_grad(&m, &x, &y);
        opt.step(&mut m, &g).unwrap();
    }
    assert!(model_loss(&m, &x, &y) < 0.2 * first);
}

// ---- #[grad] on nested and boxed fields ------------------------------------------

fn nested() -> Nested {
    Nested {
        enc: layer(3, 4, 5.0),
        head: Box::new(layer(4, 2, 6.0)),
        scale: 0.8,
        offsets: vec![0.1, -0.3],
    }
}

#[grad(p)]
fn nested_loss(p: &Nested, x: &Array2<f64>) -> f64 {
    let h = (x.dot(&p.enc.w) + &p.enc.b).tanh();
    let out = h.dot(&p.head.w) + &p.head.b;
    let mut s = (&out * &out).mean().unwrap() * p.scale;
    for i in 0..p.offsets.len() {
        s += p.offsets[i] * p.offsets[i] * (i as f64 + 1.0);
    }
    s
}

#[test]
fn nested_and_boxed_fields_gradcheck() {
    let p = nested();
    let x = inputs();
    let report = gradcheck!(nested_loss(p = &p, x = const &x));
    assert!(report.passed(), "{report}");
    assert_eq!(report.args[0].len, 12 + 4 + 8 + 2 + 1 + 2);
    let (_, g) = nested_loss_grad(&p, &x);
    // d/d offsets[i] = 2·offsets[i]·(i + 1), by hand.
    assert_eq!(g.p.offsets, vec![0.2, -1.2]);
    // The gradient is a `Nested`, and an optimizer steps the struct with it.
    let mut q = p.clone();
    let mut opt = Sgd::<f64>::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    });
    opt.step(&mut q, &g.p).unwrap();
    assert_eq!(q.head.w, &p.head.w - &(&g.p.head.w * 0.1));
    assert_eq!(q.scale, p.scale - 0.1 * g.p.scale);
}

/// The boxed head lent whole to layer functions (`head(&p.head, ..)`, a `&Box<Layer>`
/// the call derefs): the callee's `Layer` cotangent goes into the box. (Before: a type
/// error out of the expansion, "expected `Box<Layer>`, found `Layer`".)
#[grad(p)]
fn boxed_head_lent(p: &Nested, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let h = hidden(&p.enc, x);
    head(&p.head, &h, y)
}

#[grad(p)]
fn boxed_head_inline(p: &Nested, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let h = (x.dot(&p.enc.w) + &p.enc.b).tanh();
    let e = h.dot(&p.head.w) + &p.head.b - y;
    (&e * &e).mean().unwrap()
}

#[test]
fn a_boxed_field_lent_to_a_layer_function() {
    let (p, x) = (nested(), inputs());
    let y = Array2::from_elem((5, 2), 0.25);
    let (l, g) = boxed_head_lent_grad(&p, &x, &y);
    let (l0, g0) = boxed_head_inline_grad(&p, &x, &y);
    assert!((l - l0).abs() < 1e-15);
    assert!((&g.p.head.w - &g0.p.head.w).iter().all(|v| v.abs() < 1e-15));
    assert!((&g.p.head.b - &g0.p.head.b).iter().all(|v| v.abs() < 1e-15));
    assert!((&g.p.enc.w - &g0.p.enc.w).iter().all(|v| v.abs() < 1e-15));
    gradcheck!(boxed_head_lent(p = &p, x = const &x, y = const &y)).assert();
}

// ---- generic Layer<T> at f32 and f64 ----------------------------------------------

/// What generic training code needs of `GModel<T>` follows from `T: backprop::Real`.
fn zeros_and_count<T: Real>(m: &GModel<T>) -> (GModel<T>, usize) {
    (m.zero_like(), m.num_scalars())
}

#[grad(p)]
fn glayer_loss<T: Real>(p: &GLayer<T>, x: &Array2<T>) -> T {
    let h = (x.dot(&p.w) + &p.b).tanh();
    let mut s = (&h * &h).sum() * p.gain;
    for i in 0..p.extra.len() {
        s += p.extra[i] * p.extra[i];
    }
    s
}

/// The same with the bounds a user writes for ndarray code.
#[grad(p)]
fn glayer_loss_ndarray_bounds<T>(p: &GLayer<T>, x: &Array2<T>) -> T
where
    T: num_traits::Float + ndarray::LinalgScalar + ndarray::ScalarOperand,
{
    let h = (x.dot(&p.w) + &p.b).tanh();
    (&h * &h).sum() * p.gain
}

fn generic_traits<T: Real>() {
    let l: GLayer<T> = glayer(0.5);
    let z = l.zero_like();
    assert!(
        z.w.iter()
            .chain(&z.b)
            .chain(&z.extra)
            .all(|v| *v == T::zero())
    );
    assert_eq!(z.gain, T::zero());
    let mut acc = l.clone();
    backprop::__private::Accumulate::accumulate(&mut acc, l.clone());
    assert_eq!(
        acc.extra,
        l.extra.iter().map(|&v| v + v).collect::<Vec<T>>()
    );
    assert_eq!(names(&l), ["w", "b", "gain", "extra"]);
    let m = GModel {
        layers: vec![glayer::<T>(0.0), glayer::<T>(1.0)],
    };
    assert_eq!(names(&m)[4..6], ["layers.1.w", "layers.1.b"]);
    let (zm, n) = zeros_and_count(&m);
    assert_eq!(n, 2 * (6 + 2 + 1 + 3));
    assert_eq!(zm.layers[1].w.shape(), [3, 2]);
    assert_eq!(m.with_flat(&m.to_flat()), m);

    // A step and a state round trip in T.
    let x: Array2<T> = filled(4, 3, 2.0).mapv(|v| T::from(v).unwrap());
    let mut p = l.clone();
    let (_, g) = glayer_loss_grad(&p, &x);
    let mut opt = AdamW::<T>::default();
    opt.step(&mut p, &g.p).unwrap();
    assert!(p.w.iter().zip(&l.w).all(|(a, b)| a != b));
    assert!(p.extra.iter().zip(&l.extra).all(|(a, b)| a != b));
    assert_ne!(p.gain, l.gain);
    let sd = opt.state_dict();
    assert_eq!(sd.buffers[0].name, "w.m");
    let back = StateDict::<T>::from_bytes(&sd.to_bytes()).unwrap();
    let mut fresh = AdamW::<T>::default();
    fresh.load_state_dict(&p, &back).unwrap();
    assert_eq!(fresh.state_dict().buffers, sd.buffers);
}

#[test]
fn generic_layer_traits_at_f32_and_f64() {
    generic_traits::<f32>();
    generic_traits::<f64>();
}

#[test]
fn generic_layer_gradients_at_f64_and_f32() {
    let p64: GLayer<f64> = glayer(0.5);
    let x64 = filled(4, 3, 2.0);
    let report = gradcheck!(glayer_loss(p = &p64, x = const &x64));
    assert!(report.passed(), "{report}");
    let report = gradcheck!(glayer_loss_ndarray_bounds(p = &p64, x = const &x64));
    assert!(report.passed(), "{report}");

    // f32 against f64, within f32's precision.
    let p32: GLayer<f32> = glayer(0.5);
    let x32 = x64.mapv(|v| v as f32);
    let (v64, g64) = glayer_loss_grad(&p64, &x64);
    let (v32, g32) = glayer_loss_grad(&p32, &x32);
    assert!((f64::from(v32) - v64).abs() <= 1e-5 * v64.abs());
    for (a, b) in g32.p.to_flat().iter().zip(g64.p.to_flat()) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // And the f32 instance checks in f32 (f32 step and tolerances).
    let report = gradcheck!(glayer_loss(p = &p32, x = const &x32));
    assert!(report.passed(), "{report}");
    assert_eq!(report.options, Options::f32());
}

// ---- a struct holding a list of layers as a #[grad] argument ---------------------

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Inner {
    layers: Vec<Layer>,
    bias: f64,
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Outer {
    inner: Inner,
    scale: f64,
}

#[grad(q)]
fn inner_bias(q: &Inner, x: f64) -> f64 {
    q.bias * x
}

/// The callee's gradient, an `Inner` with its list of layers, is accumulated into the
/// caller's `d_p.inner` (elementwise through the list).
#[grad(p)]
fn outer_loss(p: &Outer, x: f64) -> f64 {
    p.scale * inner_bias(&p.inner, x)
}

#[test]
fn a_struct_with_a_list_of_layers_is_a_grad_argument() {
    let p = Outer {
        inner: Inner {
            layers: model().layers,
            bias: 0.5,
        },
        scale: 3.0,
    };
    let (v, g) = outer_loss_grad(&p, 2.0);
    assert_eq!(v, 3.0);
    assert_eq!(g.p.inner.bias, 6.0);
    assert_eq!(g.p.scale, 1.0);
    // The layers take no part: zeros of their shapes.
    assert_eq!(
        g.p.inner.layers,
        p.inner
            .layers
            .iter()
            .map(|l| l.zero_like())
            .collect::<Vec<_>>()
    );
    gradcheck!(outer_loss(p = &p, x = const 2.0)).assert();
}

/// A tied head, as the GPT's: the logits read `wᵀ`, so the first cotangent reaching
/// `d_p.w` is a transposed (column-major) array.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Tied {
    w: Array2<f64>,
}

#[grad(p)]
fn tied_head(p: &Tied, h: &Array2<f64>) -> f64 {
    let logits = h.dot(&p.w.t());
    (&logits * &logits).sum()
}

#[test]
fn a_transposed_cotangent_pairs_with_its_parameter_element_for_element() {
    // Before: the gradient kept the moved-in cotangent's column-major layout, and
    // `Params` (memory order) paired w[0][1] with d_w[1][0] in every optimizer: the
    // gradient norm was right and the update scrambled (the GPT trained slower than
    // PyTorch from its first step).
    let p = Tied {
        w: array![[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]],
    };
    let h = array![[0.5, -1.0, 2.0]];
    let (_, g) = tied_head_grad(&p, &h);
    // L = Σ (h·wᵀ)², d_w = 2 (h·wᵀ)ᵀ·h: logits = [-0.5, 5.5].
    let expected = array![[-0.5, 1.0, -2.0], [5.5, -11.0, 22.0]];
    assert_eq!(g.p.w, expected);
    assert!(g.p.w.is_standard_layout());
    let mut flat = Vec::new();
    g.p.visit("", &mut |b| flat.extend_from_slice(b.values));
    assert_eq!(flat, expected.iter().copied().collect::<Vec<_>>());
    // SGD with lr 1 moves each weight by its own gradient.
    let mut q = p.clone();
    let mut sgd = Sgd::new(SgdConfig {
        lr: 1.0,
        ..SgdConfig::default()
    });
    sgd.step(&mut q, &g.p).unwrap();
    assert_eq!(q.w, &p.w - &expected);
}

#[test]
fn params_hand_out_row_major_values_whatever_the_layout() {
    // A column-major parameter: `visit_mut` makes it row-major (the same values), so an
    // optimizer pairs it with a row-major gradient element for element.
    let mut p = Tied {
        w: array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].t().to_owned(),
    };
    assert!(!p.w.is_standard_layout());
    let mut seen = Vec::new();
    p.visit_mut("", &mut |b| seen.extend_from_slice(b.values));
    assert_eq!(seen, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    assert!(p.w.is_standard_layout());
    assert_eq!(p.w, array![[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]);
    // Read only, a column-major array is refused by name.
    let q = Tied {
        w: array![[1.0, 2.0], [3.0, 4.0]].t().to_owned(),
    };
    let err = std::panic::catch_unwind(|| q.visit("p", &mut |_| {})).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("`p.w`") && msg.contains("row-major"), "{msg}");
}
