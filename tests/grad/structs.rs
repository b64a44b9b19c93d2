//! Structs of parameters as `#[grad]` arguments: `#[derive(Differentiable)]`, field
//! access (`p.b`, `p.w[i]`, `p.l1.w[j]`, `&p.w` of an array), the gradient as a value of
//! the same struct, structs passed to other `#[grad]` functions, and the same struct
//! stepped by an optimizer.
#![allow(clippy::needless_range_loop)]

use crate::support::check;
use backprop::ops::{XentOptions, relu, softmax_cross_entropy};
use backprop::optim::{AdamW, AdamWConfig, Optimizer};
use backprop::params::Params;
use backprop::{Differentiable, grad};
use ndarray::{Array1, Array2, array};

/// Central differences over every scalar of a parameter struct (through `Params`),
/// against the gradient struct, element by element.
#[track_caller]
fn check_struct<P: Params<f64> + Clone>(p: &P, g: &P, f: impl Fn(&P) -> f64) {
    let grads: Vec<f64> = g.buffers().iter().flat_map(|b| b.values.to_vec()).collect();
    let n = p.num_scalars();
    assert_eq!(grads.len(), n, "the gradient has the parameters' shape");
    for k in 0..n {
        let shifted = |delta: f64| {
            let mut q = p.clone();
            let mut seen = 0;
            for b in q.buffers_mut() {
                if k < seen + b.values.len() {
                    b.values[k - seen] += delta;
                    break;
                }
                seen += b.values.len();
            }
            f(&q)
        };
        let h = 1e-6;
        let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
        assert!(
            (numeric - grads[k]).abs() <= 1e-6 + 1e-5 * numeric.abs(),
            "scalar {k}: analytic {}, numeric {numeric}",
            grads[k]
        );
    }
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Layer {
    w: Vec<f64>,
    b: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Mlp {
    l1: Layer,
    l2: Layer,
    temperature: f64,
}

/// y = W·x + b for a row-major `out × inp` matrix: a helper the loss calls with a field.
#[grad(layer, x)]
fn affine_sum_tanh(layer: &Layer, x: &[f64]) -> f64 {
    let out = layer.b.len();
    let inp = x.len();
    let mut s = 0.0;
    for o in 0..out {
        let mut z = layer.b[o];
        for i in 0..inp {
            z += layer.w[o * inp + i] * x[i];
        }
        s += z.tanh();
    }
    s
}

/// A two-layer network written over slices, with nested fields and a scalar field.
#[grad(p)]
fn mlp_loss(p: &Mlp, x: &[f64], target: f64) -> f64 {
    let hidden = p.l1.b.len();
    let inp = x.len();
    let mut h = vec![0.0; hidden];
    for o in 0..hidden {
        let mut z = p.l1.b[o];
        for i in 0..inp {
            z += p.l1.w[o * inp + i] * x[i];
        }
        h[o] = z.tanh();
    }
    let mut y = p.l2.b[0];
    for j in 0..hidden {
        y += p.l2.w[j] * h[j];
    }
    let e = y / p.temperature - target;
    e * e + 0.1 * affine_sum_tanh(&p.l1, x)
}

fn sample_mlp() -> Mlp {
    Mlp {
        l1: Layer {
            w: vec![0.3, -0.2, 0.5, 0.1, -0.4, 0.25],
            b: vec![0.05, -0.1, 0.2],
        },
        l2: Layer {
            w: vec![0.7, -0.3, 0.45],
            b: vec![0.1],
        },
        temperature: 1.5,
    }
}

#[test]
fn nested_struct_gradient_matches_central_differences() {
    let p = sample_mlp();
    let x = [0.8, -1.1];
    let (value, g) = mlp_loss_grad(&p, &x, 0.3);
    assert_eq!(value, mlp_loss(&p, &x, 0.3));
    check_struct(&p, &g.p, |q| mlp_loss(q, &x, 0.3));
}

#[test]
fn scalar_field_by_hand() {
    // A network whose hidden layer is zero: y = b2, L = (b2/T − t)² + 0.1·Σ tanh(b1).
    let p = Mlp {
        l1: Layer {
            w: vec![0.0; 2],
            b: vec![0.0],
        },
        l2: Layer {
            w: vec![0.0],
            b: vec![2.0],
        },
        temperature: 4.0,
    };
    let (value, g) = mlp_loss_grad(&p, &[1.0, 1.0], 1.0);
    // e = 2/4 − 1 = −0.5: L = 0.25; dL/db2 = 2e/T = −0.25; dL/dT = −2e·b2/T² = 0.125.
    assert_eq!(value, 0.25);
    assert_eq!(g.p.l2.b, vec![-0.25]);
    assert_eq!(g.p.temperature, 0.125);
    // dL/db1 = 0.1·(1 − tanh² 0) = 0.1 (and h = tanh(0) feeds y with weight 0).
    assert_eq!(g.p.l1.b, vec![0.1]);
}

#[test]
fn an_optimizer_steps_the_same_struct() {
    let mut p = sample_mlp();
    let x = [0.8, -1.1];
    let mut opt = AdamW::<f64>::default();
    let first = mlp_loss(&p, &x, 0.3);
    for _ in 0..50 {
        let (_, g) = mlp_loss_grad(&p, &x, 0.3);
        opt.step(&mut p, &g.p).expect("same shapes");
    }
    assert!(mlp_loss(&p, &x, 0.3) < 0.5 * first);
    let names: Vec<String> = p.buffers().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["l1.w", "l1.b", "l2.w", "l2.b", "temperature"]);
}

/// A struct of ndarray arrays: fields borrowed into array expressions.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Dense {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array2<f64>,
    b2: Array1<f64>,
}

#[grad(p)]
fn dense_loss(p: &Dense, x: &Array2<f64>, labels: &[usize]) -> f64 {
    let h = relu(&(x.dot(&p.w1) + &p.b1));
    let logits = h.dot(&p.w2) + &p.b2;
    softmax_cross_entropy(&logits, labels, XentOptions::default())
}

#[test]
fn array_fields_take_the_tensor_rules() {
    let p = Dense {
        w1: Array2::from_shape_fn((4, 6), |(i, j)| ((i * 6 + j) as f64 * 0.71).cos() * 0.5),
        b1: Array1::from_shape_fn(6, |j| 0.05 * j as f64 - 0.1),
        w2: Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j) as f64 * 1.3).sin() * 0.5),
        b2: array![0.1, 0.0, -0.1],
    };
    let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f64 * 0.37).sin());
    let labels = [0, 2, 1, 1, 0];
    let (value, g) = dense_loss_grad(&p, &x, &labels);
    assert_eq!(value, dense_loss(&p, &x, &labels));
    assert_eq!(g.p.w1.shape(), &[4, 6]);
    // The bias row's gradient sums over the batch: its entries add up to the sum of
    // (softmax − onehot)/B over every row and class, which is 0.
    assert!(g.p.b2.sum().abs() < 1e-12);
    check_struct(&p, &g.p, |q| dense_loss(q, &x, &labels));
}

/// A struct taken by value, with a fixed-size array field.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Quadratic {
    coeffs: [f64; 3],
    shift: f64,
}

#[grad(q)]
fn eval_at(q: Quadratic, x: f64) -> f64 {
    let t = x - q.shift;
    q.coeffs[0] + q.coeffs[1] * t + q.coeffs[2] * t * t
}

#[test]
fn struct_by_value_with_an_array_field() {
    let q = Quadratic {
        coeffs: [1.0, 2.0, 3.0],
        shift: 0.5,
    };
    let (v, g) = eval_at_grad(q.clone(), 2.5);
    // t = 2: v = 1 + 4 + 12; d/dc = (1, t, t²); d/dshift = −(c1 + 2c2·t) = −14.
    assert_eq!(v, 17.0);
    assert_eq!(
        g.q,
        Quadratic {
            coeffs: [1.0, 2.0, 4.0],
            shift: -14.0
        }
    );
    check_struct(&q, &g.q, |p| eval_at(p.clone(), 2.5));
}

/// Iterating a struct's `Vec` field.
#[grad(p)]
fn field_sums(p: &Layer) -> f64 {
    let s: f64 = p.w.iter().sum();
    let q: f64 = p.b.iter().map(|v| v * v).sum();
    let mut t = 0.0;
    for v in &p.w {
        t += v * v * v;
    }
    s + q + t
}

#[test]
fn iterating_vec_fields() {
    let p = Layer {
        w: vec![1.0, 2.0],
        b: vec![3.0],
    };
    let (v, g) = field_sums_grad(&p);
    assert_eq!(v, 3.0 + 9.0 + 9.0);
    assert_eq!(g.p.w, vec![1.0 + 3.0, 1.0 + 12.0]);
    assert_eq!(g.p.b, vec![6.0]);
}

/// The README's "Loops, slices and structs" example, as written there.
#[derive(Clone, Debug, PartialEq, Differentiable)]
struct Line {
    w: Vec<f64>,
    b: f64,
}

/// Mean squared error of w·x + b over rows of `xs` (row-major, `ys.len()` rows).
#[grad(p)]
fn mse(p: &Line, xs: &[f64], ys: &[f64]) -> f64 {
    let d = p.w.len();
    let mut s = 0.0;
    for (i, y) in ys.iter().enumerate() {
        let z: f64 =
            p.w.iter()
                .zip(&xs[i * d..(i + 1) * d])
                .map(|(w, x)| w * x)
                .sum();
        let e = z + p.b - y;
        s += e * e;
    }
    s / ys.len() as f64
}

#[test]
fn readme_line_example() {
    let mut p = Line {
        w: vec![0.0, 0.0],
        b: 0.0,
    };
    let (xs, ys) = ([1.0, 2.0, 3.0, 1.0], [5.0, 5.0]);
    // At zero parameters: e = −5 for both rows; dL/dw = mean 2e·x = (−20, −15), dL/db = −10.
    let (l, g) = mse_grad(&p, &xs, &ys);
    assert_eq!(l, 25.0);
    assert_eq!(
        g.p,
        Line {
            w: vec![-20.0, -15.0],
            b: -10.0
        }
    );
    check_struct(&p, &g.p, |q| mse(q, &xs, &ys));
    let mut opt = AdamW::<f64>::new(AdamWConfig {
        lr: 0.1,
        ..Default::default()
    });
    for _ in 0..200 {
        let (_, g) = mse_grad(&p, &xs, &ys);
        opt.step(&mut p, &g.p).unwrap();
    }
    assert!(mse(&p, &xs, &ys) < 0.01, "{}", mse(&p, &xs, &ys));
}

#[test]
fn gradcheck_takes_struct_arguments() {
    let p = sample_mlp();
    let x = vec![0.8, -1.1];
    let report = backprop::gradcheck!(mlp_loss(p = &p, x = const &x, target = const 0.3));
    assert!(report.passed(), "{report}");
    let q = Quadratic {
        coeffs: [1.0, 2.0, 3.0],
        shift: 0.5,
    };
    backprop::gradcheck!(eval_at(q = q.clone(), x = const 2.5)).assert();
}

// ---- parameter structs in loops, by value, twice, with jumps --------------------------

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
pub struct Lin {
    pub w: Vec<f64>,
    pub b: f64,
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
pub struct Net {
    pub l1: Lin,
    pub l2: Lin,
    pub scale: [f64; 2],
}

/// Flatten a Net to a vector (w1, b1, w2, b2, scale) and back, for central differences.
fn net_flat(p: &Net) -> Vec<f64> {
    let mut v = p.l1.w.clone();
    v.push(p.l1.b);
    v.extend(&p.l2.w);
    v.push(p.l2.b);
    v.extend(p.scale);
    v
}
fn net_from(v: &[f64], like: &Net) -> Net {
    let n1 = like.l1.w.len();
    let n2 = like.l2.w.len();
    Net {
        l1: Lin {
            w: v[..n1].to_vec(),
            b: v[n1],
        },
        l2: Lin {
            w: v[n1 + 1..n1 + 1 + n2].to_vec(),
            b: v[n1 + 1 + n2],
        },
        scale: [v[n1 + 2 + n2], v[n1 + 3 + n2]],
    }
}
fn sample_net() -> Net {
    Net {
        l1: Lin {
            w: vec![0.3, -0.2, 0.5],
            b: 0.1,
        },
        l2: Lin {
            w: vec![0.7, -0.3, 0.45],
            b: -0.2,
        },
        scale: [1.5, -0.5],
    }
}
#[track_caller]
fn check_net(f: &dyn Fn(&Net) -> f64, value: f64, g: &Net, p: &Net) {
    let flat = net_flat(p);
    check(&|v: &[f64]| f(&net_from(v, p)), value, &net_flat(g), &flat);
}

#[grad]
fn lin_apply(l: &Lin, x: &[f64]) -> f64 {
    let mut z = l.b;
    for i in 0..l.w.len() {
        z += l.w[i] * x[i];
    }
    z.tanh()
}

/// Fields in loops, nested fields, array field, helper on &p.l1, field iterators.
#[grad(p)]
fn net_loss(p: &Net, x: &[f64]) -> f64 {
    let mut s = 0.0;
    for t in 0..2 {
        for i in 0..p.l1.w.len() {
            s += p.l1.w[i] * p.l2.w[i] * p.scale[t] + p.l1.b * x[i];
        }
        s = s * p.scale[1 - t] + p.l2.b;
    }
    let a = lin_apply(&p.l2, x);
    let mut c = 0.0;
    for i in 0..p.l2.w.len() {
        c += p.l1.w[i] * p.l2.w[i] * p.l2.b;
    }
    let l = &p.l1;
    let d = l.w[0] * l.b;
    s + a + c + d + lin_apply(&p.l1, &p.l2.w)
}
#[test]
fn p_net_loss() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = net_loss_grad(&p, &x);
    check_net(&|q| net_loss(q, &x), v, &g.p, &p);
}

/// A struct by value; the field buffer copied and written.
#[grad(p)]
fn net_by_value(p: Net, x: &[f64]) -> f64 {
    let mut w = p.l1.w.to_vec();
    for i in 0..w.len() {
        w[i] = w[i] * p.l2.w[i] + p.scale[0];
    }
    let mut s = 0.0;
    for i in 0..w.len() {
        s += w[i] * w[i] * x[i];
    }
    s + p.l1.b * p.l2.b
}
#[test]
fn p_net_by_value() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = net_by_value_grad(p.clone(), &x);
    check_net(&|q| net_by_value(q.clone(), &x), v, &g.p, &p);
}

/// The same struct passed twice / two struct args.
#[grad]
fn two_lins(a: &Lin, b: &Lin, x: &[f64]) -> f64 {
    lin_apply(a, x) * lin_apply(b, x) + a.b * b.b + lin_apply(a, &b.w)
}
#[test]
fn p_two_lins_same() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = two_lins_grad(&p.l1, &p.l1, &x);
    // d/dl where both args are the same struct: sum of both gradients
    let f = |v: &[f64]| {
        let l = Lin {
            w: v[..3].to_vec(),
            b: v[3],
        };
        two_lins(&l, &l, &x)
    };
    let mut flat = p.l1.w.clone();
    flat.push(p.l1.b);
    let mut gsum: Vec<f64> = g.a.w.iter().zip(&g.b.w).map(|(a, b)| a + b).collect();
    gsum.push(g.a.b + g.b.b);
    check(&f, v, &gsum, &flat);
    let (v2, g2) = two_lins_grad(&p.l1, &p.l2, &x);
    let f2 = |v: &[f64]| {
        let a = Lin {
            w: v[..3].to_vec(),
            b: v[3],
        };
        let b = Lin {
            w: v[4..7].to_vec(),
            b: v[7],
        };
        two_lins(&a, &b, &x)
    };
    let mut flat2 = p.l1.w.clone();
    flat2.push(p.l1.b);
    flat2.extend(&p.l2.w);
    flat2.push(p.l2.b);
    let mut gg = g2.a.w.clone();
    gg.push(g2.a.b);
    gg.extend(&g2.b.w);
    gg.push(g2.b.b);
    check(&f2, v2, &gg, &flat2);
}

/// Struct fields with writes to a local, loops with break and match.
#[grad(p)]
fn net_jumps(p: &Net, k: usize) -> f64 {
    let mut s = 0.0;
    let mut i = 0;
    loop {
        if i >= p.l1.w.len() {
            break;
        }
        let w = p.l1.w[i];
        i += 1;
        if w < 0.0 {
            continue;
        }
        s += match k {
            0 => w * p.scale[0],
            _ => w * p.l2.w[i - 1],
        };
    }
    s * p.l1.b
}
#[test]
fn p_net_jumps() {
    let p = sample_net();
    for k in 0..2 {
        let (v, g) = net_jumps_grad(&p, k);
        check_net(&|q| net_jumps(q, k), v, &g.p, &p);
    }
}

// ---------------------------------------------------------------- rows of a list of buffers

#[derive(Clone, Debug, backprop::Differentiable)]
struct RowsOfWeights {
    rows: Vec<Vec<f64>>,
    b: f64,
}

/// A `Vec<Vec<f64>>` field read by index, as README says (`let r = &p.rows[i];` then
/// `r[j]`): each row's gradient goes into `d_p.rows[i]`.
#[grad(p)]
fn rows_by_index(p: &RowsOfWeights, x: &[f64]) -> f64 {
    let mut s = p.b;
    for i in 0..p.rows.len() {
        let r = &p.rows[i];
        for j in 0..x.len() {
            s += r[j] * x[j] * r[j];
        }
    }
    s
}

#[test]
fn a_list_of_buffers_read_by_index() {
    let p = RowsOfWeights {
        rows: vec![vec![1.0, 2.0], vec![-0.5, 0.25]],
        b: 0.5,
    };
    let x = [0.5, -2.0];
    let (s, g) = rows_by_index_grad(&p, &x);
    // s = b + Σ r_ij²·x_j; ∂/∂r_ij = 2·r_ij·x_j, ∂/∂b = 1.
    assert_eq!(s, 0.5 + 0.5 - 8.0 + 0.125 - 0.125);
    assert_eq!(g.p.rows, vec![vec![1.0, -8.0], vec![-0.5, -1.0]]);
    assert_eq!(g.p.b, 1.0);
}
