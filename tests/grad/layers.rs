//! Array-valued `#[grad]` functions (layers): `f_vjp` with any output cotangent, calls
//! from other `#[grad]` functions at any depth, and the same network written with and
//! without layer functions giving the same gradient.

use backprop::{Pullback, grad};
use ndarray::{Array1, Array2, Axis, array};

/// LayerNorm over the last axis (Ba, Kiros & Hinton 2016), eps = 1e-5, written with the
/// array operations `#[grad]` supports: statistics over the columns of `xᵀ`.
#[grad]
fn layer_norm(x: &Array2<f64>, gamma: &Array1<f64>, beta: &Array1<f64>) -> Array2<f64> {
    let xt = x.t();
    let mean = xt.mean_axis(Axis(0)).unwrap();
    let xc = &xt - &mean;
    let var = (&xc * &xc).mean_axis(Axis(0)).unwrap();
    let std = (var + 1e-5).sqrt();
    let xhat = &xc / &std;
    &xhat.t() * gamma + beta
}

/// `tanh(x·w + b)`.
#[grad]
fn dense(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    (x.dot(w) + b).tanh()
}

/// A pre-norm residual block: `x + dense(layer_norm(x))`.
#[grad]
fn block(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
) -> Array2<f64> {
    let h = layer_norm(x, gamma, beta);
    let z = dense(&h, w, b);
    x + &z
}

/// Two blocks sharing weights, then the mean square: three levels of calls.
#[grad]
fn two_blocks(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
) -> f64 {
    let y = block(x, w, b, gamma, beta);
    let y2 = block(&y, w, b, gamma, beta);
    (&y2 * &y2).mean().unwrap()
}

/// The same network with every layer written inline.
#[grad]
fn two_blocks_inlined(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
) -> f64 {
    let xt = x.t();
    let mean = xt.mean_axis(Axis(0)).unwrap();
    let xc = &xt - &mean;
    let var = (&xc * &xc).mean_axis(Axis(0)).unwrap();
    let xhat = &xc / &(var + 1e-5).sqrt();
    let h = &xhat.t() * gamma + beta;
    let y = x + &(h.dot(w) + b).tanh();
    let yt = y.t();
    let mean2 = yt.mean_axis(Axis(0)).unwrap();
    let yc = &yt - &mean2;
    let var2 = (&yc * &yc).mean_axis(Axis(0)).unwrap();
    let yhat = &yc / &(var2 + 1e-5).sqrt();
    let h2 = &yhat.t() * gamma + beta;
    let y2 = &y + &(h2.dot(w) + b).tanh();
    (&y2 * &y2).mean().unwrap()
}

struct Point {
    x: Array2<f64>,
    w: Array2<f64>,
    b: Array1<f64>,
    gamma: Array1<f64>,
    beta: Array1<f64>,
}

fn point() -> Point {
    Point {
        x: array![[1.0, 2.0, 0.5], [0.5, -1.0, 0.25]],
        w: array![[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [0.2, 0.1, 0.0]],
        b: array![0.1, 0.0, -0.1],
        gamma: array![1.0, 0.5, 2.0],
        beta: array![0.0, 0.1, -0.2],
    }
}

#[test]
fn layer_norm_by_hand() {
    let p = point();
    let y = layer_norm(&p.x, &p.gamma, &p.beta);
    // Row 0: mean 7/6, centred (−1/6, 5/6, −2/3), variance 7/18.
    let std = (7.0f64 / 18.0 + 1e-5).sqrt();
    let want = [
        -1.0 / 6.0 / std,
        5.0 / 6.0 / std * 0.5 + 0.1,
        -2.0 / 3.0 / std * 2.0 - 0.2,
    ];
    for (k, w) in want.iter().enumerate() {
        assert!((y[[0, k]] - w).abs() < 1e-14, "{} vs {w}", y[[0, k]]);
    }
    // `f_vjp`'s value is `f`'s.
    let (v, _) = layer_norm_vjp(&p.x, &p.gamma, &p.beta, Array2::ones((2, 3)));
    assert_eq!(v, y);
}

#[test]
fn layer_norm_vjp_of_ones_gives_the_column_sums_for_beta_and_zero_for_x_rows() {
    let p = point();
    let (_, g) = layer_norm_vjp(&p.x, &p.gamma, &p.beta, Array2::ones((2, 3)));
    // ∂β = Σ_rows d_out = 2 per column; ∂γ = Σ_rows x̂, ∂x: each row's VJP sums to 0
    // (LayerNorm is invariant to adding a constant to a row).
    assert_eq!(g.beta, array![2.0, 2.0, 2.0]);
    let xhat = layer_norm(&p.x, &Array1::ones(3), &Array1::zeros(3));
    for (k, s) in xhat.sum_axis(Axis(0)).iter().enumerate() {
        assert!((g.gamma[k] - s).abs() < 1e-14);
    }
    for row in g.x.rows() {
        assert!(row.sum().abs() < 1e-12, "{row}");
    }
}

/// ⟨d, J·u⟩ by central differences against ⟨Jᵀd, u⟩ from `f_vjp`, for a random pair.
#[test]
fn layer_vjp_matches_central_differences() {
    let p = point();
    let d = array![[0.3, -1.1, 0.7], [2.0, 0.4, -0.5]];
    let u = array![[0.2, 0.9, -0.4], [-0.6, 0.1, 0.8]];
    let (_, g) = dense_vjp(&p.x, &p.w, &p.b, d.clone());
    let h = 1e-6;
    let fp = dense(&(&p.x + &(&u * h)), &p.w, &p.b);
    let fm = dense(&(&p.x - &(&u * h)), &p.w, &p.b);
    let numeric = ((&fp - &fm) / (2.0 * h) * &d).sum();
    let reverse = (&g.x * &u).sum();
    assert!((numeric - reverse).abs() < 1e-8, "{numeric} vs {reverse}");
}

#[test]
fn nested_layers_gradcheck() {
    let p = point();
    backprop::gradcheck!(two_blocks(
        x = &p.x,
        w = &p.w,
        b = &p.b,
        gamma = &p.gamma,
        beta = &p.beta
    ))
    .assert();
}

#[test]
fn layers_as_functions_equal_the_network_inlined() {
    let p = point();
    let (v1, g1) = two_blocks_grad(&p.x, &p.w, &p.b, &p.gamma, &p.beta);
    let (v2, g2) = two_blocks_inlined_grad(&p.x, &p.w, &p.b, &p.gamma, &p.beta);
    assert!((v1 - v2).abs() < 1e-14);
    let close = |a: &Array2<f64>, b: &Array2<f64>| (a - b).iter().all(|e| e.abs() < 1e-12);
    assert!(close(&g1.x, &g2.x));
    assert!(close(&g1.w, &g2.w));
    for (a, b) in [(&g1.b, &g2.b), (&g1.gamma, &g2.gamma), (&g1.beta, &g2.beta)] {
        assert!((a - b).iter().all(|e| e.abs() < 1e-12), "{a} vs {b}");
    }
}

#[test]
fn a_layer_called_on_a_local_array_keeps_a_copy_and_its_tape() {
    let p = point();
    let (_, tape) = two_blocks_forward(&p.x, &p.w, &p.b, &p.gamma, &p.beta);
    let (_, first) = block_forward(&p.x, &p.w, &p.b, &p.gamma, &p.beta);
    // The second block runs on a copy of `y` (2×3 f64) that the tape keeps together with
    // that block's own tape, as large as the first block's: two blocks' tapes (a copy
    // alone, run again in reverse, would be one tape and 48 bytes).
    assert!(
        tape.bytes() >= 2 * first.bytes(),
        "{} vs {}",
        tape.bytes(),
        first.bytes()
    );
}

std::thread_local! {
    /// How many times `counted_square`'s forward ran on this thread.
    static FORWARD_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Σ xᵢ², counting its forward runs.
#[backprop::custom_vjp(counted_square_vjp)]
fn counted_square(x: &[f64]) -> f64 {
    FORWARD_RUNS.with(|n| n.set(n.get() + 1));
    x.iter().map(|v| v * v).sum()
}

fn counted_square_vjp(x: &[f64], _y: f64, d: f64) -> (Vec<f64>,) {
    (x.iter().map(|v| 2.0 * d * v).collect(),)
}

#[grad]
fn inner_on_a_local(h: &[f64]) -> f64 {
    let g: Vec<f64> = h.iter().map(|v| 3.0 * v).collect();
    counted_square(&g)
}

#[grad]
fn outer_on_a_local(x: &[f64]) -> f64 {
    let h: Vec<f64> = x.iter().map(|v| v + 1.0).collect();
    inner_on_a_local(&h) + x[0]
}

#[test]
fn calls_on_local_buffers_run_forward_once_at_every_depth() {
    // Two levels of calls on buffers the caller made: each callee's tape is kept with
    // its copy, so the innermost forward runs once per gradient (a rebuild in reverse
    // ran it three times). f = Σ 9(xᵢ + 1)² + x₀: ∂f/∂xᵢ = 18(xᵢ + 1) + [i = 0].
    FORWARD_RUNS.with(|n| n.set(0));
    let (value, g) = outer_on_a_local_grad(&[0.5, -2.0]);
    assert_eq!(FORWARD_RUNS.with(|n| n.get()), 1);
    assert_eq!(value, 9.0 * (2.25 + 1.0) + 0.5);
    assert_eq!(g.x, vec![18.0 * 1.5 + 1.0, -18.0]);
}

/// f32: the same layer instantiated at f32 agrees with f64.
#[grad]
fn dense32(x: &Array2<f32>, w: &Array2<f32>, b: &Array1<f32>) -> Array2<f32> {
    (x.dot(w) + b).tanh()
}

#[test]
fn f32_layer_agrees_with_f64() {
    let p = point();
    let d = array![[0.3, -1.1, 0.7], [2.0, 0.4, -0.5]];
    let (_, g64) = dense_vjp(&p.x, &p.w, &p.b, d.clone());
    let (_, g32) = dense32_vjp(
        &p.x.mapv(|v| v as f32),
        &p.w.mapv(|v| v as f32),
        &p.b.mapv(|v| v as f32),
        d.mapv(|v| v as f32),
    );
    for (a, b) in g64.w.iter().zip(g32.w.iter()) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
}

/// A layer whose signature names its lifetimes (what this test is about, so clippy's
/// advice to elide `'b` does not apply).
#[allow(clippy::needless_lifetimes)]
#[grad]
fn dense_named<'a, 'b>(x: &'a Array2<f64>, w: &'b Array2<f64>, b: &'a Array1<f64>) -> Array2<f64> {
    (x.dot(w) + b).tanh()
}

#[grad(w, b)]
fn named_lifetimes<'a>(
    x: &'a Array2<f64>,
    w: &'a Array2<f64>,
    b: &Array1<f64>,
    rows: &[usize],
) -> f64 {
    let h = dense_named(x, w, b);
    let y = dense_named(&h, w, b);
    let mut total = 0.0;
    for &r in rows {
        total += y.row(r).sum();
    }
    total
}

#[test]
fn layers_with_named_lifetimes_on_local_arrays() {
    let p = point();
    let rows = [1usize, 0, 1];
    let (value, g) = named_lifetimes_grad(&p.x, &p.w, &p.b, &rows);
    assert_eq!(value, named_lifetimes(&p.x, &p.w, &p.b, &rows));
    // The same through `f_forward`, a tape that outlives the local arrays it ran on.
    let (v2, tape) = named_lifetimes_forward(&p.x, &p.w, &p.b, &rows);
    let g2 = named_lifetimes_backward(tape, 1.0);
    assert_eq!((value, &g.w, &g.b), (v2, &g2.w, &g2.b));
    backprop::gradcheck!(named_lifetimes(x = const &p.x, w = &p.w, b = &p.b, rows = const &rows[..]))
        .assert();
}

// Layers that take views, handed views of arrays the caller made (`h.view()`, `h.t()`,
// `h.slice(..)`, `h.row(i)`), with the view types' lifetimes elided as users write them
// (`ArrayView1<f64>`). Before, the callee's tape borrowed the caller's local (E0597) and
// an elided view lifetime left the generated signatures without one (E0106).

/// `tanh(x·w)` on a view.
#[grad]
fn view_dense(x: ndarray::ArrayView2<f64>, w: &Array2<f64>) -> Array2<f64> {
    x.dot(w).tanh()
}

/// `Σ tanh(x ⊙ w)` on a 1-D view.
#[grad]
fn view_row(x: ndarray::ArrayView1<f64>, w: &Array1<f64>) -> f64 {
    (&x * w).tanh().sum()
}

#[grad]
fn views_of_a_local(x: &Array2<f64>, w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let h = x.dot(w);
    let a = view_dense(h.view(), w).sum();
    let b = view_dense(h.t(), w).sum();
    let c = view_dense(h.slice(ndarray::s![0..1, ..]), w).sum();
    let d = view_row(h.row(1), v);
    let e = view_row(h.column(2), &v.mapv(|t| t * 0.5));
    a + 0.5 * b + c * c + d + e
}

#[grad]
fn views_of_a_local_inline(x: &Array2<f64>, w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let h = x.dot(w);
    let a = h.dot(w).tanh().sum();
    let b = h.t().dot(w).tanh().sum();
    let c = h.slice(ndarray::s![0..1, ..]).dot(w).tanh().sum();
    let d = (&h.row(1) * v).tanh().sum();
    let e = (&h.column(2) * &v.mapv(|t| t * 0.5)).tanh().sum();
    a + 0.5 * b + c * c + d + e
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct ViewLayer {
    w: Array2<f64>,
}

#[grad]
fn view_stack(layers: &[ViewLayer], x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    for layer in layers {
        h = view_dense(h.view(), &layer.w);
    }
    (&h * &h).sum()
}

fn square3() -> (Array2<f64>, Array2<f64>, Array1<f64>) {
    (
        array![[0.3, 0.1, -0.1], [0.4, 0.2, 0.0], [0.5, 0.3, 0.1]],
        array![[0.05, -0.05, -0.15], [0.35, 0.25, 0.15], [0.65, 0.55, 0.45]],
        array![-0.3, -0.1, 0.1],
    )
}

#[test]
fn layers_on_views_of_local_arrays_equal_the_inline_code() {
    let (x, w, v) = square3();
    let (f, g) = views_of_a_local_grad(&x, &w, &v);
    let (fi, gi) = views_of_a_local_inline_grad(&x, &w, &v);
    assert!((f - fi).abs() < 1e-14, "{f} vs {fi}");
    for (a, b) in [(&g.x, &gi.x), (&g.w, &gi.w)] {
        for (p, q) in a.iter().zip(b.iter()) {
            assert!((p - q).abs() < 1e-13, "{p} vs {q}");
        }
    }
    for (p, q) in g.v.iter().zip(gi.v.iter()) {
        assert!((p - q).abs() < 1e-13, "{p} vs {q}");
    }
    backprop::gradcheck!(views_of_a_local(x = &x, w = &w, v = &v)).assert();
    // Forward mode through the same calls: the gradient paired with the tangents.
    let (tx, tw, tv) = (x.mapv(|t| t - 0.2), w.t().to_owned(), v.mapv(|t| 1.0 - t));
    let (fj, dj) = views_of_a_local_jvp(&x, &w, &v, &tx, &tw, &tv);
    let paired = (&g.x * &tx).sum() + (&g.w * &tw).sum() + (&g.v * &tv).sum();
    assert!(
        (fj - f).abs() < 1e-14 && (dj - paired).abs() < 1e-12,
        "{dj} vs {paired}"
    );
    let layers = vec![
        ViewLayer { w: w.clone() },
        ViewLayer {
            w: w.t().to_owned(),
        },
    ];
    backprop::gradcheck!(view_stack(layers = &layers, x = &x)).assert();
}

/// A layer that takes its input buffer by value.
#[grad]
fn owned_cubes(h: Vec<f64>, w: &[f64]) -> f64 {
    h.iter().zip(w).map(|(a, b)| a * b * a).sum()
}

#[grad]
fn local_vec_moved_into_a_layer(x: &[f64]) -> f64 {
    let h: Vec<f64> = x.iter().map(|v| v * 2.0).collect();
    owned_cubes(h, x)
}

#[test]
fn a_local_vec_moved_into_a_layer() {
    // f = Σ (2xᵢ)²·xᵢ = 4 Σ xᵢ³, so ∂f/∂xᵢ = 12 xᵢ².
    let x = vec![0.3, -0.2, 0.5];
    let (f, g) = local_vec_moved_into_a_layer_grad(&x);
    assert!((f - 4.0 * x.iter().map(|v| v * v * v).sum::<f64>()).abs() < 1e-15);
    for (d, v) in g.x.iter().zip(&x) {
        assert!((d - 12.0 * v * v).abs() < 1e-14, "{d} vs {}", 12.0 * v * v);
    }
    let (_, dj) = local_vec_moved_into_a_layer_jvp(&x, &[1.0, 0.0, -1.0]);
    assert!((dj - (g.x[0] - g.x[2])).abs() < 1e-14);
    backprop::gradcheck!(local_vec_moved_into_a_layer(x = &x)).assert();
}

/// A buffer made by `vec![0.0; n]` and element writes moves into the call (its adjoint
/// is sized by `n`, so the reverse pass does not read it); one built by `collect` is
/// copied (its adjoint is sized by its length).
#[grad]
fn local_filled_vec_moved_into_a_layer(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    for i in 0..x.len() {
        h[i] = x[i] * 2.0;
    }
    owned_cubes(h, x)
}

#[test]
fn a_local_filled_vec_moved_into_a_layer() {
    let x = vec![0.3, -0.2, 0.5];
    let (f, g) = local_filled_vec_moved_into_a_layer_grad(&x);
    assert!((f - 4.0 * x.iter().map(|v| v * v * v).sum::<f64>()).abs() < 1e-15);
    for (d, v) in g.x.iter().zip(&x) {
        assert!((d - 12.0 * v * v).abs() < 1e-14, "{d} vs {}", 12.0 * v * v);
    }
    backprop::gradcheck!(local_filled_vec_moved_into_a_layer(x = &x)).assert();
}

// A user's own layer may have the name of one of `backprop::ops`' functions (`gelu`,
// `softmax`, `layer_norm` above): called by its bare name on an array the caller made,
// it is kept like any layer. Before, a bare name was taken for the runtime's op, whose
// tape owns its inputs, and the user's borrowing tape failed to compile (E0597).

mod own_ops {
    use backprop::grad;
    use ndarray::{Array2, Axis};

    /// GELU in its tanh form, written out.
    #[grad]
    pub fn gelu(x: &Array2<f64>) -> Array2<f64> {
        let inner = (x + &(x * x * x * 0.044715)) * (2.0 / std::f64::consts::PI).sqrt();
        x * &((inner.tanh() + 1.0) * 0.5)
    }

    /// Row softmax, written out, on a view.
    #[grad]
    pub fn softmax(x: ndarray::ArrayView2<f64>) -> Array2<f64> {
        let e = x.exp();
        let s = e.sum_axis(Axis(1)).insert_axis(Axis(1));
        &e / &s
    }

    /// Squared error against targets in a slice.
    #[grad]
    pub fn mse(x: &Array2<f64>, targets: &[f64]) -> f64 {
        x.iter().zip(targets).map(|(a, t)| (a - t) * (a - t)).sum()
    }
}
use own_ops::{gelu, mse, softmax};

#[grad]
fn own_ops_on_locals(
    x: &Array2<f64>,
    w: &Array2<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
) -> f64 {
    let z = x.dot(w);
    let h = layer_norm(&z, gamma, beta);
    let a = gelu(&h);
    let a2 = &a * 2.0;
    let p = softmax(a2.view());
    (&p * &z).sum() + a.sum() + mse(&p, &[0.5; 9])
}

#[grad]
fn own_ops_inline(
    x: &Array2<f64>,
    w: &Array2<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
) -> f64 {
    let z = x.dot(w);
    let zt = z.t();
    let mean = zt.mean_axis(Axis(0)).unwrap();
    let zc = &zt - &mean;
    let var = (&zc * &zc).mean_axis(Axis(0)).unwrap();
    let h = &(&zc / &(var + 1e-5).sqrt()).t() * gamma + beta;
    let inner = (&h + &(&h * &h * &h * 0.044715)) * (2.0 / std::f64::consts::PI).sqrt();
    let a = &h * &((inner.tanh() + 1.0) * 0.5);
    let e = (&a * 2.0).exp();
    let p = &e / &e.sum_axis(Axis(1)).insert_axis(Axis(1));
    (&p * &z).sum() + a.sum() + p.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f64>()
}

#[test]
fn own_layers_named_like_runtime_ops_work_on_locals() {
    let (x, w, _) = square3();
    let (gamma, beta) = (array![1.0, 0.5, -0.8], array![0.1, 0.0, -0.2]);
    let (f, g) = own_ops_on_locals_grad(&x, &w, &gamma, &beta);
    let (fi, gi) = own_ops_inline_grad(&x, &w, &gamma, &beta);
    assert!((f - fi).abs() < 1e-13, "{f} vs {fi}");
    for (a, b) in
        g.w.iter()
            .zip(gi.w.iter())
            .chain(g.x.iter().zip(gi.x.iter()))
    {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    for (a, b) in g.gamma.iter().zip(gi.gamma.iter()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    backprop::gradcheck!(own_ops_on_locals(
        x = &x,
        w = &w,
        gamma = &gamma,
        beta = &beta
    ))
    .assert();
}

// ---------------------------------------------------------------- heads joined in a loop

/// Per-head weights in a list, each head's output joined with `concatenate!`/`stack!`
/// inside the macro: the loop variable is a list element only the macro's arguments
/// use (a tryout found it taken for a float and three rustc errors).
mod joined_heads {
    use backprop::{Differentiable, grad};
    use ndarray::{Array2, Axis, concatenate, stack};

    #[derive(Clone, Debug, Differentiable)]
    pub struct Head {
        pub w: Array2<f64>,
    }

    #[derive(Clone, Debug, Differentiable)]
    pub struct Block {
        pub heads: Vec<Head>,
    }

    #[grad]
    pub fn head(x: &Array2<f64>, h: &Head) -> Array2<f64> {
        x.dot(&h.w).mapv(f64::tanh)
    }

    #[grad]
    pub fn joined_in_macro(x: &Array2<f64>, b: &Block) -> f64 {
        let mut out = x.clone();
        for hd in &b.heads {
            out = concatenate![Axis(1), out, head(x, hd)];
        }
        let mut st = stack![Axis(0), head(x, &b.heads[0])];
        for hd in b.heads.iter().rev() {
            st = concatenate![Axis(0), st, stack![Axis(0), head(x, hd)]];
        }
        (&out * &out).sum() + st.mapv(f64::sin).sum()
    }

    /// The same with each head's output bound first.
    #[grad]
    pub fn joined_after_let(x: &Array2<f64>, b: &Block) -> f64 {
        let mut out = x.clone();
        for hd in &b.heads {
            let o = head(x, hd);
            out = concatenate![Axis(1), out, o];
        }
        let mut st = stack![Axis(0), head(x, &b.heads[0])];
        for hd in b.heads.iter().rev() {
            let o = head(x, hd);
            let s = stack![Axis(0), o];
            st = concatenate![Axis(0), st, s];
        }
        (&out * &out).sum() + st.mapv(f64::sin).sum()
    }
}

#[test]
fn heads_joined_inside_the_macro() {
    use joined_heads::*;
    let x = array![[0.3, -0.2], [0.5, 0.1], [-0.4, 0.7]];
    let b = Block {
        heads: vec![
            Head {
                w: array![[0.2, -0.1, 0.4], [0.3, 0.5, -0.2]],
            },
            Head {
                w: array![[-0.3, 0.1, 0.2], [0.6, -0.4, 0.1]],
            },
        ],
    };
    let (l, g) = joined_in_macro_grad(&x, &b);
    let (l2, g2) = joined_after_let_grad(&x, &b);
    assert_eq!(l, l2);
    assert_eq!(g.x, g2.x);
    for (h, h2) in g.b.heads.iter().zip(&g2.b.heads) {
        assert_eq!(h.w, h2.w);
    }
    backprop::gradcheck!(joined_in_macro(x = &x, b = &b)).assert();
}
