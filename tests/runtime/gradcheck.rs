//! `gradcheck!` itself (issue 13, item 9): what it must catch and what it must pass.
//! Each wrong gradient below is one the old check (PyTorch's atol = 1e-5, rtol = 1e-3,
//! d_out = 1 only) let through.

use backprop::gradcheck::{Options, Report};
use backprop::{custom_vjp, grad, gradcheck};

/// sin with a pullback that ignores its output cotangent: right for d = 1 only.
#[custom_vjp(bad_sin_vjp)]
fn bad_sin(x: f64) -> f64 {
    x.sin()
}

fn bad_sin_vjp(x: f64, _y: f64, _d: f64) -> (f64,) {
    (x.cos(),)
}

/// The faulty rule used alone: `f_grad` runs the reverse pass with d = 1, where it is
/// right.
#[grad]
fn alone(x: f64) -> f64 {
    bad_sin(x)
}

/// A rule that scales its cotangent by 9: `d · 9·cos x`.
#[custom_vjp(nine_times_vjp)]
fn nine_times(x: f64) -> f64 {
    x.sin()
}

fn nine_times_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
    (d * 9.0 * x.cos(),)
}

/// 1e-6·sin x with a 9× gradient: |error| ≤ 8e-6 < the old atol 1e-5.
#[grad]
fn small_nine_times(x: f64) -> f64 {
    1e-6 * nine_times(x)
}

/// A rule 0.05% off: `d · 1.0005·cos x`.
#[custom_vjp(slightly_off_vjp)]
fn slightly_off(x: f64) -> f64 {
    x.sin()
}

fn slightly_off_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
    (d * 1.0005 * x.cos(),)
}

#[grad]
fn off_by_half_permille(x: f64, w: f64) -> f64 {
    w * slightly_off(x)
}

/// Correct gradients at magnitudes 1e-8 and 1e8 (and a vector argument).
#[grad]
fn scaled(x: f64, v: &[f64], k: f64) -> f64 {
    let mut s = 0.0;
    for e in v {
        s += (e * x).sin();
    }
    k * (s + x.exp())
}

fn failed(report: &Report) -> bool {
    !report.passed()
}

#[test]
fn a_rule_that_ignores_its_cotangent_is_caught_alone() {
    let report = gradcheck!(alone(x = 0.4));
    assert!(failed(&report), "not caught:\n{report}");
    // Per coordinate (d = 1) it is right; the random cotangents catch it.
    assert!(report.args[0].passed, "{report}");
    assert!(report.pairs.iter().any(|p| !p.passed), "{report}");
    let (_, at) = report.worst();
    assert!(at.starts_with("VJP pair"), "{at}");
}

#[test]
#[should_panic(expected = "gradient check failed")]
fn a_rule_that_ignores_its_cotangent_panics_in_assert() {
    gradcheck!(alone(x = 0.4)).assert();
}

#[test]
fn a_nine_fold_error_at_magnitude_1e_minus_6_is_caught() {
    let report = gradcheck!(small_nine_times(x = 0.3));
    assert!(failed(&report), "not caught:\n{report}");
    let a = &report.args[0];
    assert!(!a.passed);
    assert!((a.analytic / a.numeric - 9.0).abs() < 1e-6, "{report}");
    assert!(a.numeric.abs() < 1e-5 && a.numeric.abs() > 1e-7);
}

#[test]
fn a_half_permille_error_is_caught() {
    let report = gradcheck!(off_by_half_permille(x = 1.1, w = -0.8));
    assert!(failed(&report), "not caught:\n{report}");
    let x = &report.args[0];
    assert_eq!(x.name, "x");
    assert!(!x.passed);
    assert!((x.rel_err - 5e-4).abs() < 1e-6, "{report}");
    assert!(report.args[1].passed, "w's gradient is right:\n{report}");
}

#[test]
fn correct_gradients_pass_at_magnitudes_1e_minus_8_and_1e8() {
    let v = vec![0.3, -1.2, 2.0];
    for k in [1e-8, 1.0, 1e8] {
        let report = gradcheck!(scaled(x = 0.6, v = &v, k = const k));
        assert!(report.passed(), "k = {k}:\n{report}");
        assert_eq!(report.args.len(), 2);
        assert_eq!(report.args[1].len, 3);
        assert_eq!(report.pairs.len(), 3);
        // The check is as tight at every scale: the worst error is a tiny fraction of
        // the gradient, not of a fixed floor.
        let g = report.args[0].numeric.abs();
        assert!(
            report.worst_abs_err() <= 1e-8 * g.max(1e-300) * 1e2,
            "k = {k}:\n{report}"
        );
    }
}

#[test]
fn the_report_says_what_was_checked() {
    let report = gradcheck!(off_by_half_permille(x = 1.1, w = -0.8));
    let text = report.to_string();
    for needle in [
        "checked 2 argument(s)",
        "3 random VJP pair(s)",
        "h = 6.06e-6·max(1, |x|)",
        "1e-7·S + 1e-6·max(|analytic|, |numeric|)",
        "worst: argument `x`, element 0",
        "FAILED",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // Options are honoured: more pairs, another seed.
    let more = gradcheck!(
        off_by_half_permille(x = 1.1, w = -0.8),
        Options {
            pairs: 5,
            seed: 7,
            ..Options::default()
        }
    );
    assert_eq!(more.pairs.len(), 5);
}

#[test]
#[ignore = "prints a failing report"]
fn print_a_failing_report() {
    println!("{}", gradcheck!(off_by_half_permille(x = 1.1, w = -0.8)));
    println!("{}", gradcheck!(alone(x = 0.4)));
}

// ---------------------------------------------------------------- arguments evaluated once

#[grad(w)]
fn weighted(w: &[f64], x: &[f64], k: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += (w[i] * x[i]).tanh() * k as f64;
    }
    s
}

/// Each argument expression is evaluated once, before any check, as a `let` would:
/// an expression drawing from a random number generator (borrowed mutably), or counting
/// its calls, runs once, and one argument's name does not shadow what another reads.
#[test]
fn argument_expressions_are_evaluated_once() {
    let mut draws = 0usize;
    let mut draw = |n: usize| -> Vec<f64> {
        draws += 1;
        (0..n).map(|i| 0.3 + 0.1 * (i + draws) as f64).collect()
    };
    let x = vec![0.5, -0.25, 1.0];
    let report = gradcheck!(weighted(w = &draw(3), x = const &x, k = const { 2 }));
    report.assert();
    assert_eq!(draws, 1);
    // `w = &x, x = &w`-style swaps read the caller's names, not the macro's bindings.
    let w = vec![0.1, 0.2, 0.3];
    let (x, w) = (w, x);
    gradcheck!(weighted(w = &x, x = const &w, k = const 1)).assert();
}
