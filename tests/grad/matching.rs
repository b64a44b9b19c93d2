//! `match` on values that carry no derivative (integers, enums, comparisons) in
//! `#[grad]` functions: the arm that ran is recorded like an `if`'s branch, and only
//! its code is differentiated. Also guards and scrutinees that read active values, and
//! arms that write buffers.

// Written the way users write such code, including forms clippy would rewrite.
#![allow(clippy::needless_range_loop, clippy::misrefactored_assign_op)]

use crate::support::check;
use backprop::{grad, gradcheck};

/// Which activation to use: data, not a parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Tanh,
    Square,
    Scaled,
}

#[grad(x)]
fn activate(x: f64, act: Act, k: usize) -> f64 {
    let y = match act {
        Act::Tanh => x.tanh(),
        Act::Square => x * x,
        Act::Scaled if k > 2 => 3.0 * x,
        Act::Scaled => 2.0 * x,
    };
    let mut z = y;
    match k {
        0 => z += 1.0,
        1..=3 => z *= x,
        n => {
            z *= n as f64;
        }
    }
    z
}

#[test]
fn match_picks_the_arm_and_its_derivative() {
    // Square, k = 0: z = x² + 1, dz/dx = 2x.
    let (v, g) = activate_grad(1.5, Act::Square, 0);
    assert_eq!((v, g.x), (3.25, 3.0));
    // Tanh, k = 2: z = tanh(x)·x, dz/dx = (1 − tanh²)x + tanh.
    let (v, g) = activate_grad(0.5, Act::Tanh, 2);
    let t = 0.5f64.tanh();
    assert_eq!(v, t * 0.5);
    assert!((g.x - ((1.0 - t * t) * 0.5 + t)).abs() < 1e-15);
    // Scaled with the guard (k = 3 > 2): z = 3x·x, dz/dx = 6x.
    assert_eq!(
        activate_grad(2.0, Act::Scaled, 3),
        (12.0, ActivateGrad { x: 12.0 })
    );
    // Scaled without the guard is never reached for k > 2; k = 7 binds n: z = 3x·7.
    assert_eq!(
        activate_grad(2.0, Act::Scaled, 7),
        (42.0, ActivateGrad { x: 21.0 })
    );
    for (act, k) in [(Act::Tanh, 0), (Act::Square, 5), (Act::Scaled, 1)] {
        gradcheck!(activate(x = 0.7, act = const act, k = const k)).assert();
    }
}

/// `matches!` and a `match` on a comparison of the active value.
#[grad]
fn piecewise(x: f64) -> f64 {
    let region = match x.partial_cmp(&1.0) {
        Some(std::cmp::Ordering::Less) => 0,
        _ => 1,
    };
    if matches!(region, 0) {
        x * x
    } else {
        2.0 * x - 1.0
    }
}

#[test]
fn match_on_a_comparison() {
    assert_eq!(piecewise_grad(0.5), (0.25, PiecewiseGrad { x: 1.0 }));
    assert_eq!(piecewise_grad(3.0), (5.0, PiecewiseGrad { x: 2.0 }));
}

// ---- guards, match forms and active scrutinees ----------------------------------------

/// match guard reading an active value; match on comparison results.
#[grad]
fn guard_active(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += match i % 3 {
            0 if x[i] > s => x[i] * x[i],
            0 => s * x[i],
            1 | 2 if matches!(x[i].partial_cmp(&0.0), Some(std::cmp::Ordering::Less)) => -x[i],
            _ => x[i].exp(),
        };
    }
    s
}
probe!(
    p_guard_active,
    guard_active,
    guard_active_grad,
    vec![0.5, -1.5, 2.0, 0.9, -0.3, 0.2]
);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Add,
    Mul,
    Skip,
}

/// match arms that write a buffer, on an enum slice, inside a loop.
#[grad(x)]
fn match_writes(x: &[f64], ops: &[Op]) -> f64 {
    let mut h = vec![1.0; x.len()];
    for i in 0..x.len() {
        match ops[i] {
            Op::Add => h[i] += x[i],
            Op::Mul => h[i] *= x[i] * h[i],
            Op::Skip => {}
        }
    }
    let mut s = 0.0;
    for i in 0..h.len() {
        s += h[i] * h[i];
    }
    s
}
#[test]
fn p_match_writes() {
    let x = vec![0.5, -0.8, 0.6];
    let ops = [Op::Mul, Op::Add, Op::Skip];
    let (v, g) = match_writes_grad(&x, &ops);
    check(&|x: &[f64]| match_writes(x, &ops), v, &g.x, &x);
}

/// match on a tuple, on a bool, and on a string.
#[grad(x)]
fn match_scrutinees(x: &[f64], mode: &str) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        for j in 0..x.len() {
            s += match i {
                0 => x[j],
                _ if j == 0 => x[i] * 2.0,
                _ if i == j => x[i] * x[j],
                _ => 0.0,
            };
        }
    }
    let t = match x[0] > 0.0 {
        true => s * s,
        false => -s,
    };
    match mode {
        "l1" => t.abs(),
        "l2" => t * t,
        _ => t,
    }
}
#[test]
fn p_match_scrutinees() {
    let x = vec![0.5, -0.8, 0.6];
    for mode in ["l1", "l2", "x"] {
        let (v, g) = match_scrutinees_grad(&x, mode);
        check(&|x: &[f64]| match_scrutinees(x, mode), v, &g.x, &x);
    }
    let x = vec![-0.5, -0.8, 0.6];
    let (v, g) = match_scrutinees_grad(&x, "l2");
    check(&|x: &[f64]| match_scrutinees(x, "l2"), v, &g.x, &x);
}

/// match with ranges and bindings on a computed integer, matches! with guard.
#[grad]
fn match_bins(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let bin = (i * 7) % 5;
        s += match bin {
            0..=1 => x[i],
            2..=3 => x[i] * bin as f64,
            b => s * x[i] + b as f64,
        };
        if matches!(bin, 1 | 4) && x[i] > 0.0 {
            s *= 1.5;
        }
    }
    s
}
probe!(
    p_match_bins,
    match_bins,
    match_bins_grad,
    vec![0.5, -0.8, 0.6, 1.2, 0.3, -0.4]
);

/// A match whose scrutinee is an active float, binding it in the arms.
#[grad]
fn match_binds_active(x: &[f64]) -> f64 {
    let a = match x[0] {
        v if v < 0.0 => -v,
        v => v * v,
    };
    let b = match x[1] * 2.0 {
        0.0 => 1.0,
        w => w * x[2],
    };
    a + b
}
#[test]
fn p_match_binds_active() {
    for x in [vec![0.5, -0.8, 0.6], vec![-0.5, 0.8, 0.6]] {
        let (v, g) = match_binds_active_grad(&x);
        check(&|x: &[f64]| match_binds_active(x), v, &g.x, &x);
    }
}
