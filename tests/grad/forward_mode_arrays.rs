//! Forward mode of ndarray code (issue 18): `f_jvp` runs a tangent pass over arrays, one
//! tangent rule per operation (`runtime/src/rules/tangent.rs`), and a function that
//! returns an array (a layer) has `f_jvp` too. Each function is checked against the
//! gradient paired with the tangents (the reverse pass, computed independently), against
//! central differences along the tangents, and, for a layer, against its VJP by the
//! dot-product test `⟨J·t, d⟩ = ⟨t, Jᵀ·d⟩`.
#![allow(clippy::float_cmp)]

use crate::support::close;
use backprop::grad;
use ndarray::{Array, Array1, Array2, Array3, ArrayView2, Axis, Dimension, ShapeBuilder, array, s};

const H: f64 = 1e-6;

/// `x + h·t` for arrays of any dimension.
fn at<D: Dimension>(x: &Array<f64, D>, t: &Array<f64, D>, h: f64) -> Array<f64, D> {
    x + &(t * h)
}

/// `⟨a, b⟩` for arrays of one shape.
fn pair<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    (a * b).sum()
}

/// Deterministic, irregular values of a shape (no ties, no zeros).
fn fill<Sh: ShapeBuilder<Dim = D>, D: Dimension>(shape: Sh, seed: f64) -> Array<f64, D> {
    let mut k = 0.0;
    Array::from_shape_fn(shape, |_| {
        k += 1.0;
        ((k * 1.618 + seed) * 2.399).sin() * 0.9 + 0.05 * k.cos()
    })
}

/// The three answers agree: the tangent pass, the gradient paired with the tangents, and
/// central differences.
fn agree(jvp: f64, paired: f64, fd: f64, what: &str) {
    close(
        jvp,
        paired,
        1e-12,
        &format!("{what}: jvp against the paired gradient"),
    );
    close(
        jvp,
        fd,
        1e-7,
        &format!("{what}: jvp against central differences"),
    );
}

// ---- each tangent rule -------------------------------------------------------------

#[grad]
fn every_op(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let h = (x.dot(w) + b).mapv(|v| v.tanh());
    let m = h.sum_axis(Axis(1)).insert_axis(Axis(1));
    let z = &h - &m;
    let s = z.slice(s![.., 1..]);
    let q = (s.to_owned() * 2.0).exp() / (1.5 + &h.slice(s![.., ..3]).mapv(|v| v * v));
    let r = q.t().row(1).sum() - q.column(0).mean().unwrap();
    r + (q.sum() / x.t().sum()).powi(2) - z.mean_axis(Axis(0)).unwrap().sum()
}

#[test]
fn each_operation_pushes_its_tangent_forward() {
    let (x, w, b) = (fill((3, 4), 0.1), fill((4, 4), 0.7), fill(4, 1.3));
    let (tx, tw, tb) = (fill((3, 4), 2.1), fill((4, 4), 3.3), fill(4, 4.7));
    let (v, t) = every_op_jvp(&x, &w, &b, &tx, &tw, &tb);
    assert_eq!(v, every_op(&x, &w, &b));
    let (_, g) = every_op_grad(&x, &w, &b);
    let paired = pair(&g.x, &tx) + pair(&g.w, &tw) + pair(&g.b, &tb);
    let fd = (every_op(&at(&x, &tx, H), &at(&w, &tw, H), &at(&b, &tb, H))
        - every_op(&at(&x, &tx, -H), &at(&w, &tw, -H), &at(&b, &tb, -H)))
        / (2.0 * H);
    agree(t, paired, fd, "every_op");
    // One argument at a time: the others' tangents are zeros, as a `None` slot gives.
    let zx = Array2::zeros((3, 4));
    let (_, only_w) = every_op_jvp(&x, &w, &b, &zx, &tw, &Array1::zeros(4));
    close(only_w, pair(&g.w, &tw), 1e-12, "w alone");
}

#[grad]
fn reductions(x: &Array3<f64>) -> f64 {
    let v = x.var_axis(Axis(2), 1.0);
    let sd = x.std_axis(Axis(1), 0.0);
    let mx = x.fold_axis(Axis(2), f64::NEG_INFINITY, |&a, &b| a.max(b));
    let mn = x.map_axis(Axis(0), |r| r.fold(f64::INFINITY, |a, &b| a.min(b)));
    let p = x.view().permuted_axes([2, 0, 1]);
    let flat = p.to_shape((4, 6)).unwrap();
    let back = x.to_owned().into_shape_with_order((2, 12)).unwrap();
    let e = flat.index_axis(Axis(0), 2).sum() + flat.slice_axis(Axis(1), (1..4).into()).sum();
    let sel = x.select(Axis(1), &[2, 0, 2]);
    (v * 3.0).sum() + back.row(1).sum() * 0.25 + sd.sum() * 0.5 + mx.sum() - mn.sum()
        + e
        + sel.remove_axis(Axis(0)).sum()
}

#[test]
fn reductions_views_and_reshapes() {
    let x = fill((2, 3, 4), 0.4);
    let tx = fill((2, 3, 4), 5.5);
    let (v, t) = reductions_jvp(&x, &tx);
    assert_eq!(v, reductions(&x));
    let (_, g) = reductions_grad(&x);
    let fd = (reductions(&at(&x, &tx, H)) - reductions(&at(&x, &tx, -H))) / (2.0 * H);
    agree(t, pair(&g.x, &tx), fd, "reductions");
}

/// `max` along an axis with a tie: the tangent is the mean of the tied elements'
/// tangents, the pullback's even split transposed.
#[grad]
fn row_max(x: &Array2<f64>) -> f64 {
    x.fold_axis(Axis(1), f64::NEG_INFINITY, |&a, &b| a.max(b))
        .sum()
}

#[test]
fn a_tied_maximum_takes_the_mean_of_its_tangents() {
    let x = array![[1.0, 3.0, 3.0], [2.0, -1.0, 0.5]];
    let t = array![[10.0, 1.0, 2.0], [4.0, 8.0, 16.0]];
    let (_, tangent) = row_max_jvp(&x, &t);
    assert_eq!(tangent, 1.5 + 4.0);
    let (_, g) = row_max_grad(&x);
    assert_eq!(pair(&g.x, &t), tangent);
}

// ---- layers: functions that return arrays ------------------------------------------

/// A dense layer with LayerNorm written out, returning an array.
#[grad]
fn norm_layer(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    let z = x.dot(w) + b;
    let mu = z.mean_axis(Axis(1)).unwrap().insert_axis(Axis(1));
    let var = z.var_axis(Axis(1), 0.0).insert_axis(Axis(1));
    (&z - &mu) / (var + 1e-5).mapv(|u| u.sqrt())
}

#[test]
fn a_layer_has_forward_mode() {
    let (x, w, b) = (fill((2, 3), 0.2), fill((3, 4), 0.9), fill(4, 1.7));
    let (tx, tw, tb) = (fill((2, 3), 2.5), fill((3, 4), 3.1), fill(4, 4.2));
    let (y, ty) = norm_layer_jvp(&x, &w, &b, &tx, &tw, &tb);
    assert_eq!(y, norm_layer(&x, &w, &b));
    assert_eq!(ty.dim(), (2, 4));
    let fd = (norm_layer(&at(&x, &tx, H), &at(&w, &tw, H), &at(&b, &tb, H))
        - norm_layer(&at(&x, &tx, -H), &at(&w, &tw, -H), &at(&b, &tb, -H)))
        / (2.0 * H);
    for (a, e) in ty.iter().zip(&fd) {
        close(*a, *e, 1e-7, "J·t against central differences");
    }
    // ⟨J·t, d⟩ = ⟨t, Jᵀ·d⟩ with the layer's VJP.
    let d = fill((2, 4), 6.6);
    let (_, g) = norm_layer_vjp(&x, &w, &b, d.clone());
    let rhs = pair(&g.x, &tx) + pair(&g.w, &tw) + pair(&g.b, &tb);
    close(pair(&ty, &d), rhs, 1e-12, "dot-product test");
}

/// One varying argument: the others are constants (no tangent argument for them).
#[grad(w)]
fn only_weights(x: &Array2<f64>, w: &Array2<f64>) -> Array2<f64> {
    (x.dot(w) * 0.5).mapv(|v| v.tanh() * v.exp())
}

#[test]
fn a_layer_of_one_argument() {
    let (x, w, tw) = (fill((2, 3), 0.3), fill((3, 2), 1.1), fill((3, 2), 2.9));
    let (y, ty) = only_weights_jvp(&x, &w, &tw);
    assert_eq!(y, only_weights(&x, &w));
    let fd = (only_weights(&x, &at(&w, &tw, H)) - only_weights(&x, &at(&w, &tw, -H))) / (2.0 * H);
    for (a, e) in ty.iter().zip(&fd) {
        close(*a, *e, 1e-7, "J·t");
    }
}

// ---- loops, branches, structs, calls -----------------------------------------------

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

#[grad]
fn mse(y: &Array2<f64>, target: &Array2<f64>) -> f64 {
    let r = y - target;
    (&r * &r).mean().unwrap()
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
    mse(&y, target)
}

fn mlp() -> Mlp {
    Mlp {
        layers: vec![
            Dense {
                w: fill((3, 4), 0.1),
                b: fill(4, 0.2),
            },
            Dense {
                w: fill((4, 2), 0.3),
                b: fill(2, 0.4),
            },
        ],
        scale: 1.3,
    }
}

fn tangent_mlp() -> Mlp {
    Mlp {
        layers: vec![
            Dense {
                w: fill((3, 4), 5.1),
                b: fill(4, 5.2),
            },
            Dense {
                w: fill((4, 2), 5.3),
                b: fill(2, 5.4),
            },
        ],
        scale: -0.7,
    }
}

fn moved(p: &Mlp, t: &Mlp, h: f64) -> Mlp {
    Mlp {
        layers: p
            .layers
            .iter()
            .zip(&t.layers)
            .map(|(l, tl)| Dense {
                w: at(&l.w, &tl.w, h),
                b: at(&l.b, &tl.b, h),
            })
            .collect(),
        scale: p.scale + h * t.scale,
    }
}

#[test]
fn a_loop_over_layers_a_branch_a_while_and_a_call() {
    let (p, tp) = (mlp(), tangent_mlp());
    let (x, target) = (fill((5, 3), 0.6), fill((5, 2), 0.8));
    for deep in [true, false] {
        let (v, t) = mlp_loss_jvp(&p, &x, &target, deep, &tp);
        assert_eq!(v, mlp_loss(&p, &x, &target, deep));
        let (_, g) = mlp_loss_grad(&p, &x, &target, deep);
        let mut paired = g.p.scale * tp.scale;
        for (gl, tl) in g.p.layers.iter().zip(&tp.layers) {
            paired += pair(&gl.w, &tl.w) + pair(&gl.b, &tl.b);
        }
        let fd = (mlp_loss(&moved(&p, &tp, H), &x, &target, deep)
            - mlp_loss(&moved(&p, &tp, -H), &x, &target, deep))
            / (2.0 * H);
        agree(t, paired, fd, "mlp_loss");
    }
}

// ---- argument forms and element types ----------------------------------------------

/// An owned argument, a view argument and a borrowed one, in f32.
#[grad]
fn forms(a: Array2<f32>, v: ArrayView2<f32>, r: &Array2<f32>) -> f32 {
    ((&a * &v).mapv(|e| e.sin()) / 4.0 + r).sum()
}

#[test]
fn owned_view_and_borrowed_arguments_in_f32() {
    let a = array![[0.5f32, -0.3], [0.2, 0.9]];
    let v = array![[1.5f32, 0.4], [-0.6, 0.1]];
    let r = array![[0.1f32, 0.2], [0.3, 0.4]];
    let (ta, tv, tr) = (
        array![[1.0f32, 0.0], [0.5, -1.0]],
        array![[0.0f32, 2.0], [1.0, 0.5]],
        array![[1.0f32, 1.0], [1.0, 1.0]],
    );
    let (val, t) = forms_jvp(a.clone(), v.view(), &r, ta.clone(), tv.view(), &tr);
    assert_eq!(val, forms(a.clone(), v.view(), &r));
    // d Σ sin(a·v)/4 + r = Σ cos(a·v)(ta·v + a·tv)/4 + Σ tr
    let mut by_hand = 0.0f32;
    for i in 0..2 {
        for j in 0..2 {
            let (x, y) = (a[[i, j]], v[[i, j]]);
            by_hand += (x * y).cos() * (ta[[i, j]] * y + x * tv[[i, j]]) / 4.0 + tr[[i, j]];
        }
    }
    assert!((t - by_hand).abs() < 1e-5, "{t} vs {by_hand}");
}

#[test]
#[should_panic(expected = "jvp: the tangent of `r` has shape 3×2, the argument 2×2")]
fn a_tangent_of_another_shape_is_refused_naming_both() {
    let a = Array2::<f32>::zeros((2, 2));
    let _ = forms_jvp(
        a.clone(),
        a.view(),
        &a,
        a.clone(),
        a.view(),
        &Array2::zeros((3, 2)),
    );
}

// ---- README's example ----------------------------------------------------------------

#[grad]
fn readme_layer(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    (x.dot(w) + b).mapv(f64::tanh)
}

/// README's "Forward mode" layer, as written there: along w only, `J·t` is
/// `(1 − tanh²(x·w + b))·(x·t_w)`.
#[test]
fn the_readme_layer_example() {
    let (x, w, b) = (array![[1.0, 2.0]], array![[0.5], [-0.25]], array![0.1]);
    let (y, t_y) = readme_layer_jvp(
        &x,
        &w,
        &b,
        &Array2::zeros((1, 2)),
        &array![[1.0], [0.0]],
        &Array1::zeros(1),
    );
    assert_eq!(y, array![[0.1f64.tanh()]]);
    assert!((t_y[[0, 0]] - (1.0 - 0.1f64.tanh().powi(2))).abs() < 1e-15);
}

/// A float argument captured by a `mapv` closure over an array: its tangent spreads over
/// the elements. Once a compile-fail test (`f_jvp` of a layer), now a layer with forward
/// mode: `J·t = (1 − y²)·(t_x·a + x·t_a)`.
#[grad]
fn scaled_tanh(x: &Array1<f64>, a: f64) -> Array1<f64> {
    x.mapv(|v| (v * a).tanh())
}

#[test]
fn a_captured_float_has_a_tangent() {
    let x = array![0.1, 0.2];
    let (y, t) = scaled_tanh_jvp(&x, 0.5, &array![1.0, 0.0], 2.0);
    let want = Array1::from_iter(x.iter().zip([1.0, 0.0]).map(|(&v, tx)| {
        let y = (v * 0.5).tanh();
        (1.0 - y * y) * (tx * 0.5 + v * 2.0)
    }));
    assert_eq!(y, x.mapv(|v| (v * 0.5).tanh()));
    assert!(
        (&t - &want).iter().all(|d| d.abs() < 1e-15),
        "{t} vs {want}"
    );
}

/// Elementwise methods with constant float operands (`v.max(0.0)`, `v.powf(1.5)`,
/// `v.clamp(-a, a)` with `a` not differentiated) have a tangent in a layer: `t` times
/// the scalar rule's local derivative. Found by a tryout: `f_jvp` of such a layer was
/// refused.
#[grad]
fn relu_by_max(x: &Array2<f64>) -> Array2<f64> {
    x.mapv(|v| v.max(0.0))
}

#[grad(x)]
fn clamped_power(x: &Array2<f64>, a: f64) -> Array2<f64> {
    x.mapv(|v| v.powf(1.5).clamp(-a, a) + v.min(0.5))
}

#[test]
fn elementwise_methods_with_constant_floats_have_tangents() {
    let x = array![[0.5, -1.0], [2.0, 0.25]];
    let t = array![[1.0, 2.0], [-0.5, 3.0]];
    let (y, ty) = relu_by_max_jvp(&x, &t);
    assert_eq!(y, array![[0.5, 0.0], [2.0, 0.25]]);
    assert_eq!(ty, array![[1.0, 0.0], [-0.5, 3.0]]);
    // Positive x (powf of a negative is NaN), no ties with 0.5: 1.5·√v·t below the clamp,
    // 0 above it (2^1.5 > 1.2), plus t where v < 0.5.
    let x = array![[0.4, 1.0], [2.0, 0.25]];
    let (_, ty) = clamped_power_jvp(&x, 1.2, &t);
    let want = array![
        [1.5 * 0.4f64.sqrt() * 1.0 + 1.0, 1.5 * 2.0],
        [0.0, 1.5 * 0.5 * 3.0 + 3.0]
    ];
    assert!(
        (&ty - &want).iter().all(|d| d.abs() < 1e-15),
        "{ty} vs {want}"
    );
    let fd = (clamped_power(&at(&x, &t, H), 1.2) - clamped_power(&at(&x, &t, -H), 1.2)) / (2.0 * H);
    assert!((&ty - &fd).iter().all(|d| d.abs() < 1e-7), "{ty} vs {fd}");
}

// ---- layers whose forward mode is their tangent program ---------------------------------
// An operation without a forward-mode rule (`layer_norm`, `attention`, a call of another
// layer) still gives a layer `f_jvp` where its tangent program exists (the one `f_hvp`
// differentiates): the tangent of its value.

#[derive(backprop::Differentiable, Clone)]
struct Norm {
    g: Array1<f64>,
    b: Array1<f64>,
}

#[grad]
fn normed(x: &Array2<f64>, n: &Norm) -> Array2<f64> {
    backprop::ops::layer_norm(x, &n.g, &n.b, 1e-5).mapv(f64::tanh)
}

#[grad]
fn normed_twice(x: &Array2<f64>, n: &Norm) -> Array2<f64> {
    let h = normed(x, n);
    normed(&h, n) + &h
}

#[grad]
impl Norm {
    /// The same two layers as a method.
    #[grad]
    fn apply_twice(&self, x: &Array2<f64>) -> Array2<f64> {
        normed_twice(x, self)
    }
}

fn norm(seed: f64) -> Norm {
    Norm {
        g: fill(4, seed) + 1.0,
        b: fill(4, seed + 0.5),
    }
}

#[test]
fn a_layer_through_layer_norm_and_calls_of_layers_has_forward_mode() {
    let (x, n) = (fill((3, 4), 15.1), norm(15.2));
    let (tx, tn) = (fill((3, 4), 15.3), norm(15.4));
    let (y, ty) = normed_twice_jvp(&x, &n, &tx, &tn);
    assert_eq!(y, normed_twice(&x, &n));
    let moved = |h: f64| Norm {
        g: at(&n.g, &tn.g, h),
        b: at(&n.b, &tn.b, h),
    };
    let fd = (normed_twice(&at(&x, &tx, H), &moved(H))
        - normed_twice(&at(&x, &tx, -H), &moved(-H)))
        / (2.0 * H);
    for (a, e) in ty.iter().zip(&fd) {
        close(*a, *e, 1e-7, "J·t against central differences");
    }
    // ⟨J·t, d⟩ = ⟨t, Jᵀ·d⟩ with the layer's VJP.
    let d = fill((3, 4), 15.5);
    let (_, g) = normed_twice_vjp(&x, &n, d.clone());
    let rhs = pair(&g.x, &tx) + pair(&g.n.g, &tn.g) + pair(&g.n.b, &tn.b);
    close(pair(&ty, &d), rhs, 1e-12, "dot-product test");
    // The method forwards to it (the receiver's tangent first).
    let (ym, tym) = n.apply_twice_jvp(&x, &tn, &tx);
    assert_eq!((ym, tym), (y, ty));
}
