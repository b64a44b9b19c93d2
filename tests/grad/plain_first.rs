//! `f_grad` runs a loop's reverse pass without strong zeros first (branch-free
//! products), and again with them when the gradient has a NaN
//! (`backprop::rules::scalar::plain` explains why the two then agree). These tests pin
//! the fallback: a `0 · ∞` inside a loop gives the strong-zero gradient through
//! `f_grad`, nested calls included; a NaN the function really has stays visible; and
//! a checkpointed call of a hand-written rule is not run forward again.

use backprop::{Pullback, custom_vjp, grad, gradcheck, logsumexp};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Σᵢ wᵢ √xᵢ: at xᵢ = 0 the local derivative of √ is infinite, so a zero weight
/// multiplies ∞ (the strong zero makes that term 0).
#[grad]
fn weighted_roots(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += w[i] * x[i].sqrt();
    }
    s
}

#[test]
fn a_zero_times_infinity_in_a_loop_gives_the_strong_zero_gradient() {
    let (x, w) = ([0.0, 4.0, 9.0], [0.0, 1.0, 2.0]);
    let (value, g) = weighted_roots_grad(&x, &w);
    assert_eq!(value, 2.0 + 6.0);
    // ∂/∂x = wᵢ / (2√xᵢ): 0 · ∞ → 0 at x₀, 1/4, 2/6.
    assert_eq!(g.x, vec![0.0, 0.25, 2.0 / 6.0]);
    // ∂/∂w = √xᵢ.
    assert_eq!(g.w, vec![0.0, 2.0, 3.0]);
    // The same as the strong-zero pass alone (`f_backward`)...
    let (_, tape) = weighted_roots_forward(&x, &w);
    let strong = weighted_roots_backward(tape, 1.0);
    assert_eq!((strong.x, strong.w), (g.x.clone(), g.w.clone()));
    // ...and the first try, without strong zeros, is what has the NaN.
    let (_, tape) = weighted_roots_forward(&x, &w);
    let plain = tape.backward_unguarded(1.0);
    assert!(plain.x[0].is_nan(), "{:?}", plain.x);
    assert_eq!(&plain.x[1..], &g.x[1..]);
}

#[test]
fn without_a_zero_times_infinity_the_first_pass_is_the_gradient() {
    let (x, w) = ([1.0, 4.0, 9.0], [3.0, 1.0, 2.0]);
    let (_, g) = weighted_roots_grad(&x, &w);
    assert_eq!(g.x, vec![1.5, 0.25, 2.0 / 6.0]);
    let (_, tape) = weighted_roots_forward(&x, &w);
    let plain = tape.backward_unguarded(1.0);
    assert_eq!((plain.x, plain.w), (g.x, g.w));
    gradcheck!(weighted_roots(x = &x.to_vec(), w = &w.to_vec())).assert();
}

#[test]
fn a_nan_the_function_has_is_not_hidden() {
    // √(−1) is NaN with a non-zero weight: NaN value, NaN gradient, with or without
    // strong zeros.
    let (value, g) = weighted_roots_grad(&[-1.0, 4.0], &[1.0, 1.0]);
    assert!(value.is_nan());
    assert!(g.x[0].is_nan() && g.w[0].is_nan());
    assert_eq!(g.x[1], 0.25);
}

/// The same term behind a call, inside the caller's loop.
#[grad]
fn root_term(x: f64, w: f64) -> f64 {
    w * x.sqrt()
}

#[grad]
fn weighted_roots_by_call(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += root_term(x[i], w[i]);
    }
    s
}

#[test]
fn the_fallback_reaches_nested_calls() {
    let (value, g) = weighted_roots_by_call_grad(&[0.0, 4.0], &[0.0, 1.0]);
    assert_eq!(value, 2.0);
    assert_eq!(g.x, vec![0.0, 0.25]);
    assert_eq!(g.w, vec![0.0, 2.0]);
}

/// A generic `Float` function also tries the plain pass first (its arguments are
/// `Copy`); f32 gives the same fallback.
#[grad]
fn weighted_roots_generic<T: num_traits::Float>(x: &[T], w: &[T]) -> T {
    let mut s = T::zero();
    for i in 0..x.len() {
        s = s + w[i] * x[i].sqrt();
    }
    s
}

#[test]
fn generic_functions_fall_back_too() {
    let (_, g) = weighted_roots_generic_grad::<f32>(&[0.0, 4.0], &[0.0, 1.0]);
    assert_eq!(g.x, vec![0.0f32, 0.25]);
    let (_, g) = weighted_roots_generic_grad::<f64>(&[0.0, 4.0], &[0.0, 1.0]);
    assert_eq!(g.x, vec![0.0, 0.25]);
}

// ---- checkpointed calls of hand-written rules -----------------------------------

static NORM_CALLS: AtomicUsize = AtomicUsize::new(0);

/// ‖v‖², counting its calls; its rule needs only the input and the value.
#[custom_vjp(counted_sq_norm_vjp)]
fn counted_sq_norm(v: &[f64]) -> f64 {
    NORM_CALLS.fetch_add(1, Ordering::SeqCst);
    v.iter().map(|x| x * x).sum()
}

fn counted_sq_norm_vjp(v: &[f64], _y: f64, d: f64) -> (Vec<f64>,) {
    (v.iter().map(|x| 2.0 * x * d).collect(),)
}

/// Σₜ ‖hₜ‖² where hₜ = x·t is a buffer the loop overwrites every step: the call keeps
/// a copy of hₜ and its value, and the reverse pass rebuilds the rule's tape from them.
#[grad]
fn sum_of_norms(x: &[f64], steps: usize) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..steps {
        for j in 0..x.len() {
            h[j] = x[j] * (t as f64 + 1.0);
        }
        total += counted_sq_norm(&h);
    }
    total
}

#[test]
fn a_checkpointed_hand_written_rule_runs_forward_once_per_call() {
    let x = [1.0, -2.0];
    NORM_CALLS.store(0, Ordering::SeqCst);
    let (value, tape) = sum_of_norms_forward(&x, 3);
    assert_eq!(NORM_CALLS.load(Ordering::SeqCst), 3);
    let g = sum_of_norms_backward(tape, 1.0);
    // The reverse pass made its tapes from the copies: no call of the function.
    assert_eq!(NORM_CALLS.load(Ordering::SeqCst), 3);
    // Σₜ (t+1)² ‖x‖² = (1 + 4 + 9) · 5; ∂/∂x = 2 · 14 · x.
    assert_eq!(value, 70.0);
    assert_eq!(g.x, vec![28.0, -56.0]);
}

// ---- the runtime's logsumexp ----------------------------------------------------

#[grad]
fn lse(v: &[f64]) -> f64 {
    logsumexp(v)
}

/// A mixture's log-likelihood: logsumexp of a buffer rewritten per data point.
#[grad]
fn mixture_loglik(a: &[f64], xs: &[f64]) -> f64 {
    let mut terms = vec![0.0; a.len()];
    let mut total = 0.0;
    for x in xs {
        for k in 0..a.len() {
            terms[k] = a[k] - (x - k as f64) * (x - k as f64);
        }
        total += logsumexp(&terms);
    }
    total
}

#[test]
fn logsumexp_values_at_the_edges() {
    assert_eq!(logsumexp::<f64>(&[]), f64::NEG_INFINITY);
    assert_eq!(
        logsumexp(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
        f64::NEG_INFINITY
    );
    assert_eq!(logsumexp(&[1.0, f64::INFINITY]), f64::INFINITY);
    assert!(logsumexp(&[1.0, f64::NAN]).is_nan());
    assert!(logsumexp(&[f64::INFINITY, f64::NAN]).is_nan());
    assert_eq!(logsumexp(&[5.0]), 5.0);
    // No overflow far from 0, either way.
    assert_eq!(logsumexp(&[1000.0, 1000.0]), 1000.0 + 2f64.ln());
    assert_eq!(logsumexp(&[-1000.0, -1000.0]), -1000.0 + 2f64.ln());
    assert_eq!(logsumexp(&[0.0f32, 0.0]), 2f32.ln());
}

#[test]
fn logsumexp_gradient_is_the_softmax_at_any_magnitude() {
    // The rounded value would say [1, 1] here: the rule forms the sum again.
    let (_, g) = lse_grad(&[1e16, 1e16]);
    assert_eq!(g.v, vec![0.5, 0.5]);
    let (_, g) = lse_grad(&[-1e16, -1e16, -1e16, -1e16]);
    assert_eq!(g.v, vec![0.25; 4]);
    // f32 at 1e7 (the rounded value would give 0.368 each).
    #[grad]
    fn lse32(v: &[f32]) -> f32 {
        logsumexp(v)
    }
    let (_, g) = lse32_grad(&[1e7, 1e7]);
    assert_eq!(g.v, vec![0.5f32, 0.5]);
    let (_, g) = lse32_grad(&[0.0, 1.0]);
    let e = 1f32.exp();
    assert!((g.v[0] - 1.0 / (1.0 + e)).abs() < 1e-7 && (g.v[1] - e / (1.0 + e)).abs() < 1e-7);
}

#[test]
fn logsumexp_gradient_is_the_softmax() {
    let v = [1.0, 2.0, 3.0];
    let (y, g) = lse_grad(&v);
    let z: f64 = v.iter().map(|x| x.exp()).sum();
    assert!((y - z.ln()).abs() < 1e-15);
    for (gi, vi) in g.v.iter().zip(&v) {
        assert!((gi - vi.exp() / z).abs() < 1e-15, "{gi}");
    }
    gradcheck!(lse(v = &vec![0.3, -1.2, 2.5, 0.0])).assert();
}

#[test]
fn logsumexp_in_a_loop_over_a_rewritten_buffer() {
    let a = [0.5, -0.25, 1.0];
    let xs = [0.2, 1.7, 2.4, -0.6];
    let (value, g) = mixture_loglik_grad(&a, &xs);
    // By hand: ∂/∂aₖ = Σₓ softmaxₖ(terms(x)).
    let mut expect = [0.0; 3];
    let mut total = 0.0;
    for x in xs {
        let t: Vec<f64> = (0..3).map(|k| a[k] - (x - k as f64).powi(2)).collect();
        let z: f64 = t.iter().map(|v| v.exp()).sum();
        total += z.ln();
        for k in 0..3 {
            expect[k] += t[k].exp() / z;
        }
    }
    assert!((value - total).abs() < 1e-12);
    for k in 0..3 {
        assert!(
            (g.a[k] - expect[k]).abs() < 1e-12,
            "{:?} vs {expect:?}",
            g.a
        );
    }
    gradcheck!(mixture_loglik(a = &a.to_vec(), xs = const &xs)).assert();
}

// ---- argument names the companions use for themselves ---------------------------

/// A parameter named `value` (the companions name the call's result `__value`).
#[grad]
fn sq_sum(value: &[f64]) -> f64 {
    value.iter().map(|v| v * v).sum()
}

#[custom_vjp(cube_sum_vjp)]
fn cube_sum(value: &[f64]) -> f64 {
    value.iter().map(|v| v * v * v).sum()
}

fn cube_sum_vjp(value: &[f64], _y: f64, d: f64) -> (Vec<f64>,) {
    (value.iter().map(|v| 3.0 * v * v * d).collect(),)
}

#[grad]
fn both_on_a_rewritten_buffer(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..2 {
        for j in 0..x.len() {
            h[j] = x[j] + t as f64;
        }
        total += sq_sum(&h) + cube_sum(&h);
    }
    total
}

#[test]
fn a_parameter_named_value_is_not_confused_with_the_result() {
    // h = x, then x + 1: Σ h² + h³ over both; ∂/∂x = Σₜ 2h + 3h².
    let (value, g) = both_on_a_rewritten_buffer_grad(&[1.0, 2.0]);
    assert_eq!(value, (1.0 + 4.0 + 1.0 + 8.0) + (4.0 + 9.0 + 8.0 + 27.0));
    assert_eq!(
        g.x,
        vec![(2.0 + 3.0) + (4.0 + 12.0), (4.0 + 12.0) + (6.0 + 27.0)]
    );
}

// ---- which functions try the plain pass -----------------------------------------

static SCALE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// `2x`, counting its forward calls (a rule call: the plain pass may run it twice).
#[custom_vjp(counted_double_vjp)]
fn counted_double(x: f64) -> f64 {
    SCALE_CALLS.fetch_add(1, Ordering::SeqCst);
    2.0 * x
}

fn counted_double_vjp(_x: f64, _y: f64, d: f64) -> (f64,) {
    (2.0 * d,)
}

/// Casts, `len()` and operators on constants do not stop the plain pass.
#[grad]
fn mean_weighted_roots(x: &[f64], w: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mut s = 0.0;
    for i in 0..x.len() {
        s += counted_double(w[i]) * x[i].sqrt();
    }
    s / n
}

#[test]
fn casts_and_len_keep_the_plain_pass_and_its_fallback() {
    // No 0·∞: one forward pass.
    SCALE_CALLS.store(0, Ordering::SeqCst);
    let (v, g) = mean_weighted_roots_grad(&[1.0, 4.0], &[1.0, 1.0]);
    assert_eq!(SCALE_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(v, (2.0 + 4.0) / 2.0);
    assert_eq!(g.x, vec![0.5, 0.25]);
    // 0·∞ at x₀: the plain pass had a NaN, so the forward pass ran again.
    SCALE_CALLS.store(0, Ordering::SeqCst);
    let (v, g) = mean_weighted_roots_grad(&[0.0, 4.0], &[0.0, 1.0]);
    assert_eq!(SCALE_CALLS.load(Ordering::SeqCst), 4);
    assert_eq!(v, 2.0);
    assert_eq!(g.x, vec![0.0, 0.25]);
    assert_eq!(g.w, vec![0.0, 2.0]);
}
