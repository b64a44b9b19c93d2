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
