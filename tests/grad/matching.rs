//! `match` on values that carry no derivative (integers, enums, comparisons) in
//! `#[grad]` functions: the arm that ran is recorded like an `if`'s branch, and only
//! its code is differentiated.

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
