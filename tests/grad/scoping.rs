//! Scopes in `#[grad]` bodies: a binding made in a block, a loop body or a branch arm
//! lives there only, as in `f`; shadowing of locals, arguments and carried loop
//! variables; items declared inside the body.

// Written the way users write such code, including forms clippy would rewrite.
#![allow(
    clippy::assign_op_pattern,
    clippy::needless_range_loop,
    clippy::useless_vec,
    unused_variables
)]

use crate::support::X5;
use backprop::grad;

// ---- blocks ---------------------------------------------------------------------------

fn g() -> f64 {
    2.0
}

/// A binding inside a block must not shadow the function `g` used after the block:
/// a = x·5, result a·g() = 10x.
/// Pins: an inner binding leaked out of its block (bf5618a).
#[grad]
fn block_scoping(x: f64) -> f64 {
    let a = {
        let g = 5.0;
        x * g
    };
    a * g()
}

#[test]
fn nested_block_bindings_stay_in_their_block() {
    let (v, gr) = block_scoping_grad(1.0);
    assert_eq!((v, gr.x), (10.0, 10.0));
    assert_eq!(block_scoping(1.0), 10.0);
}

/// A statement block with no value.
#[grad]
fn statement_block(x: f64) -> f64 {
    {
        let _z = x * 2.0;
    }
    x * x
}

#[test]
fn statement_blocks_are_accepted() {
    assert_eq!(
        statement_block_grad(3.0),
        (9.0, StatementBlockGrad { x: 6.0 })
    );
}

// ---- shadowing in blocks, loop bodies and arms; items in the body ---------------------

/// Shadowing a buffer name.
#[grad]
fn shadowing(x: &[f64]) -> f64 {
    let h = x.to_vec();
    let h = vec![h[0] * h[1], h[2]];
    let mut h = h.to_vec();
    h[0] += h[1];
    let h = [h[0] * 2.0, h[1]];
    h[0] * h[1]
}
probe!(p_shadowing, shadowing, shadowing_grad, vec![0.5, -1.5, 2.0]);

/// Shadowing inside blocks, loop bodies and branches must not leak.
#[grad]
fn scoping(x: &[f64]) -> f64 {
    let y = {
        let x = 2.0 * x[0];
        x * x
    };
    let mut s = x[1];
    let mut t = 0.0;
    for i in 0..x.len() {
        let s = s * x[i];
        t += s;
    }
    if x[2] > 0.0 {
        let t = 100.0;
        s += t * 0.0 + x[2];
    }
    {
        let s = 5.0;
        t += s * 0.0;
    }
    {
        s = s * 2.0;
    }
    y + s + t + x[0]
}
probe!(p_scoping, scoping, scoping_grad, vec![0.5, -0.8, 0.6]);

/// Local fn items inside the body, calling each other.
#[grad]
fn local_items(x: &[f64]) -> f64 {
    fn sq(v: f64) -> f64 {
        v * v
    }
    fn norm(v: &[f64]) -> f64 {
        let mut s = 0.0;
        for i in 0..v.len() {
            s += sq(v[i]);
        }
        s.sqrt()
    }
    const SCALE: f64 = 2.0;
    norm(x) * SCALE + sq(x[0])
}
probe!(
    p_local_items,
    local_items,
    local_items_grad,
    vec![0.5, -0.8, 0.6]
);

/// An argument shadowed by a written local of the same name, after reads of the argument.
#[grad]
fn shadow_argument(x: &[f64]) -> f64 {
    let s0 = x[0] * x[1];
    let mut x = x.to_vec();
    x[0] = s0 * 5.0;
    x[1] *= x[0];
    s0 * x[0] + x[1]
}
probe!(
    p_shadow_argument,
    shadow_argument,
    shadow_argument_grad,
    vec![0.5, -0.8, 0.6]
);

// ---- a let in a loop body shadows a carried variable for that iteration only ----------

/// Range bounds shadowed / modified after the loop; nested loop with its range
/// bound redefined in the outer body after it.
/// Pins: a `let` in a loop body shadowing a carried `let mut` replaced the carried value
/// (10aa381).
#[grad]
fn range_bound_shadow(x: &[f64]) -> f64 {
    let mut n = 2;
    let mut s = 1.0;
    for t in 0..3 {
        for i in 0..n {
            s = s * x[i] + 0.2;
        }
        n = n + 1;
        let n = 1;
        s = s * x[n];
    }
    let n = 4;
    s * x[n]
}
probe!(
    p_range_bound_shadow,
    range_bound_shadow,
    range_bound_shadow_grad,
    X5.to_vec()
);

/// Minimal form of the bug above: a float accumulator shadowed at the end of the body.
/// Expected value x0+x1+x2 = 6 and gradient [1, 1, 1, 0, 0] at [1, 2, 3, 4, 5].
/// Pins: a `let` in a loop body shadowing a carried `let mut` replaced the carried value
/// (10aa381).
#[grad]
fn shadow_carried_float(x: &[f64]) -> f64 {
    let mut c = 0.0;
    for t in 0..3 {
        c = c + x[t];
        let c = 10.0;
    }
    c
}
probe!(
    p_shadow_carried_float,
    shadow_carried_float,
    shadow_carried_float_grad,
    vec![1.0, 2.0, 3.0, 4.0, 5.0]
);

/// The same with an integer counter stepped by a literal, used as an index after.
#[grad]
fn shadow_carried_counter(x: &[f64]) -> f64 {
    let mut n = 0;
    let mut s = 0.0;
    for t in 0..3 {
        n += 1;
        let n = 4;
        s = s + x[n];
    }
    s * x[n]
}
probe!(
    p_shadow_carried_counter,
    shadow_carried_counter,
    shadow_carried_counter_grad,
    vec![1.0, 2.0, 3.0, 4.0, 5.0]
);

// ---- a tuple of values bound at once --------------------------------------------------

/// `let (a, b) = (e1, e2);` binds each name to its element; an element that reads a
/// name being bound reads its old value (`(b, a)` swaps).
#[grad]
fn tuple_lets(x: f64, y: f64) -> f64 {
    let (a, b) = (x * y, x.sin());
    let (a, b) = (b, a);
    let (mut s, _) = (a + 1.0, y.exp());
    for _ in 0..2 {
        let (p, q) = (s * b, s - b);
        s = p + q;
    }
    s * x
}

fn tuple_lets_by_hand(x: f64, y: f64) -> f64 {
    let (a, b) = (x.sin(), x * y);
    let mut s = a + 1.0;
    for _ in 0..2 {
        s = s * b + (s - b);
    }
    s * x
}

/// Arrays bound from a tuple: `let (q, k) = (x.dot(wq), x.dot(wk));`.
#[grad]
fn tuple_of_arrays(
    x: &ndarray::Array2<f64>,
    wq: &ndarray::Array2<f64>,
    wk: &ndarray::Array2<f64>,
) -> f64 {
    let (q, k) = (x.dot(wq).tanh(), x.dot(wk));
    let (k, q) = (q, k);
    (&q * &k).sum()
}

#[test]
fn tuple_lets_bind_each_element_as_rust_does() {
    for &(x, y) in &[(0.3, -0.7), (1.1, 0.4)] {
        assert_eq!(tuple_lets(x, y), tuple_lets_by_hand(x, y));
        backprop::gradcheck!(tuple_lets(x = x, y = y)).assert();
    }
    let x = ndarray::array![[0.2, -0.4], [0.5, 0.1]];
    let wq = ndarray::array![[0.3, 0.1], [-0.2, 0.6]];
    let wk = ndarray::array![[-0.5, 0.2], [0.4, 0.3]];
    // f = Σ tanh(x·wq) ⊙ (x·wk), so ∂f/∂wk = xᵀ·tanh(x·wq).
    let (f, g) = tuple_of_arrays_grad(&x, &wq, &wk);
    let t = x.dot(&wq).tanh();
    assert!((f - (&t * &x.dot(&wk)).sum()).abs() < 1e-15);
    let expect = x.t().dot(&t);
    for (a, e) in g.wk.iter().zip(expect.iter()) {
        assert!((a - e).abs() < 1e-15, "{a} vs {e}");
    }
    backprop::gradcheck!(tuple_of_arrays(x = &x, wq = &wq, wk = &wk)).assert();
}
