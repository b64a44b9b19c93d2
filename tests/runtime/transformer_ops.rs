//! The fused transformer ops of `backprop::ops` (issue #15, part 2): every op gradchecked
//! in f64 through a small `#[grad]` wrapper (so the companion `op::forward` and its tape
//! are what is checked), transposed operands, hand-computed values, f32 against f64,
//! masked rows and −∞ logits free of NaN, attention's tape linear in T, and shape errors
//! naming the op and both shapes.

#![allow(clippy::excessive_precision)]

use crate::rng::Rng;
use backprop::ops::{
    self, XentOptions, attention, cross_entropy, dropout, embedding, gelu_exact, layer_norm,
    rms_norm, softmax_causal, softmax_masked,
};
use backprop::{Pullback, grad, gradcheck};
use ndarray::{Array, Array1, Array2, Array3, Array4, Dimension, array};

fn max_abs_diff<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn to_f32<D: Dimension>(a: &Array<f64, D>) -> Array<f32, D> {
    a.mapv(|v| v as f32)
}

fn to_f64<D: Dimension>(a: &Array<f32, D>) -> Array<f64, D> {
    a.mapv(|v| v as f64)
}

// ---------------------------------------------------------------- layer_norm, rms_norm

#[grad(x, g, b)]
fn ln3(x: &Array3<f64>, g: &Array1<f64>, b: &Array1<f64>, w: &Array3<f64>) -> f64 {
    let y = layer_norm(x, g, b, 1e-5);
    (&y * w).sum()
}

/// The operand is a transposed (strided) view of `x`.
#[grad(x, g, b)]
fn ln_t(x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>, w: &Array2<f64>) -> f64 {
    let y = layer_norm(&x.t(), g, b, 1e-5);
    (&y * w).sum()
}

#[grad(x, g)]
fn rms3(x: &Array3<f64>, g: &Array1<f64>, w: &Array3<f64>) -> f64 {
    let y = rms_norm(x, g, 1e-6);
    (&y * w).sum()
}

#[grad(x, g)]
fn rms_t(x: &Array2<f64>, g: &Array1<f64>, w: &Array2<f64>) -> f64 {
    let y = rms_norm(&x.t(), g, 1e-6);
    (&y * w).sum()
}

#[test]
fn gradcheck_layer_norm_and_rms_norm() {
    let mut r = Rng(1);
    let (x, w) = (r.array((2, 3, 5)), r.array((2, 3, 5)));
    let (g, b) = (r.array(5) + 1.0, r.array(5));
    gradcheck!(ln3(x = &x, g = &g, b = &b, w = const &w)).assert();
    gradcheck!(rms3(x = &x, g = &g, w = const &w)).assert();
    // x is 5×4 in memory; the op sees its 4×5 transpose.
    let (xt, wt) = (r.array((5, 4)), r.array((4, 5)));
    gradcheck!(ln_t(x = &xt, g = &g, b = &b, w = const &wt)).assert();
    gradcheck!(rms_t(x = &xt, g = &g, w = const &wt)).assert();
}

#[test]
fn layer_norm_and_rms_norm_by_hand() {
    // x = [1, 2, 3]: μ = 2, σ² = 2/3, x̂ = [−1, 0, 1]·√(3/2).
    let y = layer_norm(
        &array![[1.0f64, 2.0, 3.0]],
        &array![1.0, 1.0, 2.0],
        &array![0.0, 0.5, 0.0],
        0.0,
    );
    let s = 1.5f64.sqrt();
    assert!(max_abs_diff(&y, &array![[-s, 0.5, 2.0 * s]]) < 1e-15, "{y}");
    // rms([3, 4]) = √12.5.
    let y = rms_norm(&array![3.0f64, 4.0], &array![1.0, 1.0], 0.0);
    assert!(max_abs_diff(&y, &array![3.0 / 12.5f64.sqrt(), 4.0 / 12.5f64.sqrt()]) < 1e-15);
    // The tape keeps x, γ and two numbers per row: (6 + 3 + 2·2)·8 bytes of heap.
    let x = Array2::<f64>::ones((2, 3));
    let (_, tape) = ops::layer_norm::forward(&x, &Array1::ones(3), &Array1::zeros(3), 1e-5);
    let heap = (6 + 3 + 4) * 8;
    assert!(
        tape.bytes() >= heap && tape.bytes() < heap + 512,
        "{}",
        tape.bytes()
    );
    // A constant row: x̂ = 0, d_x = (1/√ε)(g − mean g) and finite.
    let (_, tape) = ops::layer_norm::forward(&x, &Array1::ones(3), &Array1::zeros(3), 1e-5);
    let (dx, dg, db, _) = tape.backward(array![[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]);
    assert!(dx.iter().all(|v| v.is_finite()));
    assert_eq!(dg, array![0.0, 0.0, 0.0]);
    assert_eq!(db, array![1.0, 2.0, 3.0]);
}

/// Layer (or RMS) normalisation and its pullback written out per row, unfused:
/// `(y, d_x, d_γ, d_β)` for the cotangent `dy`.
fn norm_reference(
    x: &Array2<f64>,
    g: &Array1<f64>,
    b: &Array1<f64>,
    dy: &Array2<f64>,
    rms: bool,
) -> (Array2<f64>, Array2<f64>, Array1<f64>, Array1<f64>) {
    let (eps, d) = (if rms { 1e-6 } else { 1e-5 }, x.ncols() as f64);
    let (mut y, mut dx) = (Array2::zeros(x.dim()), Array2::zeros(x.dim()));
    let (mut dg, mut db) = (Array1::zeros(x.ncols()), Array1::zeros(x.ncols()));
    for r in 0..x.nrows() {
        let row = x.row(r);
        let mu = if rms { 0.0 } else { row.sum() / d };
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d;
        let rs = 1.0 / (var + eps).sqrt();
        let xh: Vec<f64> = row.iter().map(|v| (v - mu) * rs).collect();
        let gy: Vec<f64> = (0..x.ncols()).map(|j| dy[[r, j]] * g[j]).collect();
        let mean_g = if rms { 0.0 } else { gy.iter().sum::<f64>() / d };
        let mean_gx = gy.iter().zip(&xh).map(|(a, c)| a * c).sum::<f64>() / d;
        for j in 0..x.ncols() {
            y[[r, j]] = xh[j] * g[j] + if rms { 0.0 } else { b[j] };
            dx[[r, j]] = rs * (gy[j] - mean_g - xh[j] * mean_gx);
            dg[j] += dy[[r, j]] * xh[j];
            db[j] += dy[[r, j]];
        }
    }
    (y, dx, dg, db)
}

/// The norms' row loops keep 8 accumulator lanes and run their sums in blocks of 8:
/// every width on both sides of a block edge matches the unfused reference, through
/// the companion's tape (which writes d_x over its copy of x), the public pullback,
/// and f32.
#[test]
fn norms_match_the_unfused_reference_around_the_lane_width() {
    let mut r = Rng(11);
    for d in [1, 2, 7, 8, 9, 15, 16, 17, 24, 33, 128] {
        let (x, dy) = (r.array((3, d)) * 2.0 + 0.5, r.array((3, d)));
        let (g, b) = (r.array(d) + 1.0, r.array(d));
        let (y, dx, dg, db) = norm_reference(&x, &g, &b, &dy, false);
        let (v, tape) = ops::layer_norm::forward(&x, &g, &b, 1e-5);
        let (a, ag, ab, _) = tape.backward(dy.clone());
        let (pa, pg, pb) = ops::layer_norm_vjp(
            &x,
            &g,
            &ops::layer_norm_with_stats(&x, &g, &b, 1e-5).1,
            &ops::layer_norm_with_stats(&x, &g, &b, 1e-5).2,
            &dy,
        );
        assert!(max_abs_diff(&v, &y) < 1e-13, "layer_norm y, d = {d}");
        for (got, want) in [(&a, &dx), (&pa, &dx)] {
            assert!(max_abs_diff(got, want) < 1e-12, "layer_norm d_x, d = {d}");
        }
        for (got, want) in [(&ag, &dg), (&ab, &db), (&pg, &dg), (&pb, &db)] {
            assert!(
                max_abs_diff(got, want) < 1e-12,
                "layer_norm d_γ/d_β, d = {d}"
            );
        }
        let (ry, rdx, rdg, _) = norm_reference(&x, &g, &b, &dy, true);
        let (v, tape) = ops::rms_norm::forward(&x, &g, 1e-6);
        let (a, ag, _) = tape.backward(dy.clone());
        assert!(max_abs_diff(&v, &ry) < 1e-13, "rms_norm y, d = {d}");
        assert!(
            max_abs_diff(&a, &rdx) < 1e-12 && max_abs_diff(&ag, &rdg) < 1e-12,
            "rms_norm, d = {d}"
        );
        let (_, t32) = ops::layer_norm::forward(&to_f32(&x), &to_f32(&g), &to_f32(&b), 1e-5f32);
        let (a32, g32, b32, _) = t32.backward(to_f32(&dy));
        assert!(max_abs_diff(&to_f64(&a32), &dx) < 1e-4, "f32 d_x, d = {d}");
        assert!(max_abs_diff(&to_f64(&g32), &dg) < 1e-4 && max_abs_diff(&to_f64(&b32), &db) < 1e-4);
    }
    // Gradchecked at widths with full blocks and a tail, transposed too.
    let (x, w) = (r.array((2, 3, 17)), r.array((2, 3, 17)));
    let (g, b) = (r.array(17) + 1.0, r.array(17));
    gradcheck!(ln3(x = &x, g = &g, b = &b, w = const &w)).assert();
    gradcheck!(rms3(x = &x, g = &g, w = const &w)).assert();
    let (xt, wt) = (r.array((9, 4)), r.array((4, 9)));
    let (g, b) = (r.array(9) + 1.0, r.array(9));
    gradcheck!(ln_t(x = &xt, g = &g, b = &b, w = const &wt)).assert();
}

/// Inputs large enough to split across rayon's threads (the norms' blocks of 64 rows,
/// the causal softmax's `[T, T]` blocks) give the unfused reference's values: the norms
/// at 600 rows (nine full blocks and a part) through the companion's tape, which copies
/// x block by block; the causal softmax against the masked op with a triangular mask,
/// which runs on one thread.
#[test]
fn norms_and_causal_softmax_split_across_threads_match_the_reference() {
    let mut r = Rng(17);
    let (x, dy) = (r.array((600, 512)) * 2.0 + 0.5, r.array((600, 512)));
    let (g, b) = (r.array(512) + 1.0, r.array(512));
    let (y, dx, dg, db) = norm_reference(&x, &g, &b, &dy, false);
    let (v, tape) = ops::layer_norm::forward(&x, &g, &b, 1e-5);
    let (a, ag, ab, _) = tape.backward(dy.clone());
    assert!(max_abs_diff(&v, &y) < 1e-13);
    assert!(max_abs_diff(&a, &dx) < 1e-12);
    assert!(max_abs_diff(&ag, &dg) < 1e-10 && max_abs_diff(&ab, &db) < 1e-10);
    let (ry, rdx, rdg, _) = norm_reference(&x, &g, &b, &dy, true);
    let (v, tape) = ops::rms_norm::forward(&x, &g, 1e-6);
    let (a, ag, _) = tape.backward(dy.clone());
    assert!(max_abs_diff(&v, &ry) < 1e-13);
    assert!(max_abs_diff(&a, &rdx) < 1e-12 && max_abs_diff(&ag, &rdg) < 1e-10);
    // A transposed x is read in its own layout and kept in standard layout.
    let xt = x.t().to_owned();
    let (v, tape) = ops::layer_norm::forward(&xt.t(), &g, &b, 1e-5);
    let (a, _, _, _) = tape.backward(dy.clone());
    assert!(max_abs_diff(&v, &y) < 1e-13 && max_abs_diff(&a, &dx) < 1e-12);

    let t = 64;
    let (s, d) = (r.array((4, 8, t, t)) * 3.0, r.array((4, 8, t, t)));
    let mask = Array2::from_shape_fn((t, t), |(i, j)| j <= i);
    let (yc, tc) = ops::softmax_causal::forward(&s);
    let (ym, tm) = ops::softmax_masked::forward(&s, &mask);
    assert_eq!(yc, ym);
    assert_eq!(softmax_causal(&s), ym);
    let (dc,) = tc.backward(d.clone());
    let (dm, _) = tm.backward(d);
    assert!(max_abs_diff(&dc, &dm) < 1e-15);
}

#[test]
fn layer_norm_f32_agrees_with_f64() {
    let mut r = Rng(2);
    let (x, g, b) = (r.array((4, 7)) * 3.0, r.array(7), r.array(7));
    let y64 = layer_norm(&x, &g, &b, 1e-5);
    let y32 = layer_norm(&to_f32(&x), &to_f32(&g), &to_f32(&b), 1e-5f32);
    assert!(max_abs_diff(&y64, &to_f64(&y32)) < 1e-5);
    let y64 = rms_norm(&x, &g, 1e-6);
    let y32 = rms_norm(&to_f32(&x), &to_f32(&g), 1e-6f32);
    assert!(max_abs_diff(&y64, &to_f64(&y32)) < 1e-5);
    let d = r.array((4, 7));
    let (_, t64) = ops::layer_norm::forward(&x, &g, &b, 1e-5);
    let (_, t32) = ops::layer_norm::forward(&to_f32(&x), &to_f32(&g), &to_f32(&b), 1e-5f32);
    let (a, ag, _, _) = t64.backward(d.clone());
    let (c, cg, _, _) = t32.backward(to_f32(&d));
    assert!(max_abs_diff(&a, &to_f64(&c)) < 1e-4 && max_abs_diff(&ag, &to_f64(&cg)) < 1e-4);
}

#[test]
#[should_panic(expected = "layer_norm: x is 2×3 but gamma is 4")]
fn layer_norm_names_both_shapes() {
    let _ = layer_norm(
        &Array2::<f64>::zeros((2, 3)),
        &Array1::zeros(4),
        &Array1::zeros(3),
        1e-5,
    );
}

#[test]
#[should_panic(expected = "rms_norm: x is 2×3 but gamma is 2")]
fn rms_norm_names_both_shapes() {
    let _ = rms_norm(&Array2::<f64>::zeros((2, 3)), &Array1::zeros(2), 1e-5);
}

// ---------------------------------------------------------------- embedding

#[grad(table)]
fn emb(table: &Array2<f64>, ids: &Array2<usize>, w: &Array3<f64>) -> f64 {
    let y = embedding(table, ids);
    (&y * w).sum()
}

#[grad(table)]
fn emb_slice(table: &Array2<f64>, ids: &[usize], w: &Array2<f64>) -> f64 {
    let y = embedding(&table.t(), ids);
    (&y * w).sum()
}

#[test]
fn gradcheck_embedding() {
    let mut r = Rng(3);
    let table = r.array((5, 3));
    let ids = array![[4usize, 0, 4], [1, 1, 2]]; // repeated ids accumulate
    let w = r.array((2, 3, 3));
    gradcheck!(emb(table = &table, ids = const &ids, w = const &w)).assert();
    // Transposed table: the op sees table.t() as a 3×5 table (V = 3, d = 5).
    let ids = vec![2usize, 0, 2, 1];
    let w = r.array((4, 5));
    let table = r.array((5, 3));
    gradcheck!(emb_slice(table = &table, ids = const &ids, w = const &w)).assert();
}

#[test]
fn embedding_by_hand_and_scatter_add() {
    let table = array![[0.0f64, 1.0], [2.0, 3.0], [4.0, 5.0]];
    let ids = array![[2usize, 0], [2, 2]];
    let (y, tape) = ops::embedding::forward(&table, &ids);
    assert_eq!(
        y,
        array![[[4.0, 5.0], [0.0, 1.0]], [[4.0, 5.0], [4.0, 5.0]]]
    );
    // The tape holds the 4 ids, not the table.
    assert!(
        tape.bytes() >= 32 && tape.bytes() < 32 + 256,
        "{}",
        tape.bytes()
    );
    let (d_table, _) = tape.backward(Array3::ones((2, 2, 2)));
    assert_eq!(d_table, array![[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]]);
    let y32 = embedding(&to_f32(&table), &[1usize]);
    assert_eq!(y32, array![[2.0f32, 3.0]]);
}

#[test]
#[should_panic(expected = "embedding: id 5 at position 1 is out of range for a table of 3 rows")]
fn embedding_id_out_of_range() {
    let _ = embedding(&Array2::<f64>::zeros((3, 2)), &[0usize, 5]);
}

// ---------------------------------------------------------------- masked softmax

#[grad(x)]
fn sm_masked(x: &Array3<f64>, mask: &Array2<bool>, w: &Array3<f64>) -> f64 {
    let y = softmax_masked(x, mask);
    (&y * w).sum()
}

#[grad(x)]
fn sm_masked_t(x: &Array2<f64>, mask: &Array1<bool>, w: &Array2<f64>) -> f64 {
    let y = softmax_masked(&x.t(), mask);
    (&y * w).sum()
}

#[grad(x)]
fn sm_causal(x: &Array3<f64>, w: &Array3<f64>) -> f64 {
    let y = softmax_causal(x);
    (&y * w).sum()
}

#[test]
fn gradcheck_masked_and_causal_softmax() {
    let mut r = Rng(4);
    let x = r.array((2, 3, 4)) * 2.0;
    let w = r.array((2, 3, 4));
    // The [3, 4] mask broadcasts over the batch; its row 1 is fully masked.
    let mask = array![
        [true, false, true, true],
        [false, false, false, false],
        [false, true, true, false]
    ];
    gradcheck!(sm_masked(x = &x, mask = const &mask, w = const &w)).assert();
    let (xt, wt, mask) = (
        r.array((4, 3)),
        r.array((3, 4)),
        array![true, true, false, true],
    );
    gradcheck!(sm_masked_t(x = &xt, mask = const &mask, w = const &wt)).assert();
    let (xc, wc) = (r.array((2, 3, 3)) * 2.0, r.array((2, 3, 3)));
    gradcheck!(sm_causal(x = &xc, w = const &wc)).assert();
}

#[test]
fn masked_softmax_by_hand_and_nan_free() {
    let e = 1f64.exp();
    let y = softmax_masked(&array![[0.0f64, 1.0, 7.0]], &array![[true, true, false]]);
    assert!(max_abs_diff(&y, &array![[1.0 / (1.0 + e), e / (1.0 + e), 0.0]]) < 1e-15);
    // −∞ logits kept: probability 0; a row whose kept logits are all −∞ or that is fully
    // masked: output 0 and gradient 0.
    let ninf = f64::NEG_INFINITY;
    let x = array![[ninf, 0.0, 0.0], [ninf, ninf, 1.0], [1.0, 2.0, 3.0]];
    let mask = array![
        [true, true, true],
        [true, true, false],
        [false, false, false]
    ];
    let (y, tape) = ops::softmax_masked::forward(&x, &mask);
    assert_eq!(y, array![[0.0, 0.5, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]);
    let (dx, _) = tape.backward(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]);
    assert!(dx.iter().all(|v| v.is_finite()), "{dx}");
    assert_eq!(dx.row(1), array![0.0, 0.0, 0.0]);
    assert_eq!(dx.row(2), array![0.0, 0.0, 0.0]);
    assert_eq!(dx[[0, 0]], 0.0);
    // Causal: row i keeps columns ≤ i; −∞ scores inside are NaN-free.
    let s = array![[[5.0f64, 1.0, 1.0], [ninf, 0.0, 9.0], [0.0, 0.0, 0.0]]];
    let (y, tape) = ops::softmax_causal::forward(&s);
    assert_eq!(
        y,
        array![[
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
        ]]
    );
    let (dx,) = tape.backward(Array3::ones((1, 3, 3)));
    assert!(dx.iter().all(|&v| v == 0.0), "{dx}");
    // f32 agrees.
    let x = Rng(5).array((3, 5)) * 3.0;
    let m = array![true, false, true, true, false];
    let a = softmax_masked(&x, &m);
    let b = softmax_masked(&to_f32(&x), &m);
    assert!(max_abs_diff(&a, &to_f64(&b)) < 1e-6);
    let a = softmax_causal(&x.slice(ndarray::s![..3, ..3]));
    let b = softmax_causal(&to_f32(&x.slice(ndarray::s![..3, ..3]).to_owned()));
    assert!(max_abs_diff(&a, &to_f64(&b)) < 1e-6);
}

/// The causal companion's tape keeps only the entries on or below the diagonal; its
/// gradient equals the masked op's with a lower-triangular mask (rows of 1 to 20 kept
/// entries, across the 8-lane sums' edges), and strided cotangents are read correctly.
#[test]
fn softmax_causal_packed_tape_matches_the_masked_op() {
    let mut r = Rng(13);
    let t = 20;
    let x = r.array((2, 3, t, t)) * 3.0;
    let d = r.array((2, 3, t, t));
    let mask = Array2::from_shape_fn((t, t), |(i, j)| j <= i);
    let (yc, tc) = ops::softmax_causal::forward(&x);
    let (ym, tm) = ops::softmax_masked::forward(&x, &mask);
    assert_eq!(yc, ym);
    let packed = 8 * 6 * t * (t + 1) / 2;
    assert!(
        tc.bytes() >= packed && tc.bytes() < packed + 256,
        "{}",
        tc.bytes()
    );
    let d_t = d
        .clone()
        .permuted_axes([0, 1, 3, 2])
        .as_standard_layout()
        .into_owned();
    let (dc,) = tc.backward(d_t.view().permuted_axes([0, 1, 3, 2]).to_owned());
    let (dm, _) = tm.backward(d);
    assert!(max_abs_diff(&dc, &dm) < 1e-15);
}

#[test]
#[should_panic(expected = "softmax_masked: mask is 2 but x is 2×3")]
fn softmax_masked_names_both_shapes() {
    let _ = softmax_masked(&Array2::<f64>::zeros((2, 3)), &array![true, false]);
}

#[test]
#[should_panic(expected = "softmax_causal: x is 2×3 but must be [.., T, T]")]
fn softmax_causal_needs_square_scores() {
    let _ = softmax_causal(&Array2::<f64>::zeros((2, 3)));
}

// ---------------------------------------------------------------- attention

#[grad(q, k, v)]
fn att(q: &Array4<f64>, k: &Array4<f64>, v: &Array4<f64>, w: &Array4<f64>, causal: bool) -> f64 {
    let o = attention(q, k, v, causal);
    (&o * w).sum()
}

/// The unfused reference: softmax(QKᵀ/√d + mask)·V per head, from the other ops.
fn attention_reference(
    q: &Array4<f64>,
    k: &Array4<f64>,
    v: &Array4<f64>,
    causal: bool,
) -> Array4<f64> {
    let (b, h, t, d) = q.dim();
    let mut o = Array4::zeros((b, h, t, d));
    for bi in 0..b {
        for hi in 0..h {
            let s = ndarray::s![bi, hi, .., ..];
            let sc = q.slice(s).dot(&k.slice(s).t()) / (d as f64).sqrt();
            let p = if causal {
                softmax_causal(&sc)
            } else {
                ops::softmax(&sc)
            };
            o.slice_mut(s).assign(&p.dot(&v.slice(s)));
        }
    }
    o
}

#[test]
fn gradcheck_attention() {
    let mut r = Rng(6);
    let sh = (2, 2, 3, 4);
    let (q, k, v, w) = (r.array(sh), r.array(sh), r.array(sh), r.array(sh));
    gradcheck!(att(q = &q, k = &k, v = &v, w = const &w, causal = const true)).assert();
    gradcheck!(att(q = &q, k = &k, v = &v, w = const &w, causal = const false)).assert();
}

#[test]
fn attention_matches_the_unfused_composition_and_accepts_views() {
    let mut r = Rng(7);
    let sh = (2, 3, 5, 4);
    let (q, k, v) = (r.array(sh) * 2.0, r.array(sh) * 2.0, r.array(sh));
    for causal in [false, true] {
        let o = attention(&q, &k, &v, causal);
        assert!(max_abs_diff(&o, &attention_reference(&q, &k, &v, causal)) < 1e-14);
        // Strided operands: k stored as [B, H, d, T] and viewed with its last two axes swapped.
        let k_store = k
            .clone()
            .permuted_axes([0, 1, 3, 2])
            .as_standard_layout()
            .into_owned();
        let k_view = k_store.view().permuted_axes([0, 1, 3, 2]);
        assert!(max_abs_diff(&attention(&q, &k_view, &v, causal), &o) < 1e-15);
        let (_, t1) = ops::attention::forward(&q, &k, &v, causal);
        let (_, t2) = ops::attention::forward(&q, &k_view, &v.view(), causal);
        let d = r.array(sh);
        let (a, b, c, _) = t1.backward(d.clone());
        let (a2, b2, c2, _) = t2.backward(d);
        // Up to rounding: the strided K's products sum in another order in the forward
        // pass (O differs by ~7e-16), and the tape keeps a row-major copy of it.
        assert!(max_abs_diff(&a, &a2) + max_abs_diff(&b, &b2) + max_abs_diff(&c, &c2) < 1e-13);
        // f32 agrees.
        let o32 = attention(&to_f32(&q), &to_f32(&k), &to_f32(&v), causal);
        assert!(max_abs_diff(&o, &to_f64(&o32)) < 1e-5);
    }
}

/// Heads spread over rayon's threads (B·H·T²·d ≥ 2¹⁸) give the same values and
/// gradients as the unfused composition; T = 70 has causal row blocks of 32, 32 and 6.
#[test]
fn attention_on_threads_matches_the_unfused_composition() {
    let mut r = Rng(12);
    for sh in [(2, 2, 64, 16), (1, 2, 70, 8)] {
        let (q, k, v, d) = (r.array(sh), r.array(sh), r.array(sh), r.array(sh));
        let scale = 1.0 / (sh.3 as f64).sqrt();
        for causal in [false, true] {
            let (o, tape) = ops::attention::forward(&q, &k, &v, causal);
            assert!(max_abs_diff(&o, &attention_reference(&q, &k, &v, causal)) < 1e-14);
            let (dq, dk, dv, _) = tape.backward(d.clone());
            // d_V = Pᵀ·d_O, d_Q = d_S·K/√d and d_K = d_Sᵀ·Q/√d per head from the explicit P.
            for (bi, hi) in [(0usize, 0usize), (sh.0 - 1, 1)] {
                let sl = ndarray::s![bi, hi, .., ..];
                let sc = q.slice(sl).dot(&k.slice(sl).t()) * scale;
                let p = if causal {
                    softmax_causal(&sc)
                } else {
                    ops::softmax(&sc)
                };
                let dvh = p.t().dot(&d.slice(sl));
                assert!(max_abs_diff(&dv.slice(sl).to_owned(), &dvh) < 1e-13);
                let dp = d.slice(sl).dot(&v.slice(sl).t());
                let ds = ops::softmax_vjp(&p, &dp) * scale;
                assert!(max_abs_diff(&dq.slice(sl).to_owned(), &ds.dot(&k.slice(sl))) < 1e-13);
                assert!(max_abs_diff(&dk.slice(sl).to_owned(), &ds.t().dot(&q.slice(sl))) < 1e-13);
            }
        }
    }
}

#[test]
fn attention_tape_is_linear_in_t() {
    let bytes = |t: usize| {
        let x = Array4::<f32>::from_elem((1, 2, t, 8), 0.1);
        let (_, tape) = ops::attention::forward(&x, &x, &x, true);
        tape.bytes()
    };
    let (b256, b1024) = (bytes(256), bytes(1024));
    // Q, K, V, O and one log-sum-exp per row: (4·d + 1)·B·H·T·4 bytes, no T×T term.
    assert!(
        (33 * 2 * 256 * 4..33 * 2 * 256 * 4 + 1024).contains(&b256),
        "{b256}"
    );
    let ratio = b1024 as f64 / b256 as f64;
    assert!(
        (3.9..4.05).contains(&ratio),
        "T=256: {b256} B, T=1024: {b1024} B, ratio {ratio}"
    );
}

#[test]
#[should_panic(expected = "attention: q is 1×1×2×3 but k is 1×1×4×3")]
fn attention_names_both_shapes() {
    let _ = attention(
        &Array4::<f64>::zeros((1, 1, 2, 3)),
        &Array4::zeros((1, 1, 4, 3)),
        &Array4::zeros((1, 1, 2, 3)),
        false,
    );
}

// ---------------------------------------------------------------- GELU (exact), erf

#[grad(x)]
fn gelu_e(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let y = gelu_exact(&x.t());
    (&y * w).sum()
}

#[test]
fn gradcheck_gelu_exact() {
    let mut r = Rng(8);
    let (x, w) = (r.array((4, 3)) * 4.0, r.array((3, 4)));
    gradcheck!(gelu_e(x = &x, w = const &w)).assert();
}

/// erf by its everywhere-positive series `(2/√π)·e^(−x²)·Σ_n 2ⁿx^(2n+1)/(1·3···(2n+1))`
/// (Abramowitz & Stegun 7.1.6): no cancellation, so accurate to a few ulp for x ≤ 3.
fn erf_series(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum
}

/// erfc by its continued fraction (A&S 7.1.14, evaluated backwards), for x ≥ 2.
fn erfc_cf(x: f64) -> f64 {
    let mut f = x;
    for k in (1..200).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
}

#[test]
fn gelu_exact_values_and_erf_accuracy() {
    use backprop::kernels::erf::{erf, erfc};
    for i in 1..=300 {
        let x = i as f64 * 0.01;
        let (got, want) = (erf(x), erf_series(x));
        assert!(
            (got - want).abs() <= 1e-15 * want,
            "erf({x}) = {got}, series {want}"
        );
        assert_eq!(erf(-x), -got);
    }
    for i in 0..=240 {
        let x = 2.0 + i as f64 * 0.1;
        let (got, want) = (erfc(x), erfc_cf(x));
        // The oracle's own e^(−x²) carries x²·ε of rounding.
        assert!(
            (got - want).abs() <= (1e-15 + 2e-16 * x * x) * want,
            "erfc({x}) = {got}, cf {want}"
        );
        assert!((erfc(-x) - (2.0 - want)).abs() <= 4e-16);
    }
    // 50-digit values (Python `decimal`: the series above and the continued fraction,
    // rounded to f64): within 2 ulp.
    let erf_table = [
        (0.001, 1.12837879096923648e-03),
        (0.1, 1.12462916018284897e-01),
        (0.44, 4.66225115277957514e-01),
        (0.84375, 7.67225661232341594e-01),
        (1.0, 8.42700792949714894e-01),
        (1.2, 9.10313978229635334e-01),
        (2.0, 9.95322265018952712e-01),
        (2.5, 9.99593047982554994e-01),
        (3.0, 9.99977909503001361e-01),
        (4.0, 9.99999984582742085e-01),
    ];
    for (x, want) in erf_table {
        assert!(
            (erf(x) - want).abs() <= 4.5e-16 * want,
            "erf({x}) = {}, want {want}",
            erf(x)
        );
    }
    let erfc_table = [
        (0.5, 4.79500122186953481e-01),
        (1.0, 1.57299207050285134e-01),
        (2.0, 4.67773498104726623e-03),
        (3.0, 2.20904969985854412e-05),
        (5.0, 1.53745979442803494e-12),
        (7.0, 4.18382560777941421e-23),
        (10.0, 2.08848758376254488e-45),
        (15.0, 7.21299417245120682e-100),
        (20.0, 5.39586561160790118e-176),
        (26.0, 5.66319240885614319e-296),
    ];
    for (x, want) in erfc_table {
        assert!(
            (erfc(x) - want).abs() <= 4.5e-16 * want,
            "erfc({x}) = {}, want {want}",
            erfc(x)
        );
    }
    assert_eq!(
        (erf(0.0), erf(f64::INFINITY), erf(f64::NEG_INFINITY)),
        (0.0, 1.0, -1.0)
    );
    assert_eq!((erfc(f64::INFINITY), erfc(f64::NEG_INFINITY)), (0.0, 2.0));
    // GELU(x) = x·Φ(x): Φ(1) = 0.841344746068542948…, Φ(−3) = 1.34989803163009458e-3.
    let y = gelu_exact(&array![1.0f64, -3.0, -40.0, 0.0]);
    assert!((y[0] - 0.8413447460685429).abs() < 2e-16);
    // (x/√2 is rounded, and erfc amplifies that by 2z² ≈ 9 here: ~1e-15 relative.)
    assert!(
        (y[1] + 3.0 * 1.34989803163009458e-3).abs() < 2e-15 * 4.05e-3,
        "{:e} vs {:e}",
        y[1],
        -3.0 * 1.34989803163009458e-3
    );
    assert!(y[2] <= 0.0 && y[2] > -1e-300 && y[3] == 0.0, "{y}");
    // f32 (the Chebyshev fit of erfc on the SIMD path): within 2 ulp of the rounded
    // true values.
    let y32 = gelu_exact(&array![1.0f32, -3.0]);
    for (got, want) in y32.iter().zip([
        0.8413447460685429f64 as f32,
        (-3.0 * 1.34989803163009458e-3f64) as f32,
    ]) {
        assert!(
            (got - want).abs() <= 2.0 * f32::EPSILON * want.abs(),
            "{got} vs {want}"
        );
    }
}

// ---------------------------------------------------------------- dropout

#[grad(x)]
fn drop(x: &Array2<f64>, w: &Array2<f64>, seed: u64) -> f64 {
    let y = dropout(&x.t(), 0.3, seed);
    (&y * w).sum()
}

#[test]
fn gradcheck_dropout() {
    let mut r = Rng(9);
    let (x, w) = (r.array((5, 4)), r.array((4, 5)));
    gradcheck!(drop(x = &x, w = const &w, seed = const 11)).assert();
}

#[test]
fn dropout_is_deterministic_scaled_and_saves_bits() {
    let x = Array2::<f64>::from_elem((100, 100), 2.0);
    let (y, tape) = ops::dropout::forward(&x, 0.1, 42);
    assert_eq!(y, dropout(&x, 0.1, 42));
    assert_ne!(y, dropout(&x, 0.1, 43));
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!((8800..9200).contains(&kept), "{kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 2.0 / 0.9).abs() < 1e-15));
    // 10 000 elements: 157 words of mask bits.
    assert!(
        tape.bytes() >= 157 * 8 && tape.bytes() < 157 * 8 + 128,
        "{}",
        tape.bytes()
    );
    let (dx, _, _) = tape.backward(Array2::ones((100, 100)));
    assert_eq!(dx, y.mapv(|v| v / 2.0));
    // Same mask in f32.
    let y32 = dropout(&to_f32(&x), 0.1, 42);
    assert_eq!(y32.mapv(|v| v != 0.0), y.mapv(|v| v != 0.0));
    // p = 0 keeps everything, p = 1 drops everything, without NaN.
    assert_eq!(dropout(&x, 0.0, 1), x);
    let (y, tape) = ops::dropout::forward(&x, 1.0, 1);
    assert!(y.iter().all(|&v| v == 0.0));
    assert!(
        tape.backward(Array2::ones((100, 100)))
            .0
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// A NaN input stays NaN whether its position is kept or dropped (dropped = x·0, as
/// PyTorch's `x * mask / (1 − p)`): a diverged activation is never hidden by the mask.
#[test]
fn dropout_keeps_nan_where_it_drops() {
    let x = Array2::<f64>::from_elem((10, 10), f64::NAN);
    for p in [0.0, 0.5, 1.0] {
        let y = dropout(&x, p, 7);
        assert!(y.iter().all(|v| v.is_nan()), "p = {p}: {y}");
    }
    let mut x = Array2::<f64>::from_elem((10, 10), 1.0);
    x[[3, 4]] = f64::NAN;
    let y = dropout(&x, 0.5, 9);
    assert!(y[[3, 4]].is_nan());
    assert_eq!(y.iter().filter(|v| v.is_nan()).count(), 1);
}

/// A kept NaN logit makes its row NaN (output and the log-sum-exp), even when every other
/// kept logit is −∞; only a row of −∞ and masked entries is the empty row of zeros. The
/// other rows are untouched.
#[test]
fn masked_softmax_rows_with_a_kept_nan_are_nan() {
    let (nan, ninf) = (f64::NAN, f64::NEG_INFINITY);
    let x = array![
        [nan, ninf, ninf],
        [nan, 0.0, 1.0],
        [nan, ninf, 2.0],
        [0.0, 0.0, 0.0]
    ];
    let mask = array![
        [true, true, false],
        [true, true, true],
        [false, true, true],
        [true, true, true]
    ];
    let y = softmax_masked(&x, &mask);
    assert!(y.row(0).iter().take(2).all(|v| v.is_nan()), "{y}");
    assert_eq!(y[[0, 2]], 0.0, "a masked entry stays 0");
    assert!(y.row(1).iter().all(|v| v.is_nan()), "{y}");
    assert_eq!(y.row(2), array![0.0, 0.0, 1.0], "the NaN is masked out");
    assert!(
        max_abs_diff(
            &y.slice(ndarray::s![3..4, ..]).to_owned(),
            &array![[1.0 / 3.0; 3]]
        ) < 1e-15
    );
    // Causal: a NaN in the kept part of a row whose other kept entries are −∞.
    let s = array![[[nan, 0.0], [ninf, 1.0]]];
    let y = softmax_causal(&s);
    assert!(y[[0, 0, 0]].is_nan(), "{y}");
    assert_eq!(y[[0, 0, 1]], 0.0);
    assert_eq!(y.slice(ndarray::s![0, 1, ..]), array![0.0, 1.0]);
}

#[test]
#[should_panic(expected = "dropout: p must be in [0, 1], got 1.5")]
fn dropout_rejects_p_outside_0_1() {
    let _ = dropout(&array![1.0f64], 1.5, 0);
}

// ---------------------------------------------------------------- cross-entropy

#[grad(z)]
fn xent3(z: &Array3<f64>, labels: &Array2<usize>, opts: XentOptions<f64>) -> f64 {
    cross_entropy(z, labels, opts)
}

#[test]
fn gradcheck_cross_entropy_btv() {
    let mut r = Rng(10);
    let z = r.array((2, 3, 5)) * 2.0;
    let labels = array![[0usize, 7, 4], [2, 2, 7]];
    for eps in [0.0, 0.1] {
        let opts = XentOptions {
            ignore_index: Some(7),
            label_smoothing: eps,
        };
        gradcheck!(xent3(z = &z, labels = const &labels, opts = const opts)).assert();
    }
}

/// `[N, V]` logits given as the transpose of a `[V, N]` array, labels as a slice.
#[grad(z)]
fn xent_t(z: &Array2<f64>, labels: &[usize], opts: XentOptions<f64>) -> f64 {
    cross_entropy(&z.t(), labels, opts)
}

#[test]
fn gradcheck_cross_entropy_transposed_logits() {
    let z = Rng(13).array((5, 4)) * 2.0;
    let labels = vec![1usize, 4, 0, 9];
    let opts = XentOptions {
        ignore_index: Some(9),
        label_smoothing: 0.2,
    };
    gradcheck!(xent_t(z = &z, labels = const &labels, opts = const opts)).assert();
}

#[test]
fn cross_entropy_means_over_counted_rows_and_all_ignored_is_zero() {
    let mut r = Rng(11);
    let z = r.array((2, 3, 5));
    let labels = array![[0usize, 7, 4], [2, 2, 7]];
    let opts = XentOptions {
        ignore_index: Some(7),
        label_smoothing: 0.1,
    };
    // Same as the 2-D op on the flattened rows, ignored rows dropped from the mean.
    let flat = z.clone().into_shape_with_order((6, 5)).unwrap();
    let want = ops::softmax_cross_entropy(&flat, &[0, 7, 4, 2, 2, 7], opts);
    assert_eq!(cross_entropy(&z, &labels, opts), want);
    let kept = ndarray::stack![
        ndarray::Axis(0),
        flat.row(0),
        flat.row(2),
        flat.row(3),
        flat.row(4)
    ];
    let by_hand = ops::softmax_cross_entropy(&kept, &[0, 4, 2, 2], opts);
    assert!((want - by_hand).abs() < 1e-15);
    // Every row ignored: loss 0 and gradient 0.
    let all = Array2::from_elem((2, 3), 7usize);
    let (l, tape) = ops::cross_entropy::forward(&z, &all, opts);
    assert_eq!(l, 0.0);
    let (g, _, _) = tape.backward(1.0);
    assert!(g.iter().all(|&v| v == 0.0));
    // A flat slice of labels works for [N, V]; f32 agrees.
    let l32 = cross_entropy(
        &to_f32(&flat),
        &[0usize, 7, 4, 2, 2, 7][..],
        XentOptions {
            ignore_index: Some(7),
            label_smoothing: 0.1f32,
        },
    );
    assert!((l32 as f64 - want).abs() < 1e-6);
}

#[test]
#[should_panic(expected = "cross_entropy: logits are 2×3×5 but labels are 6")]
fn cross_entropy_names_both_shapes() {
    let _ = cross_entropy(
        &Array3::<f64>::zeros((2, 3, 5)),
        &[0usize; 6],
        XentOptions::default(),
    );
}

// ---------------------------------------------------------------- composed

/// A one-head causal block composed from the ops under `#[grad]`: lookup, LayerNorm,
/// self-attention with `h` as q, k and v (three cotangents summed), a residual, exact
/// GELU, dropout and cross-entropy over every position.
#[grad(table, g, b)]
fn tiny_block(
    table: &Array2<f64>,
    g: &Array1<f64>,
    b: &Array1<f64>,
    ids: &Array3<usize>,
    labels: &Array3<usize>,
) -> f64 {
    let x = embedding(table, ids);
    let h = layer_norm(&x, g, b, 1e-5);
    let a = attention(&h, &h, &h, true);
    let r = &x + &a;
    let z = dropout(&gelu_exact(&r), 0.2, 5);
    cross_entropy(&z, labels, XentOptions::default())
}

#[test]
fn gradcheck_a_composed_block() {
    let mut r = Rng(14);
    let table = r.array((7, 4));
    let (g, b) = (r.array(4) + 1.0, r.array(4) * 0.1);
    let ids = array![[[0usize, 3, 6]], [[2, 2, 5]]]; // [B=2, H=1, T=3]
    let labels = array![[[1usize, 0, 3]], [[2, 3, 0]]];
    gradcheck!(tiny_block(table = &table, g = &g, b = &b, ids = const &ids, labels = const &labels))
        .assert();
}
