//! Second order of ndarray code (issue 18): `f_hvp(args.., v..)` of a function over
//! arrays, the reverse pass of its tangent program, whose array operations' tangents are
//! array operations themselves (`ir::tangent`) and whose elementwise and runtime-op
//! tangents pull back through `runtime/src/rules/second_tensor.rs`. Each function is
//! checked against central differences of its gradient along the direction (f64, points
//! away from kinks), its gradient against `f_grad`, and, where it is short, against a
//! Hessian written out by hand.
#![allow(clippy::float_cmp)]

use crate::support::close;
use backprop::grad;
use backprop::ops::{
    XentOptions, gelu, gelu_exact, log_softmax, relu, sigmoid, silu, softmax,
    softmax_cross_entropy, softplus, tanh,
};
use ndarray::{Array, Array1, Array2, Axis, Dimension, ShapeBuilder, array, s};

const H: f64 = 1e-5;

/// Deterministic, irregular values of a shape (no ties, no zeros).
fn fill<Sh: ShapeBuilder<Dim = D>, D: Dimension>(shape: Sh, seed: f64) -> Array<f64, D> {
    let mut k = 0.0;
    Array::from_shape_fn(shape, |_| {
        k += 1.0;
        ((k * 1.618 + seed) * 2.399).sin() * 0.9 + 0.05 * k.cos()
    })
}

/// `x + h·v`.
fn at<D: Dimension>(x: &Array<f64, D>, v: &Array<f64, D>, h: f64) -> Array<f64, D> {
    x + &(v * h)
}

/// `H·v` against the central difference `(∇f(x + hv) − ∇f(x − hv)) / 2h`, element by
/// element, relative to the larger of the two magnitudes and 1.
fn agree<D: Dimension>(
    hv: &Array<f64, D>,
    plus: &Array<f64, D>,
    minus: &Array<f64, D>,
    what: &str,
) {
    assert_eq!(hv.shape(), plus.shape(), "{what}: shapes");
    for ((h, p), m) in hv.iter().zip(plus).zip(minus) {
        close(*h, (p - m) / (2.0 * H), 2e-7, what);
    }
}

// ---- elementwise methods, broadcasting, reductions -----------------------------------

#[grad]
fn elementwise(x: &Array2<f64>, y: &Array1<f64>) -> f64 {
    let a = (x * 0.5).tanh() + y;
    let b = (&a * &a + 1.0).sqrt();
    let c = b.ln() - x.sin() / (y.exp() + 2.0);
    let d = -(&c * x) + x.cos() * 0.3 - y.mapv(|v| v.sinh() / 4.0);
    let e = (1.0 - &d).recip() * x.exp2() / (y * y + 1.5);
    e.sum() + d.mean().unwrap() * 2.0 + (x - y).mapv(|v| v.atan()).sum()
}

#[test]
fn elementwise_methods_broadcasting_and_reductions() {
    let (x, y) = (fill((3, 4), 0.1) * 0.7, fill(4, 0.2) * 0.5);
    let (vx, vy) = (fill((3, 4), 3.3), fill(4, 4.4));
    let (value, g, hv) = elementwise_hvp(&x, &y, &vx, &vy);
    assert_eq!(value, elementwise(&x, &y));
    let (_, g_ref) = elementwise_grad(&x, &y);
    assert_eq!(g.x, g_ref.x);
    assert_eq!(g.y, g_ref.y);
    let (_, p) = elementwise_grad(&at(&x, &vx, H), &at(&y, &vy, H));
    let (_, m) = elementwise_grad(&at(&x, &vx, -H), &at(&y, &vy, -H));
    agree(&hv.x, &p.x, &m.x, "H·v, x");
    agree(&hv.y, &p.y, &m.y, "H·v, y");
}

#[grad(w, v)]
fn products(x: &Array2<f64>, w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let h = x.dot(w);
    let r = h.dot(v);
    let g = w.t().dot(&x.t()).dot(&h).sum_axis(Axis(1));
    let q = v.dot(v);
    (&r * &r).sum() / (q + 1.0) + g.mean_axis(Axis(0)).unwrap().sum() + (&h / (&g + 5.0)).sum()
}

#[test]
fn matrix_and_vector_products() {
    let (x, w, v) = (fill((5, 3), 0.1), fill((3, 4), 0.2), fill(4, 0.3));
    let (vw, vv) = (fill((3, 4), 1.2), fill(4, 1.3));
    let (value, g, hv) = products_hvp(&x, &w, &v, &vw, &vv);
    assert_eq!(value, products(&x, &w, &v));
    let (_, g_ref) = products_grad(&x, &w, &v);
    assert_eq!(g.w, g_ref.w);
    let (_, p) = products_grad(&x, &at(&w, &vw, H), &at(&v, &vv, H));
    let (_, m) = products_grad(&x, &at(&w, &vw, -H), &at(&v, &vv, -H));
    agree(&hv.w, &p.w, &m.w, "H·v, w");
    agree(&hv.v, &p.v, &m.v, "H·v, v");
}

/// `f(w) = Σ (w·w)ᵀ`'s Hessian by hand: `∂²/∂w_ij ∂w_kl` of `Σ_ab Σ_c w_ac w_cb` is
/// `δ_jk + δ_il` summed appropriately, so `(H·v)_ij = Σ_l v_jl + Σ_k v_ki` for a square
/// `w`.
#[grad]
fn square_sum(w: &Array2<f64>) -> f64 {
    w.dot(w).sum()
}

#[test]
fn a_product_of_an_array_with_itself_by_hand() {
    let w = fill((3, 3), 0.4);
    let v = fill((3, 3), 2.5);
    let (_, _, hv) = square_sum_hvp(&w, &v);
    for i in 0..3 {
        for j in 0..3 {
            let expected = v.row(j).sum() + v.column(i).sum();
            close(hv.w[[i, j]], expected, 1e-14, "(H·v)_ij");
        }
    }
}

#[grad]
fn views(x: &Array2<f64>) -> f64 {
    let a = x.slice(s![1.., ..;2]).to_owned();
    let b = x.select(Axis(0), &[2, 0, 2]);
    let c = b.t().as_standard_layout().into_owned().insert_axis(Axis(0));
    let d = c.into_shape_with_order((4, 3)).unwrap();
    let e = x.row(1).to_owned() * x.column(2).sum();
    (&a * &a).sum() * d.mapv(|v| v.exp()).sum() + (e.mapv(|v| v.sin())).sum()
}

#[test]
fn slices_gathers_and_reshapes() {
    let x = fill((3, 4), 0.7) * 0.8;
    let vx = fill((3, 4), 8.1);
    let (value, _, hv) = views_hvp(&x, &vx);
    assert_eq!(value, views(&x));
    let (_, p) = views_grad(&at(&x, &vx, H));
    let (_, m) = views_grad(&at(&x, &vx, -H));
    agree(&hv.x, &p.x, &m.x, "H·v, x");
}

// ---- the runtime's ops: ReLU, sigmoid, tanh, softmax cross-entropy --------------------

#[grad(w1, b1, w2)]
fn classifier(
    x: &Array2<f64>,
    labels: &[usize],
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
) -> f64 {
    let h = relu(&(x.dot(w1) + b1));
    let g = sigmoid(&h) + tanh(&h);
    let logits = g.dot(w2);
    let opts = XentOptions {
        ignore_index: Some(9),
        label_smoothing: 0.1,
    };
    softmax_cross_entropy(&logits, labels, opts)
}

#[test]
fn relu_sigmoid_tanh_and_cross_entropy_with_ignored_rows_and_smoothing() {
    let x = fill((6, 3), 0.1);
    let labels = [0usize, 3, 9, 1, 2, 9];
    let (w1, b1, w2) = (
        fill((3, 5), 0.2),
        fill(5, 0.3) * 0.3 + 0.2,
        fill((5, 4), 0.4),
    );
    let (v1, vb, v2) = (fill((3, 5), 2.2), fill(5, 2.3), fill((5, 4), 2.4));
    // Away from ReLU's kink: no pre-activation within the step of 0.
    let z = x.dot(&w1) + &b1;
    assert!(z.iter().all(|z| z.abs() > 1e-3), "{z}");
    let (value, g, hv) = classifier_hvp(&x, &labels, &w1, &b1, &w2, &v1, &vb, &v2);
    assert_eq!(value, classifier(&x, &labels, &w1, &b1, &w2));
    let (_, g_ref) = classifier_grad(&x, &labels, &w1, &b1, &w2);
    assert_eq!(g.w2, g_ref.w2);
    assert_eq!(g.w1, g_ref.w1);
    let (_, p) = classifier_grad(
        &x,
        &labels,
        &at(&w1, &v1, H),
        &at(&b1, &vb, H),
        &at(&w2, &v2, H),
    );
    let (_, m) = classifier_grad(
        &x,
        &labels,
        &at(&w1, &v1, -H),
        &at(&b1, &vb, -H),
        &at(&w2, &v2, -H),
    );
    agree(&hv.w1, &p.w1, &m.w1, "H·v, w1");
    agree(&hv.b1, &p.b1, &m.b1, "H·v, b1");
    agree(&hv.w2, &p.w2, &m.w2, "H·v, w2");
}

#[grad(z)]
fn xent(z: &Array2<f64>, labels: &[usize]) -> f64 {
    softmax_cross_entropy(z, labels, XentOptions::default())
}

/// The Hessian of the mean softmax cross-entropy in the logits is block diagonal, each
/// row's block `(diag(p) − ppᵀ) / n`, whatever the labels.
#[test]
fn softmax_cross_entropy_hessian_is_diag_p_minus_ppt_per_row() {
    let z = array![[0.3, -1.2, 2.0, 0.1], [1.5, 0.2, -0.4, -2.2]];
    let labels = [2usize, 0];
    let (n, c) = z.dim();
    let p = backprop::ops::softmax(&z);
    for i in 0..n {
        for j in 0..c {
            let mut v = Array2::zeros((n, c));
            v[[i, j]] = 1.0;
            let (_, _, hv) = xent_hvp(&z, &labels, &v);
            for k in 0..n {
                for l in 0..c {
                    let expected = if k != i {
                        0.0
                    } else {
                        let diag = if l == j { p[[i, j]] } else { 0.0 };
                        (diag - p[[i, j]] * p[[i, l]]) / n as f64
                    };
                    close(hv.z[[k, l]], expected, 1e-15, "H of softmax cross-entropy");
                }
            }
        }
    }
}

#[grad(w)]
fn activations(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let z = x.dot(w);
    let a = gelu(&z) + gelu_exact(&z) * 0.5 + silu(&z) - softplus(&z) * 0.3;
    let p = softmax(&a);
    let l = log_softmax(&(&a * 2.0));
    (&p * &z).sum() + (&l * &l).sum() * 0.1
}

#[test]
fn gelu_silu_softplus_softmax_and_log_softmax() {
    let (x, w, v) = (fill((4, 3), 0.8), fill((3, 5), 0.9), fill((3, 5), 1.9));
    let (value, _, hv) = activations_hvp(&x, &w, &v);
    assert_eq!(value, activations(&x, &w));
    let (_, p) = activations_grad(&x, &at(&w, &v, H));
    let (_, m) = activations_grad(&x, &at(&w, &v, -H));
    agree(&hv.w, &p.w, &m.w, "H·v, w");
}

/// Elementwise methods that read float constants (README's ReLU spelling `v.max(0.0)`,
/// an integer power, `powf`, `clamp` and `min` with a captured float).
#[grad(w)]
fn with_constants(x: &Array2<f64>, w: &Array2<f64>, alpha: f64) -> f64 {
    let h = x.dot(w).mapv(|v| v.max(0.0));
    let g = h.mapv(|v| v.powi(3)) + h.mapv(|v| (v + 1.0).powf(1.5));
    let k = (&g - 0.2).mapv(|v| v.clamp(-0.3, alpha)) + g.mapv(|v| v.min(0.25));
    (&k * &g).sum() + (w - 0.1).mapv(|v| v.powi(2)).mean().unwrap()
}

#[test]
fn max_powi_powf_clamp_and_min_with_constants() {
    let x = array![[0.3, -0.2], [0.5, 0.1], [-0.4, 0.7]];
    let w = array![[0.1, 0.9, -0.3], [0.4, -0.5, 0.6]];
    let v = array![[0.3, -0.1, 0.2], [0.1, 0.5, -0.4]];
    // Away from the kinks of max, clamp and min.
    let (_, _, hv) = with_constants_hvp(&x, &w, 0.4, &v);
    let (_, p) = with_constants_grad(&x, &at(&w, &v, H), 0.4);
    let (_, m) = with_constants_grad(&x, &at(&w, &v, -H), 0.4);
    agree(&hv.w, &p.w, &m.w, "H·v, w");
}

/// Generic code over `T: Real` (no `&T: Neg`): the quotient rule's `−(y/b)·t_b` is a
/// subtraction, not a negation (it once failed to compile, E0600).
#[grad]
fn generic_quotient<T: backprop::Real>(x: &Array1<T>, a: T) -> T {
    (x / a).sum() + (x * x / a).sum()
}

#[test]
fn generic_code_dividing_by_a_differentiated_float() {
    let (x, a) = (array![1.0, 2.0, -0.5], 1.7);
    let (vx, va) = (array![0.3, -0.2, 0.9], -0.4);
    let (_, _, hv) = generic_quotient_hvp(&x, a, &vx, va);
    let (_, p) = generic_quotient_grad(&at(&x, &vx, H), a + H * va);
    let (_, m) = generic_quotient_grad(&at(&x, &vx, -H), a - H * va);
    agree(&hv.x, &p.x, &m.x, "H·v, x");
    close(hv.a, (p.a - m.a) / (2.0 * H), 2e-7, "H·v, a");
}

/// A view chosen by a branch whose other arm is constant has no tangent program (its
/// tangent would be a view of zeros): `f_grad` stays as it was (it once failed to
/// compile, E0308, through the zeros given to the constant arm).
#[grad(x)]
fn pick(x: &Array2<f64>, y: &Array2<f64>, flag: bool) -> f64 {
    let r = if flag { x.view() } else { y.view() };
    r.mapv(|v| v * v).sum()
}

#[test]
fn a_view_chosen_by_a_branch_keeps_its_gradient() {
    let (x, y) = (fill((2, 3), 0.1), fill((2, 3), 0.2));
    let (_, g) = pick_grad(&x, &y, true);
    assert_eq!(g.x, &x * 2.0);
    let (_, g) = pick_grad(&x, &y, false);
    assert_eq!(g.x, Array2::<f64>::zeros((2, 3)));
}

// ---- control flow and structs of arrays ----------------------------------------------

#[derive(backprop::Differentiable, Clone)]
struct Dense {
    w: Array2<f64>,
    b: Array1<f64>,
}

#[derive(backprop::Differentiable, Clone)]
struct Mlp {
    layers: Vec<Dense>,
    scale: f64,
}

#[grad(p)]
fn mlp_loss(p: &Mlp, x: &Array2<f64>, target: &Array2<f64>, deep: bool) -> f64 {
    let mut h = x.to_owned();
    for layer in &p.layers {
        h = (h.dot(&layer.w) + &layer.b).mapv(|v| v.tanh());
    }
    let out = if deep { &h * p.scale } else { h.clone() };
    let mut k = 0;
    let mut y = out;
    while k < 2 {
        y = &y * 0.5 + &h;
        k += 1;
    }
    let r = &y - target;
    (&r * &r).mean().unwrap()
}

fn mlp(seed: f64, scale: f64) -> Mlp {
    Mlp {
        layers: vec![
            Dense {
                w: fill((3, 4), seed + 0.1),
                b: fill(4, seed + 0.2),
            },
            Dense {
                w: fill((4, 2), seed + 0.3),
                b: fill(2, seed + 0.4),
            },
        ],
        scale,
    }
}

fn moved(p: &Mlp, v: &Mlp, h: f64) -> Mlp {
    Mlp {
        layers: p
            .layers
            .iter()
            .zip(&v.layers)
            .map(|(l, vl)| Dense {
                w: at(&l.w, &vl.w, h),
                b: at(&l.b, &vl.b, h),
            })
            .collect(),
        scale: p.scale + h * v.scale,
    }
}

#[test]
fn a_loop_over_layers_a_branch_and_a_while_in_a_struct_model() {
    let (x, target) = (fill((5, 3), 7.0), fill((5, 2), 8.0));
    let (p, v) = (mlp(0.0, 1.3), mlp(5.0, -0.7));
    for deep in [true, false] {
        let (value, g, hv) = mlp_loss_hvp(&p, &x, &target, deep, &v);
        assert_eq!(value, mlp_loss(&p, &x, &target, deep));
        let (_, g_ref) = mlp_loss_grad(&p, &x, &target, deep);
        for (a, b) in g.p.layers.iter().zip(&g_ref.p.layers) {
            assert_eq!(a.w, b.w);
        }
        let (_, plus) = mlp_loss_grad(&moved(&p, &v, H), &x, &target, deep);
        let (_, minus) = mlp_loss_grad(&moved(&p, &v, -H), &x, &target, deep);
        for k in 0..2 {
            let (a, b, c) = (&hv.p.layers[k], &plus.p.layers[k], &minus.p.layers[k]);
            agree(&a.w, &b.w, &c.w, "H·v, w");
            agree(&a.b, &b.b, &c.b, "H·v, b");
        }
        let fd = (plus.p.scale - minus.p.scale) / (2.0 * H);
        close(hv.p.scale, fd, 2e-7, "H·v, scale");
    }
}

// ---- f32, and bad directions ----------------------------------------------------------

#[grad(w)]
fn logistic_f32(x: &Array2<f32>, labels: &[usize], w: &Array2<f32>) -> f32 {
    softmax_cross_entropy(&x.dot(w), labels, XentOptions::default()) + 0.01 * (w * w).sum()
}

#[grad(w)]
fn logistic_f64(x: &Array2<f64>, labels: &[usize], w: &Array2<f64>) -> f64 {
    softmax_cross_entropy(&x.dot(w), labels, XentOptions::default()) + 0.01 * (w * w).sum()
}

/// f32 code gets the same Hessian-vector product as its f64 twin, to f32's precision.
#[test]
fn f32_matches_its_f64_twin() {
    let (x, w, v) = (fill((8, 3), 0.5), fill((3, 4), 0.6), fill((3, 4), 0.7));
    let labels = [0usize, 1, 2, 3, 3, 2, 1, 0];
    let (_, _, hv64) = logistic_f64_hvp(&x, &labels, &w, &v);
    let f = |a: &Array2<f64>| a.mapv(|v| v as f32);
    let (_, _, hv32) = logistic_f32_hvp(&f(&x), &labels, &f(&w), &f(&v));
    for (a, b) in hv32.w.iter().zip(&hv64.w) {
        close(*a as f64, *b, 1e-5, "f32 H·v");
    }
}

#[test]
#[should_panic(
    expected = "hvp: the direction `v_w` of `w` (tangent): the argument is 3×4 but its tangent is 4×3"
)]
fn a_direction_of_another_shape_panics_naming_both() {
    let (x, w) = (fill((8, 3), 0.5), fill((3, 4), 0.6));
    let labels = [0usize; 8];
    let _ = logistic_f64_hvp(&x, &labels, &w, &fill((4, 3), 0.7));
}

// ---- calls of layers and helpers -------------------------------------------------------
// A layer (a `#[grad]` function returning an array) has a tangent program too, and a
// caller's tangent program calls it through `layer::tangent_forward`: the caller's `f_hvp`
// differentiates through it. A constant array passed to a layer gets zeros as tangent.

/// `x·w + b`, taking the input as a view.
#[grad]
fn affine(x: ndarray::ArrayView2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    x.dot(w) + b
}

/// `tanh`, consuming its input.
#[grad]
fn squash(z: Array2<f64>) -> Array2<f64> {
    z.mapv(f64::tanh)
}

/// A layer made of two other layers.
#[grad]
fn dense_layer(layer: &Dense, x: &Array2<f64>) -> Array2<f64> {
    squash(affine(x.view(), &layer.w, &layer.b))
}

/// A helper returning a float, reading a constant target.
#[grad]
fn squared_error(y: &Array2<f64>, target: &Array2<f64>) -> f64 {
    (y - target).mapv(|e| e * e).mean().unwrap()
}

#[grad(p)]
fn stacked_loss(p: &Mlp, x: &Array2<f64>, target: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in &p.layers {
        h = dense_layer(layer, &h);
    }
    squared_error(&(&h * p.scale), target)
}

#[test]
fn layers_called_in_a_loop_over_a_vec_of_structs() {
    let (x, target) = (fill((5, 3), 1.0), fill((5, 2), 2.0));
    let (p, v) = (mlp(0.3, 1.2), mlp(4.0, 0.6));
    let (value, g, hv) = stacked_loss_hvp(&p, &x, &target, &v);
    assert_eq!(value, stacked_loss(&p, &x, &target));
    let (_, g_ref) = stacked_loss_grad(&p, &x, &target);
    for (a, b) in g.p.layers.iter().zip(&g_ref.p.layers) {
        assert_eq!(a.w, b.w);
        assert_eq!(a.b, b.b);
    }
    let (_, plus) = stacked_loss_grad(&moved(&p, &v, H), &x, &target);
    let (_, minus) = stacked_loss_grad(&moved(&p, &v, -H), &x, &target);
    for k in 0..2 {
        let (a, b, c) = (&hv.p.layers[k], &plus.p.layers[k], &minus.p.layers[k]);
        agree(&a.w, &b.w, &c.w, "H·v through layers, w");
        agree(&a.b, &b.b, &c.b, "H·v through layers, b");
    }
    close(
        hv.p.scale,
        (plus.p.scale - minus.p.scale) / (2.0 * H),
        2e-7,
        "H·v through layers, scale",
    );
}

#[grad(w1, b1, w2, b2)]
fn two_layer_classifier(
    x: &Array2<f64>,
    labels: &[usize],
    w1: &Array2<f64>,
    b1: &Array1<f64>,
    w2: &Array2<f64>,
    b2: &Array1<f64>,
) -> f64 {
    // A constant input's view, then a local's view, into the same layer.
    let h = relu(&affine(x.view(), w1, b1));
    let z = affine(h.view(), w2, b2);
    softmax_cross_entropy(&z, labels, XentOptions::default())
}

#[test]
fn a_layer_on_a_constant_input_then_on_a_local_with_cross_entropy() {
    let x = fill((6, 3), 0.9);
    let labels = [0usize, 2, 1, 1, 0, 2];
    let (w1, b1, w2, b2) = (
        fill((3, 4), 1.1),
        fill(4, 1.2),
        fill((4, 3), 1.3),
        fill(3, 1.4),
    );
    let (vw1, vb1, vw2, vb2) = (
        fill((3, 4), 2.1),
        fill(4, 2.2),
        fill((4, 3), 2.3),
        fill(3, 2.4),
    );
    let (value, _, hv) =
        two_layer_classifier_hvp(&x, &labels, &w1, &b1, &w2, &b2, &vw1, &vb1, &vw2, &vb2);
    assert_eq!(value, two_layer_classifier(&x, &labels, &w1, &b1, &w2, &b2));
    let grad_at = |h: f64| {
        two_layer_classifier_grad(
            &x,
            &labels,
            &at(&w1, &vw1, h),
            &at(&b1, &vb1, h),
            &at(&w2, &vw2, h),
            &at(&b2, &vb2, h),
        )
        .1
    };
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.w1, &plus.w1, &minus.w1, "H·v, w1");
    agree(&hv.b1, &plus.b1, &minus.b1, "H·v, b1");
    agree(&hv.w2, &plus.w2, &minus.w2, "H·v, w2");
    agree(&hv.b2, &plus.b2, &minus.b2, "H·v, b2");
}

/// `x ⊙ x`, a layer.
#[grad]
fn square_layer(x: &Array1<f64>) -> Array1<f64> {
    x * x
}

#[grad]
fn sum_of_squares_by_a_layer(x: &Array1<f64>) -> f64 {
    square_layer(x).sum()
}

/// `Σ x²` has Hessian `2I`: `H·v = 2v` exactly, gradient `2x`.
#[test]
fn a_layer_s_hessian_by_hand() {
    let (x, v) = (array![0.5, -1.5, 2.0], array![1.0, 3.0, -0.25]);
    let (value, g, hv) = sum_of_squares_by_a_layer_hvp(&x, &v);
    assert_eq!(value, 6.5);
    assert_eq!(g.x, array![1.0, -3.0, 4.0]);
    assert_eq!(hv.x, array![2.0, 6.0, -0.5]);
}

/// A generic layer taking its input by value, applied twice.
#[grad]
fn sine_layer<T: backprop::Real>(x: Array2<T>, w: &Array2<T>) -> Array2<T> {
    x.dot(w).mapv(|v| v.sin())
}

#[grad(w)]
fn twice<T: backprop::Real>(x: &Array2<T>, w: &Array2<T>) -> T {
    let h = sine_layer(x.clone(), w);
    sine_layer(h, w).sum()
}

#[test]
fn a_generic_layer_consuming_its_input_applied_twice() {
    let (x, w, v) = (fill((4, 3), 3.1), fill((3, 3), 3.2), fill((3, 3), 3.3));
    let (_, g, hv) = twice_hvp(&x, &w, &v);
    assert_eq!(g.w, twice_grad(&x, &w).1.w);
    let (_, plus) = twice_grad(&x, &at(&w, &v, H));
    let (_, minus) = twice_grad(&x, &at(&w, &v, -H));
    agree(&hv.w, &plus.w, &minus.w, "H·v, w");
}

#[derive(backprop::Differentiable, Clone)]
struct Regressor {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array2<f64>,
}

#[grad]
impl Regressor {
    /// `tanh(x·w1 + b1)`.
    #[grad]
    fn hidden(&self, x: &Array2<f64>) -> Array2<f64> {
        (x.dot(&self.w1) + &self.b1).tanh()
    }

    #[grad(self)]
    fn loss(&self, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
        let e = self.hidden(x).dot(&self.w2) - y;
        (&e * &e).sum()
    }
}

#[test]
fn a_method_calling_a_method_that_returns_an_array() {
    let r = Regressor {
        w1: fill((3, 4), 5.1),
        b1: fill(4, 5.2),
        w2: fill((4, 2), 5.3),
    };
    let v = Regressor {
        w1: fill((3, 4), 6.1),
        b1: fill(4, 6.2),
        w2: fill((4, 2), 6.3),
    };
    let (x, y) = (fill((5, 3), 5.4), fill((5, 2), 5.5));
    let (_, _, hv) = r.loss_hvp(&x, &y, &v);
    let moved = |h: f64| Regressor {
        w1: at(&r.w1, &v.w1, h),
        b1: at(&r.b1, &v.b1, h),
        w2: at(&r.w2, &v.w2, h),
    };
    let (plus, minus) = (moved(H).loss_grad(&x, &y).1, moved(-H).loss_grad(&x, &y).1);
    agree(&hv.self_.w1, &plus.self_.w1, &minus.self_.w1, "H·v, w1");
    agree(&hv.self_.b1, &plus.self_.b1, &minus.self_.b1, "H·v, b1");
    agree(&hv.self_.w2, &plus.self_.w2, &minus.self_.w2, "H·v, w2");
}

/// A layer written as a `#[custom_vjp]` rule declares no second derivative: its
/// caller's `f_hvp` compiles, and panics naming it when it reaches it.
#[backprop::custom_vjp(halved_vjp)]
fn halved(x: &Array2<f64>) -> Array2<f64> {
    x * 0.5
}

fn halved_vjp(_x: &Array2<f64>, _y: Array2<f64>, d: Array2<f64>) -> (Array2<f64>,) {
    (d * 0.5,)
}

#[grad]
fn halved_loss(x: &Array2<f64>) -> f64 {
    halved(x).mapv(|v| v * v).sum()
}

#[test]
#[should_panic(expected = "`f_hvp`: `halved` is a `#[custom_vjp]` rule")]
fn a_layer_without_second_order_panics_naming_it() {
    let x = fill((2, 3), 0.1);
    let _ = halved_loss_hvp(&x, &x);
}

/// A frozen layer (a constant struct passed to a layer) gets zeros as its tangent.
#[grad(p)]
fn behind_a_frozen_layer(p: &Dense, frozen: &Dense, x: &Array2<f64>) -> f64 {
    let h = dense_layer(frozen, x);
    dense_layer(p, &h).mapv(|v| v * v).sum()
}

#[test]
fn a_frozen_layer_before_a_trained_one() {
    let frozen = Dense {
        w: fill((3, 3), 17.1),
        b: fill(3, 17.2),
    };
    let (p, v) = (
        Dense {
            w: fill((3, 2), 17.3),
            b: fill(2, 17.4),
        },
        Dense {
            w: fill((3, 2), 17.5),
            b: fill(2, 17.6),
        },
    );
    let x = fill((4, 3), 17.7);
    let (_, _, hv) = behind_a_frozen_layer_hvp(&p, &frozen, &x, &v);
    let moved = |h: f64| Dense {
        w: at(&p.w, &v.w, h),
        b: at(&p.b, &v.b, h),
    };
    let plus = behind_a_frozen_layer_grad(&moved(H), &frozen, &x).1;
    let minus = behind_a_frozen_layer_grad(&moved(-H), &frozen, &x).1;
    agree(&hv.p.w, &plus.p.w, &minus.p.w, "H·v, w");
    agree(&hv.p.b, &plus.p.b, &minus.p.b, "H·v, b");
}

// ---- transformer ops: embedding, masked softmaxes, dropout ----------------------------

#[grad(table, wq, wk)]
fn tiny_attention(
    ids: &[usize],
    table: &Array2<f64>,
    wq: &Array2<f64>,
    wk: &Array2<f64>,
    keep: &Array2<bool>,
) -> f64 {
    let x = backprop::ops::embedding(table, ids);
    let scores = x.dot(wq).dot(&x.dot(wk).t());
    let causal = backprop::ops::softmax_causal(&scores);
    let masked = backprop::ops::softmax_masked(&scores, keep);
    let h = backprop::ops::dropout(&causal.dot(&x), 0.3, 11);
    h.mapv(|v| v * v).sum() + (&masked * &scores).sum()
}

#[test]
fn embedding_masked_softmaxes_and_dropout() {
    let ids = [3usize, 0, 3, 1];
    let (table, wq, wk) = (fill((5, 3), 7.1), fill((3, 3), 7.2), fill((3, 3), 7.3));
    let (vt, vq, vk) = (fill((5, 3), 8.1), fill((3, 3), 8.2), fill((3, 3), 8.3));
    // Row 2 keeps nothing: its output and every derivative through it are 0, not NaN.
    let keep = array![
        [true, false, true, true],
        [true, true, false, true],
        [false, false, false, false],
        [false, true, true, true]
    ];
    let (value, g, hv) = tiny_attention_hvp(&ids, &table, &wq, &wk, &keep, &vt, &vq, &vk);
    assert_eq!(value, tiny_attention(&ids, &table, &wq, &wk, &keep));
    let (_, g_ref) = tiny_attention_grad(&ids, &table, &wq, &wk, &keep);
    assert_eq!(g.table, g_ref.table);
    let grad_at = |h: f64| {
        tiny_attention_grad(
            &ids,
            &at(&table, &vt, h),
            &at(&wq, &vq, h),
            &at(&wk, &vk, h),
            &keep,
        )
        .1
    };
    let (plus, minus) = (grad_at(H), grad_at(-H));
    assert!(
        hv.table
            .iter()
            .chain(&hv.wq)
            .chain(&hv.wk)
            .all(|v| v.is_finite())
    );
    // Row 2 of the table is read by no id: no gradient, no curvature.
    assert_eq!(hv.table.row(2), Array1::<f64>::zeros(3));
    agree(&hv.table, &plus.table, &minus.table, "H·v, table");
    agree(&hv.wq, &plus.wq, &minus.wq, "H·v, wq");
    agree(&hv.wk, &plus.wk, &minus.wk, "H·v, wk");
}

// ---- element writes ----------------------------------------------------------------------

#[grad(wq, wk, x)]
fn masked_by_writes(x: &Array2<f64>, wq: &Array2<f64>, wk: &Array2<f64>) -> f64 {
    let n = x.nrows();
    let mut scores = x.dot(wq).dot(&x.dot(wk).t());
    // A causal mask written element by element: its entries have derivative 0.
    for i in 0..n {
        for j in (i + 1)..n {
            scores[[i, j]] = f64::NEG_INFINITY;
        }
    }
    let p = softmax(&scores);
    // An array made from zeros, written from the input and added to.
    let mut pooled = Array1::<f64>::zeros(x.ncols());
    for k in 0..x.ncols() {
        pooled[k] = x[[0, k]] * x[[n - 1, k]];
        pooled[k] += p[[n - 1, 0]];
    }
    p.dot(x).mapv(|v| v.sin()).sum() + pooled.mapv(|v| v * v).sum()
}

#[test]
fn element_writes_a_causal_mask_and_a_pooled_vector() {
    let (x, wq, wk) = (fill((4, 3), 9.1), fill((3, 3), 9.2), fill((3, 3), 9.3));
    let (vx, vq, vk) = (fill((4, 3), 9.4), fill((3, 3), 9.5), fill((3, 3), 9.6));
    let (value, g, hv) = masked_by_writes_hvp(&x, &wq, &wk, &vx, &vq, &vk);
    assert_eq!(value, masked_by_writes(&x, &wq, &wk));
    assert_eq!(g.x, masked_by_writes_grad(&x, &wq, &wk).1.x);
    let grad_at =
        |h: f64| masked_by_writes_grad(&at(&x, &vx, h), &at(&wq, &vq, h), &at(&wk, &vk, h)).1;
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.x, &plus.x, &minus.x, "H·v, x");
    agree(&hv.wq, &plus.wq, &minus.wq, "H·v, wq");
    agree(&hv.wk, &plus.wk, &minus.wk, "H·v, wk");
}

// ---- reductions along an axis: variance, standard deviation, max, min -------------------

#[grad]
fn spread_statistics(x: &Array2<f64>) -> f64 {
    let var = x.var_axis(Axis(1), 1.0);
    let std = x.std_axis(Axis(0), 0.0);
    let hi = x.fold_axis(Axis(1), f64::NEG_INFINITY, |&m, &v| m.max(v));
    let lo = x.map_axis(Axis(0), |col| col.fold(f64::INFINITY, |m, &v| m.min(v)));
    (&var * &hi).sum() + std.mapv(|s| s.sin()).sum() + (&lo * &std).sum()
}

/// A LayerNorm written by hand: mean and variance along the last axis.
#[grad(gain)]
fn layer_norm_by_hand(x: &Array2<f64>, gain: &Array1<f64>) -> f64 {
    let mean = x.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let var = x.var_axis(Axis(1), 0.0).insert_axis(Axis(1));
    let y = (x - &mean) / (var + 1e-5).mapv(f64::sqrt) * gain;
    y.mapv(|v| v.tanh()).sum()
}

#[test]
fn var_std_max_and_min_along_an_axis() {
    let (x, v) = (fill((4, 5), 10.1), fill((4, 5), 10.2));
    let (value, g, hv) = spread_statistics_hvp(&x, &v);
    assert_eq!(value, spread_statistics(&x));
    assert_eq!(g.x, spread_statistics_grad(&x).1.x);
    let (_, plus) = spread_statistics_grad(&at(&x, &v, H));
    let (_, minus) = spread_statistics_grad(&at(&x, &v, -H));
    agree(&hv.x, &plus.x, &minus.x, "H·v, x");

    let (gain, vg) = (fill(5, 10.3), fill(5, 10.4));
    let (_, _, hv) = layer_norm_by_hand_hvp(&x, &gain, &vg);
    let (_, plus) = layer_norm_by_hand_grad(&x, &at(&gain, &vg, H));
    let (_, minus) = layer_norm_by_hand_grad(&x, &at(&gain, &vg, -H));
    agree(&hv.gain, &plus.gain, &minus.gain, "H·v, gain");
}

// ---- layer_norm and rms_norm -------------------------------------------------------------

#[grad(x, gain, bias)]
fn normalised(x: &Array<f64, ndarray::Ix3>, gain: &Array1<f64>, bias: &Array1<f64>) -> f64 {
    let ln = backprop::ops::layer_norm(x, gain, bias, 1e-5);
    let rms = backprop::ops::rms_norm(&ln.mapv(|v| v.sin()), gain, 1e-6);
    (&rms * &ln).mapv(|v| v.tanh()).sum() + ln.mapv(|v| v * v * v).sum()
}

/// Only the gain and bias: the input's tangent is 0 (a constant's).
#[grad(gain, bias)]
fn normalised_params(x: &Array2<f64>, gain: &Array1<f64>, bias: &Array1<f64>) -> f64 {
    let y = backprop::ops::layer_norm(x, gain, bias, 1e-5);
    let z = backprop::ops::rms_norm(x, gain, 1e-5);
    (&y * &z).mapv(|v| v.sin()).sum()
}

#[test]
fn layer_norm_and_rms_norm_second_order() {
    let (x, gain, bias) = (
        fill((2, 3, 4), 11.1) * 2.0,
        fill(4, 11.2) + 1.0,
        fill(4, 11.3),
    );
    let (vx, vg, vb) = (fill((2, 3, 4), 11.4), fill(4, 11.5), fill(4, 11.6));
    let (value, g, hv) = normalised_hvp(&x, &gain, &bias, &vx, &vg, &vb);
    assert_eq!(value, normalised(&x, &gain, &bias));
    assert_eq!(g.x, normalised_grad(&x, &gain, &bias).1.x);
    let grad_at =
        |h: f64| normalised_grad(&at(&x, &vx, h), &at(&gain, &vg, h), &at(&bias, &vb, h)).1;
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.x, &plus.x, &minus.x, "H·v, x");
    agree(&hv.gain, &plus.gain, &minus.gain, "H·v, gain");
    agree(&hv.bias, &plus.bias, &minus.bias, "H·v, bias");

    let x = fill((3, 5), 12.1);
    let (gain, bias, vg, vb) = (fill(5, 12.2), fill(5, 12.3), fill(5, 12.4), fill(5, 12.5));
    let (_, _, hv) = normalised_params_hvp(&x, &gain, &bias, &vg, &vb);
    let grad_at = |h: f64| normalised_params_grad(&x, &at(&gain, &vg, h), &at(&bias, &vb, h)).1;
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.gain, &plus.gain, &minus.gain, "H·v, gain only");
    agree(&hv.bias, &plus.bias, &minus.bias, "H·v, bias only");
}

// ---- a tiny language model: embedding, layer_norm, cross_entropy over [B, T, V] ----------

#[grad(table, w, gain, bias)]
fn tiny_lm(
    ids: &Array2<usize>,
    targets: &Array2<usize>,
    table: &Array2<f64>,
    w: &Array2<f64>,
    gain: &Array1<f64>,
    bias: &Array1<f64>,
) -> f64 {
    let (b, t) = ids.dim();
    let x = backprop::ops::embedding(table, ids);
    let h = backprop::ops::layer_norm(&x, gain, bias, 1e-5);
    let flat = h.into_shape_with_order((b * t, w.nrows())).unwrap();
    let logits = flat
        .dot(w)
        .into_shape_with_order((b, t, w.ncols()))
        .unwrap();
    let opts = XentOptions {
        ignore_index: Some(0),
        label_smoothing: 0.1,
    };
    backprop::ops::cross_entropy(&logits, targets, opts)
}

#[test]
fn a_tiny_language_model_with_cross_entropy_over_every_position() {
    let ids = array![[1usize, 3, 2], [4, 4, 0]];
    let targets = array![[3usize, 2, 0], [4, 1, 2]];
    let (table, w, gain, bias) = (
        fill((5, 4), 13.1),
        fill((4, 5), 13.2),
        fill(4, 13.3) + 1.0,
        fill(4, 13.4),
    );
    let (vt, vw, vg, vb) = (
        fill((5, 4), 13.5),
        fill((4, 5), 13.6),
        fill(4, 13.7),
        fill(4, 13.8),
    );
    let (value, g, hv) = tiny_lm_hvp(&ids, &targets, &table, &w, &gain, &bias, &vt, &vw, &vg, &vb);
    assert_eq!(value, tiny_lm(&ids, &targets, &table, &w, &gain, &bias));
    assert_eq!(
        g.w,
        tiny_lm_grad(&ids, &targets, &table, &w, &gain, &bias).1.w
    );
    let grad_at = |h: f64| {
        tiny_lm_grad(
            &ids,
            &targets,
            &at(&table, &vt, h),
            &at(&w, &vw, h),
            &at(&gain, &vg, h),
            &at(&bias, &vb, h),
        )
        .1
    };
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.table, &plus.table, &minus.table, "H·v, table");
    agree(&hv.w, &plus.w, &minus.w, "H·v, w");
    agree(&hv.gain, &plus.gain, &minus.gain, "H·v, gain");
    agree(&hv.bias, &plus.bias, &minus.bias, "H·v, bias");
}

// ---- attention ------------------------------------------------------------------------------

#[grad(q, k, v)]
fn attended(
    q: &ndarray::Array4<f64>,
    k: &ndarray::Array4<f64>,
    v: &ndarray::Array4<f64>,
    causal: bool,
) -> f64 {
    let o = backprop::ops::attention(q, k, v, causal);
    o.mapv(|x| x.sin()).sum() + (&o * q).sum()
}

/// Only the keys: the queries' and values' tangents are 0.
#[grad(k)]
fn attended_keys(
    q: &ndarray::Array4<f64>,
    k: &ndarray::Array4<f64>,
    v: &ndarray::Array4<f64>,
) -> f64 {
    backprop::ops::attention(q, k, v, true)
        .mapv(|x| x * x)
        .sum()
}

#[test]
fn attention_second_order_causal_and_not() {
    let sh = (2, 2, 4, 3);
    let (q, k, v) = (fill(sh, 14.1), fill(sh, 14.2), fill(sh, 14.3));
    let (vq, vk, vv) = (fill(sh, 14.4), fill(sh, 14.5), fill(sh, 14.6));
    for causal in [true, false] {
        let (value, g, hv) = attended_hvp(&q, &k, &v, causal, &vq, &vk, &vv);
        assert_eq!(value, attended(&q, &k, &v, causal));
        // The gradient comes back through the tangent's pullback (a dense recompute of
        // each head), not the flash kernel: equal to rounding.
        for (a, b) in g.v.iter().zip(&attended_grad(&q, &k, &v, causal).1.v) {
            close(*a, *b, 1e-13, "∇f from f_hvp, v");
        }
        let grad_at =
            |h: f64| attended_grad(&at(&q, &vq, h), &at(&k, &vk, h), &at(&v, &vv, h), causal).1;
        let (plus, minus) = (grad_at(H), grad_at(-H));
        agree(&hv.q, &plus.q, &minus.q, "H·v, q");
        agree(&hv.k, &plus.k, &minus.k, "H·v, k");
        agree(&hv.v, &plus.v, &minus.v, "H·v, v");
    }
    let (_, _, hv) = attended_keys_hvp(&q, &k, &v, &vk);
    let (_, plus) = attended_keys_grad(&q, &at(&k, &vk, H), &v);
    let (_, minus) = attended_keys_grad(&q, &at(&k, &vk, -H), &v);
    agree(&hv.k, &plus.k, &minus.k, "H·v, k only");
}

// ---- leaky_relu, mse, bce_with_logits, matmul, matvec ----------------------------------

#[grad(x, w, v, target)]
fn losses(x: &Array2<f64>, w: &Array2<f64>, v: &Array1<f64>, target: &Array2<f64>) -> f64 {
    let h = backprop::ops::leaky_relu(&backprop::ops::matmul(x, w), 0.1);
    let z = backprop::ops::matvec(&h, v);
    backprop::ops::mse(&h, target) * 3.0
        + backprop::ops::bce_with_logits(&z, &z.mapv(|u| (u * 0.5).sin() * 0.5 + 0.5))
        + backprop::ops::bce_with_logits(&h, &target.mapv(|u| u.abs().min(1.0)))
}

/// Only the weights: the constant operands' tangents are 0.
#[grad(w)]
fn losses_w(x: &Array2<f64>, w: &Array2<f64>, target: &Array2<f64>) -> f64 {
    let h = backprop::ops::matmul(x, w);
    backprop::ops::mse(target, &h) + backprop::ops::bce_with_logits(&h, target)
}

#[test]
fn leaky_relu_mse_bce_matmul_and_matvec_second_order() {
    let (x, w, v, target) = (
        fill((4, 3), 16.1),
        fill((3, 5), 16.2),
        fill(5, 16.3),
        fill((4, 5), 16.4),
    );
    let (vx, vw, vv, vt) = (
        fill((4, 3), 16.5),
        fill((3, 5), 16.6),
        fill(5, 16.7),
        fill((4, 5), 16.8),
    );
    let (value, g, hv) = losses_hvp(&x, &w, &v, &target, &vx, &vw, &vv, &vt);
    assert_eq!(value, losses(&x, &w, &v, &target));
    let g_ref = losses_grad(&x, &w, &v, &target).1;
    for (a, b) in g.w.iter().zip(&g_ref.w) {
        close(*a, *b, 1e-13, "∇f from f_hvp, w");
    }
    let grad_at = |h: f64| {
        losses_grad(
            &at(&x, &vx, h),
            &at(&w, &vw, h),
            &at(&v, &vv, h),
            &at(&target, &vt, h),
        )
        .1
    };
    let (plus, minus) = (grad_at(H), grad_at(-H));
    agree(&hv.x, &plus.x, &minus.x, "H·v, x");
    agree(&hv.w, &plus.w, &minus.w, "H·v, w");
    agree(&hv.v, &plus.v, &minus.v, "H·v, v");
    agree(&hv.target, &plus.target, &minus.target, "H·v, target");

    let target = target.mapv(|u| u.abs().min(1.0));
    let (_, _, hv) = losses_w_hvp(&x, &w, &target, &vw);
    let (_, plus) = losses_w_grad(&x, &at(&w, &vw, H), &target);
    let (_, minus) = losses_w_grad(&x, &at(&w, &vw, -H), &target);
    agree(&hv.w, &plus.w, &minus.w, "H·v, w only");
}

// ---- the explicit arithmetic ops, concatenate and stack --------------------------------------

#[grad(a, b)]
fn explicit_ops(a: &Array2<f64>, b: &Array1<f64>, c: &Array2<f64>) -> f64 {
    use backprop::ops;
    let s = ops::add(a, b);
    let d = ops::sub(&s, c);
    let m = ops::mul(&d, &d.mapv(|v| v.sin()));
    let q = ops::div(&m, &ops::add(&a.mapv(|v| v * v), &ndarray::arr0(1.5)));
    let r = ops::sub(c, b);
    ops::sum(&q)
        + ops::mean(&ops::mul(&r, a))
        + ops::sum_axis(&q, Axis(0)).mapv(f64::tanh).sum()
        + ops::mean_axis(&ops::div(c, &ops::add(b, &ndarray::arr0(3.0))), Axis(1)).sum()
}

#[grad(x, y)]
fn joined(x: &Array2<f64>, y: &Array2<f64>, z: &Array2<f64>) -> f64 {
    let c = ndarray::concatenate(Axis(1), &[x.view(), z.view(), y.view()]).unwrap();
    let st = ndarray::stack(Axis(0), &[x.view(), z.view()]).unwrap();
    c.mapv(|v| v.sin()).sum() * st.mapv(|v| v * v).sum()
}

#[test]
fn explicit_arithmetic_ops_concatenate_and_stack() {
    let (a, b, c) = (fill((3, 4), 18.1), fill(4, 18.2), fill((3, 4), 18.3));
    let (va, vb) = (fill((3, 4), 18.4), fill(4, 18.5));
    let (value, _, hv) = explicit_ops_hvp(&a, &b, &c, &va, &vb);
    assert_eq!(value, explicit_ops(&a, &b, &c));
    let plus = explicit_ops_grad(&at(&a, &va, H), &at(&b, &vb, H), &c).1;
    let minus = explicit_ops_grad(&at(&a, &va, -H), &at(&b, &vb, -H), &c).1;
    agree(&hv.a, &plus.a, &minus.a, "H·v, a");
    agree(&hv.b, &plus.b, &minus.b, "H·v, b");

    let (x, y, z) = (fill((2, 3), 18.6), fill((2, 3), 18.7), fill((2, 3), 18.8));
    let (vx, vy) = (fill((2, 3), 18.9), fill((2, 3), 19.0));
    let (_, _, hv) = joined_hvp(&x, &y, &z, &vx, &vy);
    let plus = joined_grad(&at(&x, &vx, H), &at(&y, &vy, H), &z).1;
    let minus = joined_grad(&at(&x, &vx, -H), &at(&y, &vy, -H), &z).1;
    agree(&hv.x, &plus.x, &minus.x, "H·v, x");
    agree(&hv.y, &plus.y, &minus.y, "H·v, y");
}

// ---- programs a tester wrote that once failed ------------------------------------------------

#[derive(backprop::Differentiable, Clone)]
struct Embed {
    wte: Array2<f64>,
    g: Array1<f64>,
}

/// Runtime ops applied only to struct fields (no array method in the body): the
/// analysis once took `embedding(&p.wte, ids)` for a float.
#[grad(p)]
fn fields_only(p: &Embed, ids: &Array2<usize>) -> f64 {
    let z = backprop::ops::embedding(&p.wte, ids);
    let n = backprop::ops::layer_norm(&z, &p.g, &p.g, 1e-5);
    (&n * &z).sum()
}

#[test]
fn runtime_ops_on_struct_fields_only() {
    let ids = array![[0usize, 2], [1, 2]];
    let (p, v) = (
        Embed {
            wte: fill((3, 4), 20.1),
            g: fill(4, 20.2) + 1.0,
        },
        Embed {
            wte: fill((3, 4), 20.3),
            g: fill(4, 20.4),
        },
    );
    let (_, _, hv) = fields_only_hvp(&p, &ids, &v);
    let moved = |h: f64| Embed {
        wte: at(&p.wte, &v.wte, h),
        g: at(&p.g, &v.g, h),
    };
    let (plus, minus) = (
        fields_only_grad(&moved(H), &ids).1,
        fields_only_grad(&moved(-H), &ids).1,
    );
    agree(&hv.p.wte, &plus.p.wte, &minus.p.wte, "H·v, wte");
    agree(&hv.p.g, &plus.p.g, &minus.p.g, "H·v, g");
}

/// A float-returning helper's result used in arithmetic, in generic code.
#[grad]
fn squares<T: backprop::Real>(y: &Array2<T>) -> T {
    (y * y).sum()
}

#[grad]
fn squared_squares<T: backprop::Real>(x: &Array2<T>) -> T {
    let s = squares(x);
    s * s
}

/// `mse`'s float times an array; a constant array made in the body passed to a layer;
/// a constant accumulator in a loop; a constant transposed view into a layer taking a
/// view; loop state that starts constant and is reassigned in a branch.
#[grad]
fn view_layer(x: ndarray::ArrayView2<f64>, w: &Array2<f64>) -> Array2<f64> {
    x.dot(w).mapv(f64::tanh)
}

#[grad(w)]
fn constants_everywhere(x: &Array2<f64>, w: &Array2<f64>, n: usize) -> f64 {
    let l = backprop::ops::mse(&x.dot(w), x);
    let ones = Array2::ones((3, 3));
    let mut acc = Array2::<f64>::zeros((3, 3));
    let mut h = x.clone();
    for i in 0..n {
        acc = acc + x.dot(w);
        if i % 2 == 0 {
            h = view_layer(h.view(), w);
        } else {
            h = view_layer(x.t(), w) + &h;
        }
    }
    (x.dot(w) * l).sum() + view_layer(ones.view(), w).sum() + (&acc * &acc).sum() + (&h * &h).sum()
}

#[test]
fn generic_helpers_constants_views_and_branches_in_loops() {
    let x = fill((3, 3), 21.1);
    let (value, g) = squared_squares_grad(&x);
    assert_eq!(value, (&x * &x).sum().powi(2));
    for (a, b) in g.x.iter().zip(&(&x * (4.0 * (&x * &x).sum()))) {
        close(*a, *b, 1e-13, "∇(Σx²)²");
    }
    let (w, v) = (fill((3, 3), 21.2) * 0.5, fill((3, 3), 21.3));
    for n in 0..4 {
        let (value, _, hv) = constants_everywhere_hvp(&x, &w, n, &v);
        assert_eq!(value, constants_everywhere(&x, &w, n));
        let plus = constants_everywhere_grad(&x, &at(&w, &v, H), n).1;
        let minus = constants_everywhere_grad(&x, &at(&w, &v, -H), n).1;
        agree(&hv.w, &plus.w, &minus.w, "H·v, w");
        let (_, t) = constants_everywhere_jvp(&x, &w, n, &v);
        let fd = (constants_everywhere(&x, &at(&w, &v, 1e-6), n)
            - constants_everywhere(&x, &at(&w, &v, -1e-6), n))
            / 2e-6;
        close(t, fd, 1e-7, "J·v");
    }
}
