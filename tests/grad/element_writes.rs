//! Element writes into ndarray arrays the function owns (`a[[i, j]] = v`, `+=`, `-=`,
//! `a[i] = v` on 1-D): causal masks, arrays built element by element, overwrites, and
//! writes in loops and branches. Hand-computed values, the fused ops they replace, and
//! gradchecks.

use backprop::{grad, gradcheck};
use ndarray::{Array1, Array2, Array4, array};

/// A causal mask written as nanoGPT's `masked_fill`, element by element.
#[grad(s)]
fn masked_loss(s: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let (t, _) = s.dim();
    let mut scores = s.to_owned();
    for i in 0..t {
        for j in (i + 1)..t {
            scores[[i, j]] = f64::NEG_INFINITY;
        }
    }
    let p = backprop::ops::softmax(&scores);
    (p * w).sum()
}

#[grad(s)]
fn fused_loss(s: &Array2<f64>, w: &Array2<f64>) -> f64 {
    (backprop::ops::softmax_causal(s) * w).sum()
}

#[test]
fn causal_mask_by_element_writes_equals_softmax_causal() {
    let mut rng = crate::rng::Rng(7);
    let s: Array2<f64> = rng.array_map((5, 5), |v| 2.0 * v);
    let w: Array2<f64> = rng.array_map((5, 5), |v| v);
    let (l, g) = masked_loss_grad(&s, &w);
    let (lf, gf) = fused_loss_grad(&s, &w);
    assert!((l - lf).abs() < 1e-12, "{l} vs {lf}");
    for i in 0..5 {
        for j in 0..5 {
            let (a, b) = (g.s[[i, j]], gf.s[[i, j]]);
            assert!((a - b).abs() < 1e-12, "d_s[{i}, {j}]: {a} vs {b}");
            if j > i {
                // Masked: the written element no longer depends on s.
                assert_eq!(a, 0.0, "d_s[{i}, {j}] above the diagonal");
            }
        }
    }
    assert!(g.s.iter().all(|v| v.is_finite()));
    gradcheck!(masked_loss(s = &s, w = const &w)).assert();
}

/// Every head of `[B, H, T, T]` scores masked with a 4-D index.
#[grad(s)]
fn masked_heads(s: &Array4<f64>, w: &Array4<f64>) -> f64 {
    let (b, h, t, _) = s.dim();
    let mut scores = s * 1.0;
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..t {
                for j in (i + 1)..t {
                    scores[[bi, hi, i, j]] = f64::NEG_INFINITY;
                }
            }
        }
    }
    (backprop::ops::softmax(&scores) * w).sum()
}

#[grad(s)]
fn fused_heads(s: &Array4<f64>, w: &Array4<f64>) -> f64 {
    (backprop::ops::softmax_causal(s) * w).sum()
}

#[test]
fn causal_mask_on_four_axes() {
    let mut rng = crate::rng::Rng(8);
    let s: Array4<f64> = rng.array_map((2, 2, 4, 4), |v| v);
    let w: Array4<f64> = rng.array_map((2, 2, 4, 4), |v| v);
    let (l, g) = masked_heads_grad(&s, &w);
    let (lf, gf) = fused_heads_grad(&s, &w);
    assert!((l - lf).abs() < 1e-12);
    let worst = (&g.s - &gf.s).iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(worst < 1e-12, "worst {worst}");
}

/// An array built from scalars: `m = [[a, b − 2a], [0, a·b]]`, `L = Σ m²`.
#[grad]
fn built(a: f64, b: f64) -> f64 {
    let mut m = Array2::zeros((2, 2));
    m[[0, 0]] = a;
    m[[1, 1]] = a * b;
    m[[0, 1]] += b;
    m[[0, 1]] -= 2.0 * a;
    (&m * &m).sum()
}

#[test]
fn array_built_element_by_element_by_hand() {
    // L = a² + a²b² + (b − 2a)²; at a = 1.5, b = −0.5: 2.25 + 0.5625 + 12.25 = 15.0625,
    // ∂L/∂a = 2a + 2ab² − 4(b − 2a) = 3 + 0.75 + 14 = 17.75,
    // ∂L/∂b = 2a²b + 2(b − 2a) = −2.25 − 7 = −9.25.
    let (l, g) = built_grad(1.5, -0.5);
    assert_eq!(l, 15.0625);
    assert_eq!(g.a, 17.75);
    assert_eq!(g.b, -9.25);
    gradcheck!(built(a = 0.7, b = 1.3)).assert();
}

/// Overwrites: the first value written to `y[0]` no longer reaches the result.
#[grad]
fn overwrite(x: &Array1<f64>, a: f64) -> f64 {
    let mut y = x.to_owned();
    y[0] = a;
    y[0] = 3.0 * a;
    y[1] += a;
    (&y * &y).sum()
}

#[test]
fn overwritten_elements_by_hand() {
    // x = [1, 2, 3], a = 0.5: y = [1.5, 2.5, 3], L = 2.25 + 6.25 + 9 = 17.5,
    // d_x = [0, 5, 6] (x₀ was overwritten), d_a = 2·1.5·3 + 2·2.5 = 14.
    let (l, g) = overwrite_grad(&array![1.0, 2.0, 3.0], 0.5);
    assert_eq!(l, 17.5);
    assert_eq!(g.x, array![0.0, 5.0, 6.0]);
    assert_eq!(g.a, 14.0);
}

/// A pullback reads the array before the write (`&y * &y`): the write goes to a copy.
#[grad]
fn read_then_write(x: &Array1<f64>) -> f64 {
    let mut y = x * 2.0;
    let z = &y * &y;
    y[1] = 0.0;
    z.sum() + (&y * x).sum()
}

#[test]
fn array_read_before_a_write_by_hand() {
    // x = [1, 2, 3]: Σ(2x)² = 56, y = [2, 0, 6], Σ y·x = 20, L = 76;
    // d_x = 8x + [4x₀, 0, 4x₂] = [12, 16, 36].
    let x = array![1.0, 2.0, 3.0];
    let (l, g) = read_then_write_grad(&x);
    assert_eq!(l, 76.0);
    assert_eq!(g.x, array![12.0, 16.0, 36.0]);
    gradcheck!(read_then_write(x = &x)).assert();
}

/// Writes in a loop that also reads the array through a pullback (`tanh` keeps its
/// output), and in a branch.
#[grad]
fn recurrent_writes_simple(x: &Array2<f64>, c: f64) -> f64 {
    let mut h = x.to_owned();
    for k in 0..3 {
        h = h.tanh();
        h[[k % 2, k]] = c * c;
        if c > 0.0 {
            h[[1, 1]] -= c;
        }
    }
    (&h * &h).sum()
}

#[test]
fn writes_in_loops_and_branches_gradcheck() {
    let mut rng = crate::rng::Rng(9);
    let x: Array2<f64> = rng.array_map((2, 3), |v| v);
    for c in [0.8, -0.6] {
        gradcheck!(recurrent_writes_simple(x = &x, c = c)).assert();
    }
}

#[grad]
fn out_of_bounds(x: &Array2<f64>) -> f64 {
    let mut y = x.to_owned();
    y[[2, 0]] = 1.0;
    y.sum()
}

#[test]
#[should_panic(expected = "index [2, 0] is out of bounds for an array of shape 2×2")]
fn element_write_out_of_bounds_names_the_index_and_shape() {
    out_of_bounds_grad(&Array2::zeros((2, 2)));
}

// ---------------------------------------------------------------- element reads

/// Negative log-likelihood written by hand, one element read per row.
#[grad(z)]
fn nll_by_hand(z: &Array2<f64>, labels: &[usize]) -> f64 {
    let logp = backprop::ops::log_softmax(z);
    let mut loss = 0.0;
    for i in 0..labels.len() {
        loss -= logp[[i, labels[i]]];
    }
    loss / labels.len() as f64
}

#[grad(z)]
fn nll_fused(z: &Array2<f64>, labels: &[usize]) -> f64 {
    backprop::ops::softmax_cross_entropy(z, labels, backprop::ops::XentOptions::default())
}

#[test]
fn element_reads_in_a_hand_written_loss_equal_the_fused_loss() {
    let mut rng = crate::rng::Rng(10);
    let z: Array2<f64> = rng.array_map((4, 3), |v| 3.0 * v);
    let labels = [2usize, 0, 1, 2];
    let (l, g) = nll_by_hand_grad(&z, &labels);
    let (lf, gf) = nll_fused_grad(&z, &labels);
    assert!((l - lf).abs() < 1e-12, "{l} vs {lf}");
    let worst = (&g.z - &gf.z).iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(worst < 1e-12, "worst {worst}");
    gradcheck!(nll_by_hand(z = &z, labels = const &labels[..])).assert();
}

/// Reads of a 1-D argument, with a single index and a one-element array index.
#[grad]
fn reads_1d(x: &Array1<f64>) -> f64 {
    x[0] * x[1] + x[[2]]
}

#[test]
fn element_reads_by_hand() {
    // x = [2, 3, 5, 7]: L = 2·3 + 5 = 11, ∂L/∂x = [3, 2, 1, 0].
    let (l, g) = reads_1d_grad(&array![2.0, 3.0, 5.0, 7.0]);
    assert_eq!(l, 11.0);
    assert_eq!(g.x, array![3.0, 2.0, 1.0, 0.0]);
}

/// A read after a write sees the written value; the write's value gets the gradient.
#[grad]
fn read_after_write(x: &Array1<f64>, a: f64) -> f64 {
    let mut y = x * 1.0;
    y[1] = a * a;
    y[1] * y[0]
}

#[test]
fn read_after_write_by_hand() {
    // x = [3, 4], a = 2: y = [3, 4], L = a²·x₀ = 12, ∂L/∂x = [4, 0], ∂L/∂a = 2a·x₀ = 12.
    let (l, g) = read_after_write_grad(&array![3.0, 4.0], 2.0);
    assert_eq!(l, 12.0);
    assert_eq!(g.x, array![4.0, 0.0]);
    assert_eq!(g.a, 12.0);
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Table {
    wte: Array2<f64>,
}

/// Reads of an element of a struct argument's array field.
#[allow(clippy::needless_range_loop)]
#[grad(p)]
fn field_reads(p: &Table, ids: &[usize]) -> f64 {
    let mut s = 0.0;
    for i in 0..ids.len() {
        s += p.wte[[ids[i], 0]] * p.wte[[ids[i], 1]];
    }
    s
}

#[test]
fn element_reads_of_a_field_by_hand() {
    // wte = [[1, 2], [3, 4]], ids = [1, 1, 0]: L = 2·3·4 + 1·2 = 26;
    // ∂L/∂wte = [[2, 1], [2·4, 2·3]] = [[2, 1], [8, 6]].
    let p = Table {
        wte: array![[1.0, 2.0], [3.0, 4.0]],
    };
    let (l, g) = field_reads_grad(&p, &[1, 1, 0]);
    assert_eq!(l, 26.0);
    assert_eq!(g.p.wte, array![[2.0, 1.0], [8.0, 6.0]]);
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Stack2 {
    layers: Vec<Table>,
}

/// Element reads of an array field of each struct in a list, in a loop over it.
#[grad(p)]
fn layer_field_reads(p: &Stack2) -> f64 {
    let mut s = 0.0;
    for layer in &p.layers {
        s += layer.wte[[0, 1]] * layer.wte[[1, 0]];
    }
    s
}

#[test]
fn element_reads_of_fields_in_a_loop_over_structs_by_hand() {
    // Two layers: 2·3 + 20·30 = 606; each layer's gradient is [[0, w10], [w01, 0]].
    let p = Stack2 {
        layers: vec![
            Table {
                wte: array![[1.0, 2.0], [3.0, 4.0]],
            },
            Table {
                wte: array![[10.0, 20.0], [30.0, 40.0]],
            },
        ],
    };
    let (l, g) = layer_field_reads_grad(&p);
    assert_eq!(l, 606.0);
    assert_eq!(g.p.layers[0].wte, array![[0.0, 3.0], [2.0, 0.0]]);
    assert_eq!(g.p.layers[1].wte, array![[0.0, 30.0], [20.0, 0.0]]);
}

/// `*=` and `/=` on an element: read, combine, write back.
#[grad]
fn scale_elements(x: &Array1<f64>, c: f64) -> f64 {
    let mut y = x.to_owned();
    y[0] *= c;
    y[1] /= c;
    y[2] *= y[0];
    y.sum()
}

#[test]
fn mul_and_div_assign_on_elements_by_hand() {
    // x = [2, 3, 5], c = 4: y = [8, 0.75, 40], L = 48.75.
    // L = x₀c + x₁/c + x₂x₀c: ∂/∂x = [c + x₂c, 1/c, x₀c] = [24, 0.25, 8],
    // ∂/∂c = x₀ − x₁/c² + x₂x₀ = 2 − 0.1875 + 10 = 11.8125.
    let (l, g) = scale_elements_grad(&array![2.0, 3.0, 5.0], 4.0);
    assert_eq!(l, 48.75);
    assert_eq!(g.x, array![24.0, 0.25, 8.0]);
    assert_eq!(g.c, 11.8125);
    gradcheck!(scale_elements(x = &array![0.3, -1.2, 0.7], c = 1.7)).assert();
}

/// The mask in generic float code, a tuple index, and `Array::from_elem`.
#[grad(s)]
fn masked_generic<T: backprop::Real>(s: &Array2<T>, w: &Array2<T>) -> T {
    let (t, _) = s.dim();
    let mut scores = s.to_owned();
    for i in 0..t {
        for j in (i + 1)..t {
            scores[(i, j)] = T::neg_infinity();
        }
    }
    let mut bias = ndarray::Array::from_elem((t, t), T::zero());
    bias[[0, 0]] = s[[0, 0]];
    (backprop::ops::softmax(&(&scores + &bias)) * w).sum()
}

#[test]
fn element_writes_in_generic_code_f32_and_f64() {
    let mut rng = crate::rng::Rng(12);
    let s: Array2<f64> = rng.array_map((4, 4), |v| v);
    let w: Array2<f64> = rng.array_map((4, 4), |v| v);
    gradcheck!(masked_generic(s = &s, w = const &w)).assert();
    let (l64, g64) = masked_generic_grad(&s, &w);
    let (l32, g32) = masked_generic_grad(&s.mapv(|v| v as f32), &w.mapv(|v| v as f32));
    assert!((l64 - l32 as f64).abs() < 1e-5, "{l64} vs {l32}");
    for (a, b) in g64.s.iter().zip(g32.s.iter()) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(g64.s[[0, 3]], 0.0);
}

/// A one-hot matrix built in the function from integer labels, as users write NLL
/// without a gather.
#[grad(z)]
fn nll_one_hot(z: &Array2<f64>, labels: &[usize]) -> f64 {
    let (n, k) = z.dim();
    let mut onehot = Array2::zeros((n, k));
    for (i, &y) in labels.iter().enumerate() {
        onehot[[i, y]] = 1.0;
    }
    -(backprop::ops::log_softmax(z) * onehot).sum() / n as f64
}

#[test]
fn one_hot_built_from_labels_equals_the_fused_loss() {
    let mut rng = crate::rng::Rng(13);
    let z: Array2<f64> = rng.array_map((3, 4), |v| v);
    let labels = [3usize, 0, 2];
    let (l, g) = nll_one_hot_grad(&z, &labels);
    let (lf, gf) = nll_fused_grad(&z, &labels);
    assert!((l - lf).abs() < 1e-12, "{l} vs {lf}");
    let worst = (&g.z - &gf.z).iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(worst < 1e-12, "worst {worst}");
}

// ---------------------------------------------------------------- from a user tryout

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Dense {
    w: Array2<f64>,
    b: Array1<f64>,
}

/// A copy of a struct's array field, written: an array, not a buffer of floats.
#[grad(p)]
fn field_copy_written(p: &Dense, x: &Array2<f64>) -> f64 {
    let mut w = p.w.to_owned();
    w[[0, 0]] = 0.0;
    (x.dot(&w) + &p.b).sum()
}

#[test]
fn a_written_copy_of_a_field_by_hand() {
    // x = [[1, 2]], w = [[3, 4], [5, 6]] with w₀₀ zeroed: x·w = [[10, 16]], b = [1, 1]:
    // L = 28; ∂L/∂w = xᵀ·1 = [[1, 1], [2, 2]] except w₀₀, which was overwritten: 0.
    let p = Dense {
        w: array![[3.0, 4.0], [5.0, 6.0]],
        b: array![1.0, 1.0],
    };
    let (l, g) = field_copy_written_grad(&p, &array![[1.0, 2.0]]);
    assert_eq!(l, 28.0);
    assert_eq!(g.p.w, array![[0.0, 1.0], [2.0, 2.0]]);
    assert_eq!(g.p.b, array![1.0, 1.0]);
}

/// An element read in one arm of an `if`, then a write after it: the arm that does not
/// read the array hands it a zero of its shape, taken before the write moves it.
#[grad]
fn read_in_branch_then_write(x: &Array2<f64>, c: f64) -> f64 {
    let mut a = x.to_owned();
    let mut v = c;
    if c > 0.0 {
        v = a[[0, 0]] * c;
    }
    a[[1, 1]] = v;
    a.sum()
}

/// The same as an `if` expression inside a loop.
#[grad]
fn read_in_branch_then_write_in_loop(x: &Array1<f64>, c: f64) -> f64 {
    let mut a = x.to_owned();
    for i in 0..a.len() {
        let v = if i > 0 { a[i - 1] * c } else { c };
        a[i] = v;
    }
    a.sum()
}

#[test]
fn reads_in_branches_before_writes() {
    // c = 2 > 0: a = [[1, 2], [3, 2·1]], L = 8; ∂L/∂x = [[1 + c, 1], [1, 0]], ∂L/∂c = x₀₀.
    let x = array![[1.0, 2.0], [3.0, 4.0]];
    let (l, g) = read_in_branch_then_write_grad(&x, 2.0);
    assert_eq!(l, 8.0);
    assert_eq!(g.x, array![[3.0, 1.0], [1.0, 0.0]]);
    assert_eq!(g.c, 1.0);
    // c = −1: the else arm; a₁₁ = c: L = 1 + 2 + 3 − 1 = 5, ∂L/∂x₁₁ = 0, ∂L/∂c = 1.
    let (l, g) = read_in_branch_then_write_grad(&x, -1.0);
    assert_eq!(l, 5.0);
    assert_eq!(g.x, array![[1.0, 1.0], [1.0, 0.0]]);
    assert_eq!(g.c, 1.0);
    // The loop: a = [c, c², c³], every x overwritten.
    let (l, g) = read_in_branch_then_write_in_loop_grad(&array![5.0, 6.0, 7.0], 2.0);
    assert_eq!(l, 2.0 + 4.0 + 8.0);
    assert_eq!(g.x, array![0.0, 0.0, 0.0]);
    assert_eq!(g.c, 1.0 + 4.0 + 12.0);
    gradcheck!(read_in_branch_then_write_in_loop(
        x = &array![0.5, -0.3, 0.8],
        c = 1.3
    ))
    .assert();
}

/// `a.fill(v)` on a local array, then element writes: a mask filled with −∞ whose
/// lower triangle is copied from the scores.
#[grad(s)]
fn filled_mask(s: &Array2<f64>, w: &Array2<f64>, c: f64) -> f64 {
    let (t, _) = s.dim();
    let mut scores = Array2::zeros((t, t));
    scores.fill(f64::NEG_INFINITY);
    for i in 0..t {
        for j in 0..=i {
            scores[[i, j]] = s[[i, j]];
        }
    }
    let mut bias = s.to_owned();
    bias.fill(c);
    (backprop::ops::softmax(&scores) * w).sum() + bias.sum()
}

#[test]
fn fill_then_writes_equals_softmax_causal() {
    let mut rng = crate::rng::Rng(14);
    let s: Array2<f64> = rng.array_map((4, 4), |v| v);
    let w: Array2<f64> = rng.array_map((4, 4), |v| v);
    let (l, g) = filled_mask_grad(&s, &w, 0.5);
    let (lf, gf) = fused_loss_grad(&s, &w);
    // bias = 0.5 everywhere: 16 · 0.5 = 8 added, and nothing of s flows through it.
    assert!((l - (lf + 8.0)).abs() < 1e-12, "{l} vs {lf} + 8");
    let worst = (&g.s - &gf.s).iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(worst < 1e-12, "worst {worst}");
    gradcheck!(filled_mask(s = &s, w = const &w, c = const 0.5)).assert();
}

#[grad]
fn filled(x: &Array1<f64>, c: f64) -> f64 {
    let mut a = x * 2.0;
    a.fill(c);
    (&a * x).sum()
}

#[test]
fn fill_by_hand() {
    // a = [c, c, c] (x·2 is overwritten): L = c·Σx = 12, ∂L/∂x = [c, c, c], ∂L/∂c = Σx.
    let (l, g) = filled_grad(&array![1.0, 2.0, 3.0], 2.0);
    assert_eq!(l, 12.0);
    assert_eq!(g.x, array![2.0, 2.0, 2.0]);
    assert_eq!(g.c, 6.0);
    gradcheck!(filled(x = &array![0.4, -1.1, 0.9], c = 0.7)).assert();
}

/// A loop bound read from a tuple of data, `x.dim().0`.
#[grad]
fn rows_by_dim(x: &Array2<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..x.dim().0 {
        s += x[[i, x.dim().1 - 1]];
    }
    s
}

#[test]
fn tuple_fields_of_data_by_hand() {
    let (l, g) = rows_by_dim_grad(&array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(l, 6.0);
    assert_eq!(g.x, array![[0.0, 1.0], [0.0, 1.0]]);
}

/// Element reads in a loop, then a write after it: the loop's reverse must not read the
/// array the write moved.
#[grad]
fn read_in_loop_then_write(x: &Array2<f64>, n: usize) -> f64 {
    let mut a = x.to_owned();
    let mut s = 0.0;
    for i in 0..n {
        s += a[[i, 0]];
    }
    a[[0, 0]] = s;
    a.sum()
}

#[test]
fn reads_in_a_loop_before_a_write() {
    // n = 2: s = x₀₀ + x₁₀, a₀₀ = s: L = s + x₀₁ + x₁₀ + x₁₁.
    let x = array![[1.0, 2.0], [3.0, 4.0]];
    let (l, g) = read_in_loop_then_write_grad(&x, 2);
    assert_eq!(l, 4.0 + 2.0 + 3.0 + 4.0);
    assert_eq!(g.x, array![[1.0, 1.0], [2.0, 1.0]]);
    // n = 0: the loop never runs; a₀₀ = 0.
    let (l, g) = read_in_loop_then_write_grad(&x, 0);
    assert_eq!(l, 9.0);
    assert_eq!(g.x, array![[0.0, 1.0], [1.0, 1.0]]);
}
