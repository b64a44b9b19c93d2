//! Gradients of gradients (issue 18, part 3): a `#[grad]` function that calls another
//! function's `f_grad` and uses the gradient's fields. Its pullback is the callee's
//! Hessian-vector product along the gradient's cotangent, so each test checks the
//! outer gradient against a derivation by hand or against central differences of the
//! outer function itself.
#![allow(clippy::needless_range_loop, clippy::float_cmp)]

use crate::support::close;
use backprop::grad;

#[grad]
fn inner(a: f64, b: f64) -> f64 {
    (a * b).sin() + a * a * b
}

/// A gradient penalty: `inner + |∇inner|²`.
#[grad]
fn penalty(a: f64, b: f64) -> f64 {
    let (l, g) = inner_grad(a, b);
    l + g.a * g.a + g.b * g.b
}

#[test]
fn gradient_penalty_on_floats_by_hand() {
    let (a, b) = (0.4, -0.9);
    let (value, g) = penalty_grad(a, b);
    let (c, s) = ((a * b).cos(), (a * b).sin());
    // ∇inner and its Hessian, by hand.
    let (ga, gb) = (b * c + 2.0 * a * b, a * c + a * a);
    let h_aa = -b * b * s + 2.0 * b;
    let h_ab = c - a * b * s + 2.0 * a;
    let h_bb = -a * a * s;
    close(value, s + a * a * b + ga * ga + gb * gb, 1e-15, "value");
    // ∇(inner + |∇inner|²) = ∇inner + 2 H ∇inner
    close(g.a, ga + 2.0 * (h_aa * ga + h_ab * gb), 1e-14, "∂/∂a");
    close(g.b, gb + 2.0 * (h_ab * ga + h_bb * gb), 1e-14, "∂/∂b");
}

#[test]
fn gradient_penalty_passes_gradcheck() {
    backprop::gradcheck!(penalty(a = 0.4, b = -0.9)).assert();
    backprop::gradcheck!(penalty(a = -1.3, b = 0.6)).assert();
}

// ---- buffers: a gradient-norm penalty and a MAML step ---------------------------------

/// Least squares of a line through `(x, y)`: `w = [slope, intercept]`.
#[grad(w)]
fn line_loss(w: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let r = (w[0] * x[i] + w[1]).tanh() - y[i];
        s += r * r;
    }
    s / x.len() as f64
}

/// `loss + ½|∇loss|²`, the norm summed in a loop over the gradient's buffer.
#[grad(w)]
fn sharpness_penalised(w: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let (l, g) = line_loss_grad(w, x, y);
    let mut n2 = 0.0;
    for i in 0..g.w.len() {
        n2 += g.w[i] * g.w[i];
    }
    l + 0.5 * n2
}

const XS: [f64; 4] = [-1.0, -0.3, 0.4, 1.2];
const YS: [f64; 4] = [-0.5, 0.1, 0.2, 0.7];

#[test]
fn gradient_norm_penalty_over_a_buffer() {
    let w = [0.8, -0.2];
    let (value, g) = sharpness_penalised_grad(&w, &XS, &YS);
    assert_eq!(value, sharpness_penalised(&w, &XS, &YS));
    // ∇(l + ½|∇l|²) = ∇l + H ∇l, with H·v from `line_loss_hvp`.
    let (_, gl) = line_loss_grad(&w, &XS, &YS);
    let (_, _, hv) = line_loss_hvp(&w, &XS, &YS, &gl.w);
    for k in 0..2 {
        close(g.w[k], gl.w[k] + hv.w[k], 1e-14, "∂/∂w");
    }
    let f = |w: &[f64]| sharpness_penalised(w, &XS, &YS);
    let num = crate::support::fd(&f, &w);
    for k in 0..2 {
        close(g.w[k], num[k], 1e-7, "against differences");
    }
    backprop::gradcheck!(sharpness_penalised(w = &w, x = const &XS, y = const &YS)).assert();
}

/// One step of MAML (Finn et al. 2017): adapt on the support set by one gradient
/// step, score the adapted weights on the query set, differentiate through the step.
#[grad(w)]
fn maml(w: &[f64], xs: &[f64], ys: &[f64], xq: &[f64], yq: &[f64]) -> f64 {
    let (_, g) = line_loss_grad(w, xs, ys);
    let mut adapted = Vec::new();
    for i in 0..w.len() {
        adapted.push(w[i] - 0.5 * g.w[i]);
    }
    line_loss(&adapted, xq, yq)
}

#[test]
fn maml_step_through_an_inner_gradient() {
    let (xq, yq) = ([-0.8, 0.0, 0.9], [-0.3, 0.05, 0.6]);
    let w = [0.3, 0.1];
    let (value, g) = maml_grad(&w, &XS, &YS, &xq, &yq);
    assert_eq!(value, maml(&w, &XS, &YS, &xq, &yq));
    // By the chain rule: w' = w − ½∇l_s(w), so ∇ = (I − ½H_s) ∇l_q(w').
    let (_, gs) = line_loss_grad(&w, &XS, &YS);
    let adapted: Vec<f64> = (0..2).map(|i| w[i] - 0.5 * gs.w[i]).collect();
    let (_, gq) = line_loss_grad(&adapted, &xq, &yq);
    let (_, _, hv) = line_loss_hvp(&w, &XS, &YS, &gq.w);
    for k in 0..2 {
        close(g.w[k], gq.w[k] - 0.5 * hv.w[k], 1e-14, "∂/∂w");
    }
    backprop::gradcheck!(maml(w = &w, xs = const &XS, ys = const &YS, xq = const &xq, yq = const &yq))
        .assert();
}

// ---- structs --------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Poly {
    c: Vec<f64>,
    scale: f64,
}

#[grad(p)]
fn poly_fit(p: &Poly, x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let mut v = 0.0;
        let mut xk = 1.0;
        for k in 0..p.c.len() {
            v += p.c[k] * xk;
            xk *= x[i];
        }
        let r = p.scale * v.sin() - y[i];
        s += r * r;
    }
    s
}

/// The gradient's struct field read by its fields: `g.p.c[k]`, `g.p.scale`.
#[grad(p)]
fn poly_penalised(p: &Poly, x: &[f64], y: &[f64]) -> f64 {
    let (l, g) = poly_fit_grad(p, x, y);
    let mut n2 = g.p.scale * g.p.scale;
    for k in 0..g.p.c.len() {
        n2 += g.p.c[k] * g.p.c[k];
    }
    l + 0.25 * n2
}

#[test]
fn gradient_of_a_struct_gradient() {
    let p = Poly {
        c: vec![0.2, -0.4, 0.3],
        scale: 1.3,
    };
    let (value, g) = poly_penalised_grad(&p, &XS, &YS);
    assert_eq!(value, poly_penalised(&p, &XS, &YS));
    // ∇ = ∇l + ½ H ∇l
    let (_, gl) = poly_fit_grad(&p, &XS, &YS);
    let (_, _, hv) = poly_fit_hvp(&p, &XS, &YS, &gl.p);
    close(g.p.scale, gl.p.scale + 0.5 * hv.p.scale, 1e-14, "∂/∂scale");
    for k in 0..3 {
        close(g.p.c[k], gl.p.c[k] + 0.5 * hv.p.c[k], 1e-14, "∂/∂c");
    }
    backprop::gradcheck!(poly_penalised(p = &p, x = const &XS, y = const &YS)).assert();
}

// ---- forms: in a loop, bound whole, one half ignored, generic --------------------------

/// A gradient call per iteration, with arguments that change each time.
#[grad]
fn in_a_loop(a: f64, b: f64) -> f64 {
    let mut s = 0.0;
    for k in 0..3 {
        let (l, g) = inner_grad(a * (k as f64 + 1.0), b);
        s += l * g.b + g.a;
    }
    s
}

#[test]
fn gradient_calls_in_a_loop() {
    let (a, b) = (0.35, 0.8);
    let (value, g) = in_a_loop_grad(a, b);
    assert_eq!(value, in_a_loop(a, b));
    let f = |x: &[f64]| in_a_loop(x[0], x[1]);
    let num = crate::support::fd(&f, &[a, b]);
    close(g.a, num[0], 1e-7, "∂/∂a");
    close(g.b, num[1], 1e-7, "∂/∂b");
    backprop::gradcheck!(in_a_loop(a = 0.35, b = 0.8)).assert();
}

/// `let r = h_grad(..)`, then `r.0` and `r.1.a`.
#[grad]
fn bound_whole(a: f64, b: f64) -> f64 {
    let r = inner_grad(a, b);
    r.0 * r.1.a + r.1.b
}

/// Read in place: `h_grad(..).1.a`.
#[grad]
fn read_in_place(a: f64, b: f64) -> f64 {
    inner_grad(a, b).0 * inner_grad(a, b).1.a
}

#[test]
fn gradient_fields_read_in_place() {
    let (a, b) = (0.35, 0.8);
    let (v, g) = read_in_place_grad(a, b);
    let (v2, g2) = bound_whole_grad(a, b);
    // bound_whole adds r.1.b; the rest is the same product.
    let (_, gi) = inner_grad(a, b);
    assert_eq!(v, v2 - gi.b);
    let num = crate::support::fd(&|x: &[f64]| read_in_place(x[0], x[1]), &[a, b]);
    close(g.a, num[0], 1e-7, "∂/∂a");
    close(g.b, num[1], 1e-7, "∂/∂b");
    let _ = g2;
}

/// Only the gradient: `let (_, g) = ..`.
#[grad]
fn gradient_only(a: f64, b: f64) -> f64 {
    let (_, g) = inner_grad(a, b);
    (g.a * g.b).sin()
}

#[test]
fn bound_whole_and_gradient_only() {
    for (a, b) in [(0.35, 0.8), (-1.1, 0.45)] {
        let (v, g) = bound_whole_grad(a, b);
        assert_eq!(v, bound_whole(a, b));
        let num = crate::support::fd(&|x: &[f64]| bound_whole(x[0], x[1]), &[a, b]);
        close(g.a, num[0], 1e-7, "bound whole ∂/∂a");
        close(g.b, num[1], 1e-7, "bound whole ∂/∂b");
        let (v, g) = gradient_only_grad(a, b);
        assert_eq!(v, gradient_only(a, b));
        let num = crate::support::fd(&|x: &[f64]| gradient_only(x[0], x[1]), &[a, b]);
        close(g.a, num[0], 1e-7, "gradient only ∂/∂a");
        close(g.b, num[1], 1e-7, "gradient only ∂/∂b");
    }
}

#[grad]
fn inner_generic<T: num_traits::Float>(a: T, b: T) -> T {
    (a * b).sin() + a * a * b
}

#[grad]
fn outer_generic<T: num_traits::Float>(a: T, b: T) -> T {
    let (l, g) = inner_generic_grad(a, b);
    l + g.a * g.a + g.b * g.b
}

#[test]
fn generic_floats_nest() {
    let (v64, g64) = outer_generic_grad(0.4_f64, -0.9);
    let (v, g) = penalty_grad(0.4, -0.9);
    assert_eq!((v64, g64.a, g64.b), (v, g.a, g.b));
    let (v32, g32) = outer_generic_grad(0.4_f32, -0.9);
    assert!((v32 - v as f32).abs() < 1e-5 && (g32.a - g.a as f32).abs() < 1e-4);
}

// ---- forward mode and second order of the outer function ------------------------------

#[test]
fn outer_jvp_pairs_the_gradient() {
    let (value, t) = penalty_jvp(0.4, -0.9, 0.5, 2.0);
    let (v, g) = penalty_grad(0.4, -0.9);
    assert_eq!(value, v);
    close(t, 0.5 * g.a + 2.0 * g.b, 1e-15, "jvp");
}

#[test]
#[should_panic(expected = "would need third derivatives")]
#[allow(deprecated)]
fn outer_hvp_is_a_third_derivative_and_refused() {
    let _ = penalty_hvp(0.4, -0.9, 1.0, 0.0);
}

/// Nested twice: the gradient of a function that itself calls a gradient. It compiles
/// (with a deprecation warning at the call, silenced here) and panics saying why.
#[grad]
#[allow(deprecated)]
fn nested_twice(a: f64, b: f64) -> f64 {
    let (_, g) = penalty_grad(a, b);
    g.a * g.b
}

#[test]
#[should_panic(
    expected = "`penalty` calls another function's gradient (`f_grad`), so its Hessian-vector product would need third derivatives"
)]
fn nesting_twice_panics_saying_why() {
    let _ = nested_twice_grad(0.4, -0.9);
}

// ---- ndarray code ---------------------------------------------------------------------

#[grad]
fn array_energy(w: &ndarray::Array1<f64>) -> f64 {
    (w * w).sum()
}

#[grad]
fn array_penalty(w: &ndarray::Array1<f64>) -> f64 {
    let (l, g) = array_energy_grad(w);
    l + (&g.w * &g.w).sum()
}

/// `l = Σw²`, `∇l = 2w`: `Σw² + Σ(2w)² = 5Σw²`, whose gradient is `10w`.
#[test]
fn nested_array_code_by_hand() {
    let (value, g) = array_penalty_grad(&ndarray::arr1(&[1.0, 2.0]));
    assert_eq!(value, 25.0);
    assert_eq!(g.w, ndarray::arr1(&[10.0, 20.0]));
}

#[grad]
fn layer_energy(w: &ndarray::Array2<f64>, x: &ndarray::Array2<f64>) -> f64 {
    x.dot(w).mapv(f64::tanh).sum()
}

/// A gradient penalty on a layer: `e(w) + ½‖∇_w e‖²`, whose gradient is
/// `∇e + ∇²e·∇e` (one `layer_energy_hvp` in the reverse pass).
#[grad(w)]
fn layer_penalty(w: &ndarray::Array2<f64>, x: &ndarray::Array2<f64>) -> f64 {
    let (e, g) = layer_energy_grad(w, x);
    e + 0.5 * (&g.w * &g.w).sum()
}

#[test]
fn a_gradient_penalty_on_ndarray_code() {
    let w = ndarray::array![[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]];
    let x = ndarray::array![[0.7, -1.1], [0.2, 0.9], [-0.4, 0.3], [1.2, 0.5]];
    let (_, g) = layer_penalty_grad(&w, &x);
    // ∇e + H·∇e from the callee's own companions.
    let (_, ge) = layer_energy_grad(&w, &x);
    let (_, _, hv) = layer_energy_hvp(&w, &x, &ge.w, &ndarray::Array2::zeros(x.dim()));
    let expected = &ge.w + &hv.w;
    for (a, b) in g.w.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    backprop::gradcheck!(layer_penalty(w = &w, x = const &x)).assert();
}

/// The gradient's buffer read inside a loop and a branch that each call `f_grad`.
#[grad(w)]
fn parts_in_blocks(w: &[f64], x: &[f64], y: &[f64], flip: bool) -> f64 {
    let mut s = 0.0;
    for k in 0..2 {
        let (_, g) = line_loss_grad(w, &x[k..], &y[k..]);
        s += g.w[0] * g.w[1] * (k as f64 + 1.0);
    }
    if flip {
        let (l, g) = line_loss_grad(w, x, y);
        s += l * g.w[1];
    } else {
        s += w[0];
    }
    s
}

/// `f_grad` of a buffer this function made (the call is checkpointed: the tape keeps
/// a copy of the buffer).
#[grad(w)]
fn of_a_local_buffer(w: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let mut v = w.to_vec();
    v[0] = w[0] * w[1];
    let (l, g) = line_loss_grad(&v, x, y);
    v[1] = 3.0;
    l * g.w[0] + v[1] * g.w[1]
}

#[test]
fn parts_of_gradients_in_loops_branches_and_of_local_buffers() {
    let w = [0.6, -0.35];
    for flip in [false, true] {
        let (value, g) = parts_in_blocks_grad(&w, &XS, &YS, flip);
        let f = |w: &[f64]| parts_in_blocks(w, &XS, &YS, flip);
        assert_eq!(value, f(&w));
        let num = crate::support::fd(&f, &w);
        for k in 0..2 {
            close(g.w[k], num[k], 1e-7, "loops and branches");
        }
    }
    let (value, g) = of_a_local_buffer_grad(&w, &XS, &YS);
    let f = |w: &[f64]| of_a_local_buffer(w, &XS, &YS);
    assert_eq!(value, f(&w));
    let num = crate::support::fd(&f, &w);
    for k in 0..2 {
        close(g.w[k], num[k], 1e-7, "a local buffer");
    }
    backprop::gradcheck!(of_a_local_buffer(w = &w, x = const &XS, y = const &YS)).assert();
}

// ---- methods: `self.energy_grad(x)` in a `#[grad] impl` --------------------------------

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Quad {
    a: f64,
    b: f64,
}

#[grad]
impl Quad {
    #[grad]
    fn energy(&self, x: f64) -> f64 {
        self.a * x * x + (self.b * x).sin()
    }

    /// The energy plus its slope squared and its sensitivity to `a`.
    #[grad]
    fn sharpness(&self, x: f64) -> f64 {
        let (e, g) = self.energy_grad(x);
        e + g.x * g.x + g.self_.a
    }

    /// The same through the associated-function form.
    #[grad]
    fn sharpness_assoc(&self, x: f64) -> f64 {
        let (e, g) = Self::energy_grad(self, x);
        e + g.x * g.x + g.self_.a
    }
}

#[test]
fn methods_call_their_siblings_gradients() {
    let q = Quad { a: 0.7, b: -1.2 };
    let x = 0.45;
    let (value, g) = q.sharpness_grad(x);
    assert_eq!(value, q.sharpness(x));
    let f = |v: &[f64]| Quad { a: v[0], b: v[1] }.sharpness(v[2]);
    let num = crate::support::fd(&f, &[q.a, q.b, x]);
    close(g.self_.a, num[0], 1e-7, "∂/∂a");
    close(g.self_.b, num[1], 1e-7, "∂/∂b");
    close(g.x, num[2], 1e-7, "∂/∂x");
    let (value2, g2) = q.sharpness_assoc_grad(x);
    assert_eq!(
        (value2, g2.x, g2.self_.clone()),
        (value, g.x, g.self_.clone())
    );
}

// ---- the gradient lent whole to another call ---------------------------------------

#[grad]
fn pair_product(w: &[f64]) -> f64 {
    w[0] * w[1] + (w[0] - w[1]).sin()
}

/// `&g.w` to a `#[grad]` function, to a runtime function, and to another `f_grad`.
#[grad]
fn lent_gradient(w: &[f64]) -> f64 {
    let (_, g) = pair_product_grad(w);
    let (_, gg) = pair_product_grad(&g.w);
    pair_product(&g.w) + backprop::logsumexp(&g.w) + gg.w[0]
}

/// The struct gradient lent whole (`&g.p`) and its buffer field (`&g.p.c`).
#[grad(p)]
fn lent_struct_gradient(p: &Poly, x: &[f64], y: &[f64]) -> f64 {
    let (_, g) = poly_fit_grad(p, x, y);
    poly_fit(&g.p, x, y) + pair_product(&g.p.c)
}

#[test]
fn gradients_lent_to_calls() {
    let w = [0.4, -0.7];
    let (value, g) = lent_gradient_grad(&w);
    assert_eq!(value, lent_gradient(&w));
    let num = crate::support::fd(&|w: &[f64]| lent_gradient(w), &w);
    for k in 0..2 {
        close(g.w[k], num[k], 1e-7, "lent buffer");
    }
    backprop::gradcheck!(lent_gradient(w = &w)).assert();
    let p = Poly {
        c: vec![0.2, -0.4, 0.3],
        scale: 0.6,
    };
    let (value, _) = lent_struct_gradient_grad(&p, &XS, &YS);
    assert_eq!(value, lent_struct_gradient(&p, &XS, &YS));
    backprop::gradcheck!(lent_struct_gradient(p = &p, x = const &XS, y = const &YS)).assert();
}

#[grad]
fn field_energy(x: &ndarray::Array2<f64>, g: &ndarray::Array1<f64>) -> f64 {
    x.dot(g).mapv(f64::tanh).sum()
}

/// A gradient's array fields used by value (`d.x + b`) and by a method (`d.g.sum()`).
#[grad]
fn gradient_fields_by_value(
    x: &ndarray::Array2<f64>,
    g: &ndarray::Array1<f64>,
    b: &ndarray::Array1<f64>,
) -> f64 {
    let (_, d) = field_energy_grad(x, g);
    (d.x + b).mapv(|v| v * v).sum() + d.g.sum()
}

#[test]
fn array_fields_of_a_gradient_used_by_value() {
    let x = ndarray::array![[0.1, 0.2], [0.5, -0.3], [0.7, 0.4]];
    let (g, b) = (ndarray::array![1.0, -0.5], ndarray::array![0.2, 0.1]);
    backprop::gradcheck!(gradient_fields_by_value(x = &x, g = &g, b = &b)).assert();
}
