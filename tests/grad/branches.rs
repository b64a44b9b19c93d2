//! `if`/`else` in `#[grad]` functions: the reverse pass follows the branch the forward
//! pass took. Hand-derived values, and central differences away from the switch points.

use backprop::{grad, gradcheck};

/// y = x² if x > 1, else 3x: dy/dx = 2x above 1, 3 below.
#[grad]
fn piecewise(x: f64) -> f64 {
    if x > 1.0 { x * x } else { 3.0 * x }
}

#[test]
fn expression_branches() {
    assert_eq!(piecewise_grad(2.0), (4.0, PiecewiseGrad { x: 4.0 }));
    assert_eq!(piecewise_grad(0.5), (1.5, PiecewiseGrad { x: 3.0 }));
}

/// A statement branch that reassigns an outer local (a φ-node after the `if`), and an
/// `if` without `else`: v = a·b; if v > 0 { v = v² }; v + a.
/// For v > 0: d/da = 2v·b + 1, d/db = 2v·a. Otherwise: d/da = b + 1, d/db = a.
#[grad]
fn reassign(a: f64, b: f64) -> f64 {
    let mut v = a * b;
    if v > 0.0 {
        v = v * v;
    }
    v + a
}

#[test]
fn branches_that_reassign_locals() {
    let (val, g) = reassign_grad(2.0, 3.0); // v = 6 → 36
    assert_eq!(
        (val, g.a, g.b),
        (38.0, 2.0 * 6.0 * 3.0 + 1.0, 2.0 * 6.0 * 2.0)
    );
    let (val, g) = reassign_grad(2.0, -3.0); // v = −6, unchanged
    assert_eq!((val, g.a, g.b), (-4.0, -3.0 + 1.0, 2.0));
}

/// An else-if ladder with nested branches, a branch on an inactive argument, and
/// values used in one branch only.
#[grad(x)]
fn ladder(x: f64, mode: u8) -> f64 {
    let s = x.sin();
    let r = if mode == 0 {
        s * s
    } else if mode == 1 {
        if x > 0.0 { x.exp() } else { -x }
    } else {
        let c = x.cos();
        c * s
    };
    r + 1.0
}

#[test]
fn ladders_and_nesting() {
    let x: f64 = 0.7;
    // mode 0: d/dx sin² = 2 sin cos
    assert!((ladder_grad(x, 0).1.x - 2.0 * x.sin() * x.cos()).abs() < 1e-15);
    // mode 1, x > 0: eˣ; x < 0: −1
    assert_eq!(ladder_grad(x, 1).1.x, x.exp());
    assert_eq!(ladder_grad(-x, 1).1.x, -1.0);
    // mode 2: d/dx cos·sin = cos² − sin²
    assert!((ladder_grad(x, 2).1.x - (x.cos() * x.cos() - x.sin() * x.sin())).abs() < 1e-15);
    for (p, m) in [(0.3, 0), (0.9, 1), (-0.4, 1), (1.3, 2)] {
        gradcheck!(ladder(x = p, mode = const m)).assert();
    }
}

/// An early return: relu-like with a different slope, d/dx = 0 below 0, 2x + 1 above.
#[grad]
fn early(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let y = x * x;
    y + x
}

#[test]
fn early_returns() {
    assert_eq!(early_grad(-1.0), (0.0, EarlyGrad { x: 0.0 }));
    assert_eq!(early_grad(2.0), (6.0, EarlyGrad { x: 5.0 }));
    assert_eq!(early(2.0), 6.0);
}

/// A branch records one bit: the tape of a branch that saves nothing is one tag.
#[grad]
fn linear_branch(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x - 1.0 }
}

#[test]
fn a_branch_that_saves_nothing_costs_its_tag() {
    use backprop::Pullback;
    let (_, tape) = linear_branch_forward(1.0);
    // Both branch pullbacks capture nothing (zero-sized closures), so the tape is the
    // `Branch` enum's tag: one byte.
    assert_eq!(tape.bytes(), 1);
    assert_eq!(linear_branch_grad(-3.0).1.x, 1.0);
}

#[grad]
fn branchy(x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return y;
    }
    let mut v = x * y;
    if v > 1.0 {
        v = v.ln();
    }
    let w = if y > 0.0 { v * y } else { v };
    w + x
}

#[test]
fn mixed_branches_match_central_differences() {
    for (x, y) in [
        (0.5, 0.7),
        (2.0, 3.0),
        (-1.0, 2.0),
        (3.0, -0.5),
        (0.4, -2.0),
    ] {
        gradcheck!(branchy(x = x, y = y)).assert();
    }
}

// ---- buffers written in branches; the untaken branch is not run -----------------------

/// Buffer written inside branches.
#[grad]
fn branch_writes(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    for i in 0..n {
        if h[i] > 0.0 {
            h[i] = h[i] * h[i];
        } else if i > 0 {
            h[i] = h[i - 1] * 3.0;
        } else {
            h[(i + 1) % n] = h[i] * 2.0;
        }
    }
    h.iter().map(|v| v * v).sum()
}
probe!(
    p_branch_writes,
    branch_writes,
    branch_writes_grad,
    vec![-0.5, -1.5, 2.0, -0.4]
);

/// The untaken branch must not be evaluated, in the forward or reverse pass
/// (`j - 1` underflows at j = 0).
#[grad]
fn lazy_branches(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for j in 0..x.len() {
        let prev = if j > 0 { h[j - 1] } else { 0.0 };
        let prev2 = match j {
            0 => 1.0,
            _ => h[j - 1] * x[j - 1],
        };
        h[j] = h[j] * prev2 + prev;
        s += h[j] * h[j];
    }
    s
}
probe!(
    p_lazy_branches,
    lazy_branches,
    lazy_branches_grad,
    vec![0.5, -0.8, 0.6]
);
