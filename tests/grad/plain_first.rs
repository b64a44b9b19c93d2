//! `f_grad` runs a loop's reverse pass without strong zeros first (branch-free
//! products), and again with them when the gradient has a NaN
//! (`backprop::rules::scalar::plain` explains why the two then agree). These tests pin
//! the fallback: a `0 · ∞` inside a loop gives the strong-zero gradient through
//! `f_grad`, nested calls included; a NaN the function really has stays visible; and
//! a checkpointed call of a hand-written rule is not run forward again.
//!
//! With them, the probes of a break-it pass (fixed in 6855065): each compares `f_grad`
//! with the strong-zero pass alone (`f_forward` + `f_backward(tape, 1.0)`) and with
//! hand-derived values, through hand-written rules, calls no rule covers, checkpointed
//! calls that read their value (`callee::rebuild(copies.., value)`), `logsumexp`, rules
//! at their singular points inside loops, and every shape of function signature.
// Written the way users write such code, including forms clippy would rewrite.
#![allow(clippy::all, non_snake_case, unused)]

use backprop::{Differentiable, Pullback, custom_vjp, grad, gradcheck, logsumexp};
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

/// ‖v‖ (its rule reads the value y: v/y).
#[custom_vjp(norm_vjp)]
fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}
fn norm_vjp(v: &[f64], y: f64, d: f64) -> (Vec<f64>,) {
    (v.iter().map(|x| d * x / y).collect(),)
}

/// Σₜ ‖x·(t+1)‖ with h rewritten each step; the rule needs each step's own y.
#[grad]
fn norms_in_loop(x: &[f64], steps: usize) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..steps {
        for j in 0..x.len() {
            h[j] = x[j] * (t as f64 + 1.0) + t as f64;
        }
        total += norm(&h) * (t as f64 + 1.0);
    }
    total
}

fn norms_in_loop_by_hand(x: &[f64], steps: usize) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for t in 0..steps {
        let c = t as f64 + 1.0;
        let h: Vec<f64> = x.iter().map(|xj| xj * c + t as f64).collect();
        let n = h.iter().map(|v| v * v).sum::<f64>().sqrt();
        for j in 0..x.len() {
            g[j] += c * h[j] / n * c;
        }
    }
    g
}

#[test]
fn checkpointed_rule_reads_each_iterations_value() {
    let x = [0.3, -1.2, 2.0];
    let (_, g) = norms_in_loop_grad(&x, 4);
    let e = norms_in_loop_by_hand(&x, 4);
    for j in 0..3 {
        assert!((g.x[j] - e[j]).abs() < 1e-12, "{:?} vs {e:?}", g.x);
    }
    gradcheck!(norms_in_loop(x = &x.to_vec(), steps = const 4)).assert();
}

/// Nested loops, a call in a branch of the inner loop, and a `while` with `break`.
#[grad]
fn norms_nested(x: &[f64], n: usize) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for a in 0..n {
        for b in 0..n {
            for j in 0..x.len() {
                h[j] = x[j] * (a as f64 + 1.0) - (b as f64) * 0.5;
            }
            if (a + b) % 2 == 0 {
                total += norm(&h);
            } else {
                total -= 0.5 * norm(&h);
            }
        }
    }
    total
}

#[test]
fn checkpointed_rule_in_branches_of_nested_loops() {
    let x = [0.7, -0.4];
    let (v, g) = norms_nested_grad(&x, 3);
    let (_, tape) = norms_nested_forward(&x, 3);
    let strong = norms_nested_backward(tape, 1.0);
    assert_same_v!(g.x, strong.x);
    let mut e = vec![0.0; 2];
    let mut ev = 0.0;
    for a in 0..3 {
        for b in 0..3 {
            let h: Vec<f64> = x
                .iter()
                .map(|xj| xj * (a as f64 + 1.0) - b as f64 * 0.5)
                .collect();
            let nn = h.iter().map(|v| v * v).sum::<f64>().sqrt();
            let c = if (a + b) % 2 == 0 { 1.0 } else { -0.5 };
            ev += c * nn;
            for j in 0..2 {
                e[j] += c * h[j] / nn * (a as f64 + 1.0);
            }
        }
    }
    assert!((v - ev).abs() < 1e-12);
    for j in 0..2 {
        assert!((g.x[j] - e[j]).abs() < 1e-12, "{:?} vs {e:?}", g.x);
    }
}

#[grad]
fn norms_while(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    let mut t = 0;
    while t < 10 {
        for j in 0..x.len() {
            h[j] = x[j] + t as f64;
        }
        let n = norm(&h);
        if n > 5.0 {
            break;
        }
        total += n * n;
        t += 1;
    }
    total
}

#[test]
fn checkpointed_rule_in_a_while_with_break() {
    let x = [0.5, 1.0];
    let (v, g) = norms_while_grad(&x);
    // t = 0: ‖(0.5,1)‖, t = 1: ‖(1.5,2)‖ = 2.5, t = 2: ‖(2.5,3)‖ ≈ 3.9, t = 3: ‖(3.5, 4)‖ ≈ 5.3 > 5 → break.
    // total = Σ_{t<3} ‖h‖² = Σ (x+t)², ∂/∂x = Σ 2(x+t) (through y·y and v/y).
    let ev: f64 = (0..3)
        .map(|t| (0.5 + t as f64).powi(2) + (1.0 + t as f64).powi(2))
        .sum();
    assert!((v - ev).abs() < 1e-12, "{v} vs {ev}");
    let e: Vec<f64> = x
        .iter()
        .map(|xj| (0..3).map(|t| 2.0 * (xj + t as f64)).sum())
        .collect();
    for j in 0..2 {
        assert!((g.x[j] - e[j]).abs() < 1e-12, "{:?} vs {e:?}", g.x);
    }
}

/// Early return from inside the loop after a checkpointed call.
#[grad]
fn norms_early_return(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..5 {
        for j in 0..x.len() {
            h[j] = x[j] * (t as f64 + 1.0);
        }
        let n = norm(&h);
        if n > 3.0 {
            return total + 10.0 * n;
        }
        total += n;
    }
    total
}

#[test]
fn checkpointed_rule_before_an_early_return() {
    let x = [0.6, 0.8]; // ‖x‖ = 1: n = 1, 2, 3, 4 > 3 → return at t = 3
    let (v, g) = norms_early_return_grad(&x);
    assert!((v - (1.0 + 2.0 + 3.0 + 40.0)).abs() < 1e-12, "{v}");
    // ∂/∂x = (1 + 2 + 3 + 40)·x/‖x‖
    for j in 0..2 {
        assert!((g.x[j] - 46.0 * x[j]).abs() < 1e-12, "{:?}", g.x);
    }
}

/// A `#[grad]` callee with loops, on a rewritten buffer, with a 0·∞ inside the callee.
#[grad]
fn weighted_root_sum(h: &[f64], w: f64) -> f64 {
    let mut s = 0.0;
    for j in 0..h.len() {
        s += w * h[j].sqrt();
    }
    s
}

#[grad]
fn calls_rewritten(x: &[f64], w: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..w.len() {
        for j in 0..x.len() {
            h[j] = x[j] * t as f64;
        }
        total += weighted_root_sum(&h, w[t]);
    }
    total
}

#[test]
fn checkpointed_grad_callee_with_zero_times_infinity() {
    // t = 0: h = 0, w₀ = 0 → 0·∞ (strong zero); t = 1: h = x, w₁ = 2.
    let x = [4.0, 9.0];
    let w = [0.0, 2.0];
    let (v, g) = calls_rewritten_grad(&x, &w);
    let (_, tape) = calls_rewritten_forward(&x, &w);
    let strong = calls_rewritten_backward(tape, 1.0);
    assert_eq!(v, 2.0 * (2.0 + 3.0));
    assert_same_v!(g.x, strong.x);
    assert_same_v!(g.w, strong.w);
    assert_eq!(g.x, vec![2.0 / 4.0, 2.0 / 6.0]);
    assert_eq!(g.w, vec![0.0, 5.0]);
}

/// A `#[grad]` callee that reads an argument called `value`, on a rewritten buffer.
#[grad]
fn uses_value(value: &[f64], k: f64) -> f64 {
    let mut s = 0.0;
    for j in 0..value.len() {
        s += k * value[j] * value[j];
    }
    s
}

#[grad]
fn calls_uses_value(x: &[f64]) -> f64 {
    let mut h = vec![0.0; x.len()];
    let mut total = 0.0;
    for t in 0..3 {
        for j in 0..x.len() {
            h[j] = x[j] + t as f64;
        }
        total += uses_value(&h, 0.5);
    }
    total
}

#[test]
fn checkpointed_callee_with_argument_named_value() {
    let (v, g) = calls_uses_value_grad(&[1.0, -1.0]);
    // Σₜ ½Σⱼ (xⱼ+t)²; ∂/∂xⱼ = Σₜ (xⱼ+t) = 3xⱼ + 3
    assert_eq!(v, 0.5 * ((1.0 + 4.0 + 9.0) + (1.0 + 0.0 + 1.0)));
    assert_eq!(g.x, vec![6.0, 0.0]);
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

#[grad]
fn lse32(v: &[f32]) -> f32 {
    logsumexp(v)
}

/// Pins: logsumexp's rule used exp(x − y) with y rounded: [1, 1] at [1e16, 1e16] (6855065).
#[test]
fn logsumexp_gradient_is_a_softmax_at_large_magnitude_f64() {
    // softmax([a, a]) = [½, ½] for every finite a; the shifted forward is exact here.
    let (y, g) = lse_grad(&[1e16, 1e16]);
    // The rule computes exp(xᵢ − y) with y rounded to 1e16 (ln 2 < ulp/2 = 1): [1, 1].
    assert_eq!(g.v, vec![0.5, 0.5], "y = {y}");
}

/// Pins: the same in f32 (6855065).
#[test]
fn logsumexp_gradient_is_a_softmax_at_large_magnitude_f32() {
    // f32: y = 1e7 + ln 2 rounds to 1e7 + 1 (ulp 1): exp(−1) = 0.368 for each.
    let (_, g) = lse32_grad(&[1e7f32, 1e7]);
    let sum: f32 = g.v.iter().sum();
    assert!((sum - 1.0).abs() < 1e-3, "softmax sums to {sum}: {:?}", g.v);
}

#[test]
fn logsumexp_edges() {
    let (y, g) = lse_grad(&[]);
    assert_eq!(y, f64::NEG_INFINITY);
    assert!(g.v.is_empty());
    // One −∞ entry: softmax 0 there.
    let (y, g) = lse_grad(&[f64::NEG_INFINITY, 0.0]);
    assert_eq!(y, 0.0);
    assert_eq!(g.v, vec![0.0, 1.0]);
    // A NaN stays visible.
    let (y, g) = lse_grad(&[1.0, f64::NAN]);
    assert!(y.is_nan() && g.v.iter().all(|v| v.is_nan()), "{g:?}");
    // +∞ entry: value +∞; the finite entry's softmax is 0.
    let (y, g) = lse_grad(&[f64::INFINITY, 0.0]);
    assert_eq!(y, f64::INFINITY);
    assert_eq!(g.v[1], 0.0);
}

/// A masked mixture: some terms −∞, a zero-weighted term with +∞.
#[grad]
fn masked_mixture(a: &[f64], wts: &[f64]) -> f64 {
    let mut terms = vec![0.0; a.len()];
    let mut total = 0.0;
    for i in 0..wts.len() {
        for k in 0..a.len() {
            terms[k] = a[k] * (i as f64 + 1.0);
        }
        total += wts[i] * logsumexp(&terms);
    }
    total
}

#[test]
fn logsumexp_in_loop_with_infinite_terms_and_zero_weight() {
    let a = [f64::NEG_INFINITY, 0.0, 1.0];
    let wts = [1.0, 0.0];
    let (v, g) = masked_mixture_grad(&a, &wts);
    let (_, tape) = masked_mixture_forward(&a, &wts);
    let strong = masked_mixture_backward(tape, 1.0);
    assert_same_v!(g.a, strong.a);
    assert_same_v!(g.wts, strong.wts);
    let z = 1.0 + 1f64.exp();
    assert!((v - z.ln()).abs() < 1e-15);
    assert_eq!(g.a[0], 0.0);
    assert!((g.a[1] - 1.0 / z).abs() < 1e-15 && (g.a[2] - 1f64.exp() / z).abs() < 1e-15);
}

#[grad]
fn lse_generic<T: num_traits::Float>(v: &[T], w: T) -> T {
    let mut h = vec![T::zero(); v.len()];
    let mut s = T::zero();
    for t in 0..2 {
        for j in 0..v.len() {
            h[j] = v[j] * w;
        }
        s = s + logsumexp(&h);
    }
    s
}

#[test]
fn logsumexp_generic_rebuild() {
    let (_, g) = lse_generic_grad::<f32>(&[0.0, 0.0], 1.0);
    assert_eq!(g.v, vec![1.0f32, 1.0]);
    assert_eq!(g.w, 0.0f32);
    let (_, g) = lse_generic_grad::<f64>(&[1.0, 3.0], 0.5);
    gradcheck!(lse_generic(v = &vec![1.0, 3.0], w = 0.5)).assert();
    let _ = g;
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

/// Generated-looking argument names that still compile: value, tape, grad, pullback,
/// strong_zeros, d_out, one, d_x.
#[grad]
fn names(
    value: &[f64],
    tape: f64,
    grad: f64,
    pullback: f64,
    strong_zeros: f64,
    d_out: f64,
    d_value: f64,
) -> f64 {
    let mut s = 0.0;
    for i in 0..value.len() {
        s += tape * value[i].sqrt() + grad * pullback + strong_zeros * d_out * d_value;
    }
    s
}

#[test]
fn generated_looking_argument_names() {
    let (v, g) = names_grad(&[0.0, 4.0], 0.0, 2.0, 3.0, 1.0, 5.0, 7.0);
    assert_eq!(v, 2.0 * (6.0 + 35.0));
    assert_eq!(g.value, vec![0.0, 0.0]);
    assert_eq!(
        (
            g.tape,
            g.grad,
            g.pullback,
            g.strong_zeros,
            g.d_out,
            g.d_value
        ),
        (2.0, 6.0, 4.0, 70.0, 14.0, 10.0)
    );
}

/// `#[custom_vjp]` with an argument named `__d_out` (the forward closure's own
/// parameter is now `__d_out`).
/// Pins: the argument was shadowed by the forward closure's parameter (6855065).
#[custom_vjp(scale_vjp)]
fn scale(x: f64, __d_out: f64) -> f64 {
    x * __d_out
}
fn scale_vjp(x: f64, k: f64, _y: f64, d: f64) -> (f64, f64) {
    (d * k, d * x)
}

#[grad]
fn uses_scale(x: f64, k: f64) -> f64 {
    scale(x, k)
}

#[test]
fn a_custom_vjp_argument_named_d_out_is_not_shadowed() {
    // ∂(x·k)/∂x = k = 3, ∂/∂k = x = 2.
    let (v, g) = uses_scale_grad(2.0, 3.0);
    assert_eq!(v, 6.0);
    assert_eq!((g.x, g.k), (3.0, 2.0));
}

/// Pins: arguments named like the companions' locals did not compile (at 6356d44; fixed in
/// 6855065).
mod companion_local_names {
    use backprop::{custom_vjp, grad};

    // error[E0415]: identifier `__value` is bound more than once in this parameter list
    // (the new `rebuild` companion appends `__value: ret`). Every #[grad] fn, loop or not.
    #[grad]
    fn arg_named___value(__value: f64) -> f64 {
        __value * __value
    }

    // Same error from #[custom_vjp]'s `rebuild`.
    #[custom_vjp(cv_vjp)]
    fn cv(__value: f64) -> f64 {
        __value * 2.0
    }
    fn cv_vjp(_x: f64, _y: f64, d: f64) -> (f64,) {
        (2.0 * d,)
    }

    // error[E0308]: mismatched types — plain-first `grad` body shadows `__grad`/`__tape`
    // then passes them to the second `forward` call.
    #[grad]
    fn arg_named___grad(x: &[f64], __grad: f64) -> f64 {
        let mut s = 0.0;
        for i in 0..x.len() {
            s += __grad * x[i].sqrt();
        }
        s
    }
    #[grad]
    fn arg_named___tape(x: &[f64], __tape: f64) -> f64 {
        let mut s = 0.0;
        for i in 0..x.len() {
            s += __tape * x[i].sqrt();
        }
        s
    }

    #[grad]
    fn uses_cv(x: f64) -> f64 {
        cv(x)
    }

    #[test]
    fn arguments_named_like_the_companions_locals() {
        let (v, g) = arg_named___value_grad(3.0);
        assert_eq!((v, g.__value), (9.0, 6.0));
        let (v, g) = uses_cv_grad(3.0);
        assert_eq!((v, g.x), (6.0, 2.0));
        let (v, g) = arg_named___grad_grad(&[0.0, 4.0], 0.0);
        assert_eq!((v, g.x, g.__grad), (0.0, vec![0.0, 0.0], 2.0));
        let (v, g) = arg_named___tape_grad(&[4.0], 2.0);
        assert_eq!((v, g.x, g.__tape), (4.0, vec![0.5], 2.0));
    }
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

static TICKS: AtomicUsize = AtomicUsize::new(0);
/// A call that reads no local: evaluated once per forward pass (a draw of noise, a
/// schedule read from a global...). Here 1, 2, 3, ...
fn tick() -> f64 {
    (TICKS.fetch_add(1, Ordering::SeqCst) + 1) as f64
}

#[grad]
fn noisy(x: &[f64], w: &[f64]) -> f64 {
    let c = tick();
    let mut s = 0.0;
    for i in 0..x.len() {
        s += c * w[i] * x[i].sqrt();
    }
    s
}

/// Pins: a function with a call no rule covers tried the plain pass and ran its
/// forward pass twice (6855065).
#[test]
fn a_function_with_an_opaque_call_runs_forward_once() {
    // x₀ = 0 with w₀ = 0: 0·∞ in the plain pass → rerun; the rerun draws c = 2.
    TICKS.store(0, Ordering::SeqCst);
    let (v, g) = noisy_grad(&[0.0, 4.0], &[0.0, 1.0]);
    assert_eq!(v, 2.0); // c = 1: 1·1·√4
    // The gradient of the function whose value was returned (c = 1): ∂/∂x₁ = 1/(2·2).
    assert_eq!(
        g.x,
        vec![0.0, 0.25],
        "gradient is for a different forward pass (c = 2)"
    );
    // `tick()` is a call no rule covers: no plain pass first, one forward pass.
    assert_eq!(TICKS.load(Ordering::SeqCst), 1);
}

// ---- a hand-written rule that is not linear in its cotangent --------------------------

/// Identity forward; its rule clips the cotangent to [−1, 1] (a "clip_gradient"
/// custom VJP, JAX-docs style) with f64::max/min, which pass over NaN.
#[custom_vjp(clip_grad_vjp)]
fn clip_grad(x: f64) -> f64 {
    x
}
fn clip_grad_vjp(_x: f64, _y: f64, d: f64) -> (f64,) {
    (d.max(-1.0).min(1.0),)
}

/// s = w·√u + 3u with u = clip_grad(x), once in a loop. At x = 0, w = 0:
/// ∂s/∂u = w/(2√u) + 3 = (strong zero) 0 + 3 = 3, clipped to 1 → ∂s/∂x = 1.
/// Plain pass: 0·∞ = NaN, NaN + 3 = NaN, NaN.max(−1).min(1) = −1 → ∂s/∂x = −1, no NaN
/// left, so f_grad accepts it.
#[grad]
fn clipped(x: f64, w: f64) -> f64 {
    let mut s = 0.0;
    for _ in 0..1 {
        let u = clip_grad(x);
        s += w * u.sqrt() + 3.0 * u;
    }
    s
}

/// Pins: the plain pass's NaN vanished in a rule that clips its cotangent (NaN.max(−1) = −1)
/// and `f_grad` kept a gradient the strong pass does not give (6855065).
#[test]
fn a_nonlinear_custom_rule_cannot_absorb_the_plain_nan() {
    let (_, tape) = clipped_forward(0.0, 0.0);
    let strong = clipped_backward(tape, 1.0);
    assert_eq!((strong.x, strong.w), (1.0, 0.0));
    let (v, g) = clipped_grad(0.0, 0.0);
    assert_eq!(v, 0.0);
    assert_eq!(
        (g.x, g.w),
        (strong.x, strong.w),
        "f_grad differs from the strong pass"
    );
}

// ---- rules at their singular points and kinks, inside loops ---------------------------

/// Σᵢ wᵢ·op(xᵢ) + xᵢ for op at its singular point (w = 0 there).
macro_rules! rule_probe2 {
    ($fname:ident, $grad:ident, $fwd:ident, $test:ident, |$x:ident| $e:expr, $xs:expr, $ws:expr, $dx:expr) => {
        #[grad]
        fn $fname(x: &[f64], w: &[f64]) -> f64 {
            let mut s = 0.0;
            for i in 0..x.len() {
                let $x = x[i];
                s += w[i] * ($e) + $x;
            }
            s
        }
        #[test]
        fn $test() {
            let (xs, ws): (Vec<f64>, Vec<f64>) = ($xs.to_vec(), $ws.to_vec());
            let (_, g) = $grad(&xs, &ws);
            let (_, tape) = $fwd(&xs, &ws);
            let strong = tape.backward(1.0);
            assert_same_v!(g.x, strong.x);
            assert_same_v!(g.w, strong.w);
            let expect: Vec<f64> = $dx.to_vec();
            assert_same_v!(g.x, expect);
        }
    };
}

// ∂/∂x = 1 where w = 0 (strong zero), w·op'(x) + 1 elsewhere.
rule_probe2!(
    r_sqrt,
    r_sqrt_grad,
    r_sqrt_forward,
    rule_sqrt_at_0,
    |v| v.sqrt(),
    [0.0, 4.0],
    [0.0, 1.0],
    [1.0, 1.25]
);
rule_probe2!(
    r_ln,
    r_ln_grad,
    r_ln_forward,
    rule_ln_at_0,
    |v| v.ln(),
    [0.0, 2.0],
    [0.0, 1.0],
    [1.0, 1.5]
);
rule_probe2!(
    r_recip,
    r_recip_grad,
    r_recip_forward,
    rule_recip_at_0,
    |v| v.recip(),
    [0.0, 2.0],
    [0.0, 1.0],
    [1.0, 0.75]
);
rule_probe2!(
    r_div,
    r_div_grad,
    r_div_forward,
    rule_div_by_0,
    |v| 1.0 / v,
    [0.0, 2.0],
    [0.0, 1.0],
    [1.0, 0.75]
);
rule_probe2!(
    r_cbrt,
    r_cbrt_grad,
    r_cbrt_forward,
    rule_cbrt_at_0,
    |v| v.cbrt(),
    [0.0, 8.0],
    [0.0, 1.0],
    [1.0, 1.0 + 1.0 / 12.0]
);
rule_probe2!(
    r_powf,
    r_powf_grad,
    r_powf_forward,
    rule_powf_half_at_0,
    |v| v.powf(0.5),
    [0.0, 4.0],
    [0.0, 1.0],
    [1.0, 1.25]
);
rule_probe2!(
    r_powi,
    r_powi_grad,
    r_powi_forward,
    rule_powi_neg_at_0,
    |v| v.powi(-2),
    [0.0, 1.0],
    [0.0, 1.0],
    [1.0, -1.0]
);
rule_probe2!(
    r_asin,
    r_asin_grad,
    r_asin_forward,
    rule_asin_at_1,
    |v| v.asin(),
    [1.0, 0.0],
    [0.0, 1.0],
    [1.0, 2.0]
);
rule_probe2!(
    r_acos,
    r_acos_grad,
    r_acos_forward,
    rule_acos_at_m1,
    |v| v.acos(),
    [-1.0, 0.0],
    [0.0, 1.0],
    [1.0, 0.0]
);
rule_probe2!(
    r_ln1p,
    r_ln1p_grad,
    r_ln1p_forward,
    rule_ln_1p_at_m1,
    |v| v.ln_1p(),
    [-1.0, 0.0],
    [0.0, 1.0],
    [1.0, 2.0]
);
rule_probe2!(
    r_log2,
    r_log2_grad,
    r_log2_forward,
    rule_log2_at_0,
    |v| v.log2(),
    [0.0, 1.0],
    [0.0, 1.0],
    [1.0, 1.0 + 1.0 / std::f64::consts::LN_2]
);
rule_probe2!(
    r_log10,
    r_log10_grad,
    r_log10_forward,
    rule_log10_at_0,
    |v| v.log10(),
    [0.0, 1.0],
    [0.0, 1.0],
    [1.0, 1.0 + 1.0 / std::f64::consts::LN_10]
);
rule_probe2!(
    r_logb,
    r_logb_grad,
    r_logb_forward,
    rule_log_base_at_0,
    |v| v.log(2.0),
    [0.0, 1.0],
    [0.0, 1.0],
    [1.0, 1.0 + 1.0 / std::f64::consts::LN_2]
);
// exp overflow: y = ∞, w = 0 → 0·∞.
rule_probe2!(
    r_exp,
    r_exp_grad,
    r_exp_forward,
    rule_exp_overflow,
    |v| v.exp(),
    [1000.0, 0.0],
    [0.0, 1.0],
    [1.0, 2.0]
);
rule_probe2!(
    r_tan,
    r_tan_grad,
    r_tan_forward,
    rule_sinh_overflow,
    |v| v.sinh(),
    [1000.0, 0.0],
    [0.0, 1.0],
    [1.0, 2.0]
);
// Kinks (no ∞): values by the minimum-norm conventions.
rule_probe2!(
    r_abs,
    r_abs_grad,
    r_abs_forward,
    rule_abs_at_0,
    |v| v.abs(),
    [0.0, -2.0],
    [1.0, 1.0],
    [1.0, 0.0]
);
rule_probe2!(
    r_max,
    r_max_grad,
    r_max_forward,
    rule_max_tie,
    |v| v.max(1.0),
    [1.0, 2.0],
    [1.0, 1.0],
    [1.5, 2.0]
);
rule_probe2!(
    r_min,
    r_min_grad,
    r_min_forward,
    rule_min_tie,
    |v| v.min(1.0),
    [1.0, 2.0],
    [1.0, 1.0],
    [1.5, 1.0]
);
rule_probe2!(
    r_clamp,
    r_clamp_grad,
    r_clamp_forward,
    rule_clamp_at_bound,
    |v| v.clamp(0.0, 1.0),
    [0.0, 0.5],
    [1.0, 1.0],
    [1.0, 2.0]
);
rule_probe2!(
    r_hypot,
    r_hypot_grad,
    r_hypot_forward,
    rule_hypot_origin,
    |v| v.hypot(0.0),
    [0.0, -3.0],
    [1.0, 1.0],
    [1.0, 0.0]
);
rule_probe2!(
    r_atan2,
    r_atan2_grad,
    r_atan2_forward,
    rule_atan2_origin,
    |v| v.atan2(0.0),
    [0.0, 1.0],
    [1.0, 1.0],
    [1.0, 1.0]
);
// Infinite input flowing through a product with a zero cotangent: ∞ − ∞ is NaN in the value.
rule_probe2!(
    r_infmul,
    r_infmul_grad,
    r_infmul_forward,
    rule_inf_times_zero_weight,
    |v| v * f64::INFINITY,
    [1.0, 2.0],
    [0.0, 0.0],
    [1.0, 1.0]
);

/// sqrt inside max/clamp: a NaN cotangent of the plain pass hits primal-branch rules
/// that drop it (max chose the other side) — must equal the strong pass.
#[grad]
fn nan_into_kinks(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        let r = w[i] * x[i].sqrt();
        let m = r.max(x[i] - 5.0);
        let c = (m + x[i]).clamp(-1.0, 100.0);
        s += c.abs() + (x[i] * r).hypot(w[i]);
    }
    s
}

#[test]
fn nan_cotangents_into_kinks_equal_the_strong_pass() {
    for (x, w) in [
        (vec![0.0, 4.0, 9.0], vec![0.0, 1.0, 0.0]),
        (vec![0.0, 0.0], vec![0.0, 1.0]),
        (vec![6.0, 0.0], vec![0.0, 0.0]),
    ] {
        let (_, g) = nan_into_kinks_grad(&x, &w);
        let (_, tape) = nan_into_kinks_forward(&x, &w);
        let s = nan_into_kinks_backward(tape, 1.0);
        assert_same_v!(g.x, s.x);
        assert_same_v!(g.w, s.w);
    }
}

/// While loop (Newton for √a) and `break`, with a zero weight on an infinite slope.
#[grad]
fn newton(a: f64, w: f64) -> f64 {
    let mut x = a.max(1.0);
    let mut k = 0;
    while k < 50 {
        let nx = 0.5 * (x + a / x);
        if (nx - x).abs() < 1e-15 {
            break;
        }
        x = nx;
        k += 1;
    }
    x + w * a.sqrt()
}

#[test]
fn newton_with_zero_weight_on_sqrt_at_zero() {
    let (v, g) = newton_grad(0.0, 0.0);
    let (_, tape) = newton_forward(0.0, 0.0);
    let s = newton_backward(tape, 1.0);
    assert_same!(g.a, s.a);
    assert_same!(g.w, s.w);
    let (v, g) = newton_grad(4.0, 0.0);
    assert!((v - 2.0).abs() < 1e-14);
    assert!((g.a - 0.25).abs() < 1e-9, "{}", g.a);
}

// ---- nested calls, and NaNs the function really has -----------------------------------

/// Nested plain-first calls: a callee (with loops) whose own plain pass has a NaN that
/// the caller's plain pass carries back.
#[grad]
fn inner_loop(x: f64, w: f64) -> f64 {
    let mut s = 0.0;
    for _ in 0..2 {
        s += w * x.sqrt();
    }
    s + x
}

#[grad]
fn outer_loop(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += inner_loop(x[i], w[i]) * inner_loop(x[i], 1.0);
    }
    s
}

#[test]
fn nested_calls_in_loops() {
    let x = [0.0, 4.0];
    let w = [0.0, 1.0];
    let (_, g) = outer_loop_grad(&x, &w);
    let (_, tape) = outer_loop_forward(&x, &w);
    let s = outer_loop_backward(tape, 1.0);
    assert_same_v!(g.x, s.x);
    assert_same_v!(g.w, s.w);
}

/// Whether f_grad hides a NaN the strong pass has: √(−1) with weight 0 (strong zero
/// makes ∂/∂x 0, the value's w·NaN = NaN).
#[grad]
fn nan_with_zero_weight(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += w[i] * x[i].sqrt();
    }
    s
}

#[test]
fn nan_value_with_zero_weight_matches_strong() {
    let (v, g) = nan_with_zero_weight_grad(&[-1.0, 4.0], &[0.0, 1.0]);
    let (_, tape) = nan_with_zero_weight_forward(&[-1.0, 4.0], &[0.0, 1.0]);
    let s = nan_with_zero_weight_backward(tape, 1.0);
    assert!(v.is_nan());
    assert_same_v!(g.x, s.x);
    assert_same_v!(g.w, s.w);
    assert!(g.w[0].is_nan()); // ∂/∂w₀ = √−1
}

/// Gradient with +∞ and −∞ (their sum is NaN) but no NaN: the plain pass is accepted.
#[test]
fn infinities_of_both_signs_without_nan() {
    let (_, g) = nan_with_zero_weight_grad(&[0.0, 0.0], &[1.0, -1.0]);
    assert_eq!(g.x, vec![f64::INFINITY, f64::NEG_INFINITY]);
    assert_eq!(g.w, vec![0.0, 0.0]);
}

// ---- shapes of functions --------------------------------------------------------------

#[grad]
fn no_args() -> f64 {
    let mut s = 0.0;
    for i in 0..3 {
        s += (i as f64).sqrt();
    }
    s
}

#[test]
fn zero_argument_function_with_a_loop() {
    let (v, _g) = no_args_grad();
    assert_eq!(v, 1.0 + 2f64.sqrt());
}

#[grad]
fn generic_where<T>(x: &[T], w: T) -> T
where
    T: num_traits::Float,
{
    let mut s = T::zero();
    for i in 0..x.len() {
        s = s + w * x[i].sqrt() + x[i].ln() * w;
    }
    s
}

#[test]
fn generic_where_clause_f32_and_f64() {
    let (_, g) = generic_where_grad::<f32>(&[0.0, 1.0], 0.0);
    let (_, tape) = generic_where_forward::<f32>(&[0.0, 1.0], 0.0);
    let s = generic_where_backward(tape, 1.0);
    assert_eq!(g.x, vec![0.0f32, 0.0]);
    assert_eq!(s.x, g.x);
    // ∂/∂w = Σ √x + ln x = 0 + (−∞) + 1 + 0 = −∞ (a real infinity, no NaN).
    assert_eq!(g.w, f32::NEG_INFINITY);
    let (_, g) = generic_where_grad::<f64>(&[0.0, 1.0], 0.0);
    assert_eq!(g.x, vec![0.0, 0.0]);
}

#[grad]
fn const_generic<const N: usize>(x: [f64; N], w: [f64; N]) -> f64 {
    let mut s = 0.0;
    for i in 0..N {
        s += w[i] * x[i].sqrt();
    }
    s
}

#[test]
fn const_generic_array_arguments() {
    let (v, g) = const_generic_grad([0.0, 4.0], [0.0, 1.0]);
    assert_eq!(v, 2.0);
    assert_eq!(g.x, vec![0.0, 0.25]);
    assert_eq!(g.w, vec![0.0, 2.0]);
}

#[grad]
fn f32_fn(x: &[f32], w: f32) -> f32 {
    let mut s = 0.0f32;
    for i in 0..x.len() {
        s += w * x[i].ln() + x[i];
    }
    s
}

#[test]
fn f32_ln_at_zero_weight_zero() {
    let (_, g) = f32_fn_grad(&[0.0, 2.0], 0.0);
    assert_eq!(g.x, vec![1.0f32, 1.0]);
    // ∂/∂w = ln 0 + ln 2 = −∞: the value of the gradient, not a NaN.
    assert_eq!(g.w, f32::NEG_INFINITY);
}

#[derive(Clone, Debug, PartialEq, Differentiable)]
struct P {
    w: Vec<f64>,
    b: f64,
}

#[grad(p)]
fn struct_loss(p: &P, x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += p.w[i] * x[i].sqrt() + p.b * x[i];
    }
    s
}

#[test]
fn struct_arguments_keep_one_pass() {
    let p = P {
        w: vec![0.0, 1.0],
        b: 0.5,
    };
    let (_, g) = struct_loss_grad(&p, &[0.0, 4.0]);
    assert_eq!(
        g.p,
        P {
            w: vec![0.0, 2.0],
            b: 4.0
        }
    );
}

/// A plain-first caller whose data argument is a struct (inactive), x active.
#[grad(x)]
fn inactive_struct(x: &[f64], p: &P) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        s += p.w[i] * x[i].sqrt();
    }
    s
}

#[test]
fn inactive_struct_argument() {
    let p = P {
        w: vec![0.0, 1.0],
        b: 0.5,
    };
    let (_, g) = inactive_struct_grad(&[0.0, 4.0], &p);
    assert_eq!(g.x, vec![0.0, 0.25]);
}

/// Owned (non-Copy) buffer argument, a `mut` scalar argument rewritten in the loop,
/// `&Vec`: the pullback's new rebinding of arguments.
#[grad]
fn owned_args(x: Vec<f64>, mut k: f64, v: &Vec<f64>) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        k = k * 2.0;
        s += k * x[i].sqrt() * v[i];
    }
    s
}

#[test]
fn owned_and_mut_arguments() {
    let (v, g) = owned_args_grad(vec![0.0, 4.0], 1.0, &vec![1.0, 1.0]);
    assert_eq!(v, 8.0);
    // k₁ = 2, k₂ = 4: ∂/∂x = [2·∞·1, 4/(2·2)] → x₀ has a real ∞ (non-zero weight).
    assert_eq!(g.x, vec![f64::INFINITY, 1.0]);
    assert_eq!(g.k, 8.0);
    assert_eq!(g.v, vec![0.0, 8.0]);
}
