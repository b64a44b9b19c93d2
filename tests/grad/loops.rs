//! Loops in `#[grad]` functions: `for` over ranges and `while`, with values carried from
//! one iteration to the next; each iteration's pullback is kept and run in reverse.
//! Range bounds changed in and after the loop, deep nests, loops that save nothing per
//! iteration (the trip count from the range), integer counters run backwards, and the
//! loop stacks a tape recycles (also across threads).
// The loops are written the way the shared cases write them (`v = v * 3.0`).
#![allow(
    clippy::assign_op_pattern,
    clippy::manual_swap,
    clippy::mut_range_bound,
    clippy::needless_range_loop,
    clippy::explicit_counter_loop,
    clippy::identity_op,
    unused_variables
)]

use crate::support::{X5, X7, check};
use backprop::{Pullback, grad, gradcheck};

/// v ← v² n times, then v ← 3v n + 1 times: v = 2·3ⁿ⁺¹·a^(2ⁿ).
#[grad]
fn square_then_scale(a: f64, n: usize) -> f64 {
    let mut v = a;
    for _ in 0..n {
        v = v * v;
    }
    v = 2.0 * v;
    for _ in 0..n + 1 {
        v = v * 3.0;
    }
    v
}

#[test]
fn carried_values_through_two_loops() {
    // n = 2: v = 2·27·a⁴, dv/da = 216a³.
    let (v, g) = square_then_scale_grad(1.5, 2);
    assert_eq!(v, 54.0 * 1.5f64.powi(4));
    assert!((g.a - 216.0 * 1.5f64.powi(3)).abs() < 1e-12);
    // No iterations: v = 2·3a, dv/da = 6.
    assert_eq!(
        square_then_scale_grad(1.5, 0),
        (9.0, SquareThenScaleGrad { a: 6.0 })
    );
}

/// Newton's iteration for √a: the derivative flows through every iterate.
#[grad]
fn newton_sqrt(a: f64) -> f64 {
    let mut x = a;
    for _ in 0..8 {
        x = 0.5 * (x + a / x);
    }
    x
}

#[test]
fn newton_iterations_converge_in_value_and_derivative() {
    let (v, g) = newton_sqrt_grad(2.0);
    assert!((v - 2f64.sqrt()).abs() < 1e-15);
    assert!((g.a - 0.5 / 2f64.sqrt()).abs() < 1e-12, "{}", g.a);
}

/// A `while` whose trip count depends on the active value (halving until small).
#[grad]
fn halve_until_small(a: f64) -> f64 {
    let mut v = a;
    while v.abs() > 0.1 {
        v = v * 0.5;
    }
    v
}

#[test]
fn while_loops_with_value_dependent_trip_counts() {
    // 3.0 → 1.5 → 0.75 → 0.375 → 0.1875 → 0.09375: five halvings, dv/da = 1/32.
    assert_eq!(
        halve_until_small_grad(3.0),
        (0.09375, HalveUntilSmallGrad { a: 1.0 / 32.0 })
    );
    assert_eq!(
        halve_until_small_grad(0.05),
        (0.05, HalveUntilSmallGrad { a: 1.0 })
    );
}

/// Swaps through a temporary, branches inside a loop, reversed and stepped ranges.
#[grad]
fn mixed(x: f64, y: f64, n: usize) -> f64 {
    let mut a = x;
    let mut b = 2.0 * y;
    let mut s = 0.0;
    for i in (0..n).rev() {
        let tmp = a;
        a = b;
        b = tmp;
        if i % 2 == 0 {
            s += a * b;
        } else {
            s -= a.sin();
        }
    }
    for k in (1..=n).step_by(2) {
        s += (k as f64) * a;
    }
    s + b
}

#[test]
fn swaps_branches_and_ranges_match_central_differences() {
    for (x, y, n) in [
        (0.3, 0.7, 0usize),
        (0.3, 0.7, 1),
        (1.1, -0.4, 4),
        (-0.8, 0.5, 5),
    ] {
        gradcheck!(mixed(x = x, y = y, n = const n)).assert();
    }
}

/// sum ← sum + (a + b), 100 times: d/da = d/db = 100, and no iteration saves anything
/// (the addition's pullback reads nothing), so the tape holds no per-iteration values.
#[grad]
fn accumulate(a: f64, b: f64) -> f64 {
    let mut sum = 0.0;
    for _ in 0..100 {
        sum += a + b;
    }
    sum
}

#[test]
fn an_accumulating_loop_saves_nothing_per_iteration() {
    assert_eq!(
        accumulate_grad(0.5, 0.25),
        (75.0, AccumulateGrad { a: 100.0, b: 100.0 })
    );
    let (_, tape) = accumulate_forward(0.5, 0.25);
    // A `for` whose iterations save nothing has no stack at all: the tape is the range
    // `0..100` (two `i32`s), from which the reverse pass counts the iterations.
    assert_eq!(tape.bytes(), std::mem::size_of::<std::ops::Range<i32>>());
}

/// prod ← prod · x: each iteration's pullback reads that iteration's prod (and x).
#[grad]
fn power_by_loop(x: f64, n: usize) -> f64 {
    let mut prod = 1.0;
    for _ in 0..n {
        prod = prod * x;
    }
    prod
}

#[test]
fn a_multiplying_loop_saves_per_iteration() {
    assert_eq!(
        power_by_loop_grad(2.0, 5),
        (32.0, PowerByLoopGrad { x: 80.0 })
    );
    let (_, t10) = power_by_loop_forward(1.1, 10);
    let (_, t20) = power_by_loop_forward(1.1, 20);
    // Ten more iterations keep ten more entry values of prod (8 bytes each); x, read by
    // every iteration, is kept once.
    assert_eq!(t20.bytes() - t10.bytes(), 10 * 8);
}

/// Σᵢ Σ_{j>i} x[i]·w[j]: `x[i]` is read by every iteration of the inner loop. The
/// reverse pass sums its cotangent over those iterations and adds it to `d_x[i]` once.
#[allow(clippy::needless_range_loop)] // the index loops are what is tested
#[grad]
fn upper_pairs(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        for j in i + 1..w.len() {
            s += x[i] * w[j];
        }
    }
    s
}

#[test]
fn a_loop_invariant_read_gets_its_summed_cotangent_once() {
    // x = [1, 2, 3], w = [4, 5, 6]: 1·(5 + 6) + 2·6 = 23; d_x = [w1 + w2, w2, 0] and
    // d_w = [0, x0, x0 + x1] (the last row's inner loop is empty).
    let (v, g) = upper_pairs_grad(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
    assert_eq!(v, 23.0);
    assert_eq!(g.x, vec![11.0, 6.0, 0.0]);
    assert_eq!(g.w, vec![0.0, 1.0, 3.0]);
    let x = vec![0.3, -1.2, 0.7, 2.0];
    let w = vec![1.5, -0.4, 0.9, -2.2, 0.1];
    gradcheck!(upper_pairs(x = &x, w = &w)).assert();
}

/// A read inside a loop that may not run, of an index that is only valid when it does.
#[grad]
fn read_in_loop_that_may_not_run(x: &[f64], reps: usize, at: usize) -> f64 {
    let mut s = 0.0;
    for _ in 0..reps {
        s += 2.0 * x[at];
    }
    s
}

#[test]
fn an_invariant_read_in_a_loop_that_did_not_run_is_not_touched_in_reverse() {
    // `at` is out of range, but the loop runs zero times: neither pass reads x[at].
    let (v, g) = read_in_loop_that_may_not_run_grad(&[1.0, 2.0], 0, 5);
    assert_eq!(v, 0.0);
    assert_eq!(g.x, vec![0.0, 0.0]);
    // Three iterations: d_x[at] = 2·3.
    let (v, g) = read_in_loop_that_may_not_run_grad(&[1.0, 2.0], 3, 1);
    assert_eq!(v, 12.0);
    assert_eq!(g.x, vec![0.0, 6.0]);
}

// Every range form a `for` accepts, with the index read again by the reverse pass (the
// multiplier `i as f64` is recomputed from it): the reverse walks the range backwards
// (`range.rev()`), or, for `step_by` over `a..=b`, which cannot run backwards, counts
// down through `nth`. f(x) = Σ over the range of i·x[i]², so d_x[i] = 2·i·x[i] per visit.
macro_rules! range_form {
    ($name:ident, $range:expr) => {
        #[allow(clippy::needless_range_loop)]
        #[grad]
        fn $name(x: &[f64]) -> f64 {
            let mut s = 0.0;
            for i in $range {
                s += (i as f64) * x[i] * x[i];
            }
            s
        }
    };
}
range_form!(half_open, 1..7);
range_form!(closed, 1..=7);
range_form!(half_open_rev, (1..7).rev());
range_form!(closed_rev, (1..=7).rev());
range_form!(half_open_step, (1..8).step_by(3));
range_form!(closed_step, (1..=7).step_by(3));
range_form!(rev_then_step, (0..8).rev().step_by(3));
range_form!(step_then_rev, (0..8).step_by(3).rev());

#[test]
fn every_range_form_walks_back_over_the_same_indices() {
    type Grad = fn(&[f64]) -> (f64, Vec<f64>);
    let x: Vec<f64> = (0..9).map(|k| 0.3 + 0.1 * k as f64).collect();
    let cases: [(&str, Grad, Vec<usize>); 8] = [
        (
            "1..7",
            |x| {
                let (v, g) = half_open_grad(x);
                (v, g.x)
            },
            (1..7).collect(),
        ),
        (
            "1..=7",
            |x| {
                let (v, g) = closed_grad(x);
                (v, g.x)
            },
            (1..=7).collect(),
        ),
        (
            "(1..7).rev()",
            |x| {
                let (v, g) = half_open_rev_grad(x);
                (v, g.x)
            },
            (1..7).rev().collect(),
        ),
        (
            "(1..=7).rev()",
            |x| {
                let (v, g) = closed_rev_grad(x);
                (v, g.x)
            },
            (1..=7).rev().collect(),
        ),
        (
            "(1..8).step_by(3)",
            |x| {
                let (v, g) = half_open_step_grad(x);
                (v, g.x)
            },
            (1..8).step_by(3).collect(),
        ),
        (
            "(1..=7).step_by(3)",
            |x| {
                let (v, g) = closed_step_grad(x);
                (v, g.x)
            },
            (1..=7).step_by(3).collect(),
        ),
        (
            "(0..8).rev().step_by(3)",
            |x| {
                let (v, g) = rev_then_step_grad(x);
                (v, g.x)
            },
            (0..8).rev().step_by(3).collect(),
        ),
        (
            "(0..8).step_by(3).rev()",
            |x| {
                let (v, g) = step_then_rev_grad(x);
                (v, g.x)
            },
            (0..8).step_by(3).rev().collect(),
        ),
    ];
    for (what, grad, visits) in cases {
        let (v, g) = grad(&x);
        let mut want_v = 0.0;
        let mut want_g = vec![0.0; x.len()];
        for &i in &visits {
            want_v += (i as f64) * x[i] * x[i];
            want_g[i] += 2.0 * i as f64 * x[i];
        }
        assert!((v - want_v).abs() < 1e-12, "{what}: value {v} vs {want_v}");
        for (i, (a, b)) in g.iter().zip(&want_g).enumerate() {
            assert!((a - b).abs() < 1e-12, "{what}: d_x[{i}] = {a}, want {b}");
        }
    }
}

// ---- range bounds changed in and after the loop ---------------------------------------

/// The range's bound changes inside the loop (Rust evaluates the range once).
#[grad]
fn range_bound_mutated(x: &[f64]) -> f64 {
    let mut k = 2;
    let mut s = 0.0;
    for i in 0..k {
        k += 1;
        s = s * x[i] + x[k];
    }
    let mut lo = 1;
    for i in lo..x.len() {
        lo = 0;
        s = s * x[i] + x[lo];
    }
    s
}
probe!(
    p_range_bound_mutated,
    range_bound_mutated,
    range_bound_mutated_grad,
    vec![0.5, -1.5, 2.0, 0.3, 1.1]
);

/// A range bound changed after the loop.
#[grad]
fn range_bound_after(x: &[f64]) -> f64 {
    let mut n = 2;
    let mut s = 1.0;
    for i in 0..n {
        s = s * x[i] + 1.0;
    }
    n = 4;
    s * x[n]
}
probe!(
    p_range_bound_after,
    range_bound_after,
    range_bound_after_grad,
    vec![0.5, -1.5, 2.0, 0.3, 1.1]
);

/// An inner range whose bound is a local the outer loop changes.
#[grad]
fn inner_bound_changes(x: &[f64]) -> f64 {
    let mut n = 1;
    let mut s = 1.0;
    for t in 0..3 {
        for i in 0..n {
            s = s * x[i] + x[t];
        }
        n += 1;
    }
    s
}
probe!(
    p_inner_bound_changes,
    inner_bound_changes,
    inner_bound_changes_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// An inner range whose bound is changed inside the inner loop itself.
#[grad]
fn inner_bound_changed_inside(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for t in 0..2 {
        let mut m = 2;
        for i in t..m {
            m += 1;
            s = s * x[i] + x[m];
        }
    }
    s
}
probe!(
    p_inner_bound_changed_inside,
    inner_bound_changed_inside,
    inner_bound_changed_inside_grad,
    vec![0.5, -1.5, 2.0, 0.9, 0.3]
);

/// An inner range whose bound is shadowed after the inner loop (same name, new let).
#[grad]
fn inner_bound_shadowed(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for t in 0..2 {
        let n = t + 2;
        for i in 0..n {
            s = s * x[i] + 0.5;
        }
        let n = 0;
        s += x[n];
    }
    s
}
probe!(
    p_inner_bound_shadowed,
    inner_bound_shadowed,
    inner_bound_shadowed_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// An inner range bound named like a variable declared earlier at top level.
#[grad]
fn inner_bound_name_reused(x: &[f64]) -> f64 {
    let k = 3;
    let mut s = x[k] * 0.0 + 1.0;
    for t in 0..3 {
        let k = t + 1;
        for i in 0..k {
            s = s * x[i] + 0.25;
        }
    }
    s
}
probe!(
    p_inner_bound_name_reused,
    inner_bound_name_reused,
    inner_bound_name_reused_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// The inner range's bound comes from a while loop's counter in the outer loop.
#[grad]
fn inner_bound_from_while(x: &[f64]) -> f64 {
    let mut s = 1.0;
    let mut j = 0;
    while j < 3 {
        j += 1;
        for i in (0..j).rev() {
            s = s * x[i] + 0.5;
        }
        for i in (j..x.len()).step_by(2) {
            s = s * x[i] - 0.5;
        }
    }
    s
}
probe!(
    p_inner_bound_from_while,
    inner_bound_from_while,
    inner_bound_from_while_grad,
    vec![0.5, -1.5, 2.0, 0.9, 0.7]
);

/// An inner range with an inclusive bound read from a buffer length of a view.
#[grad]
fn inner_bound_view_len(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for t in 0..x.len() {
        let v = &x[t..];
        for i in 1..=v.len() - 1 {
            s = s * v[i] + 0.5 * v[0];
        }
    }
    s
}
probe!(
    p_inner_bound_view_len,
    inner_bound_view_len,
    inner_bound_view_len_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Ranges: rev of step_by, inclusive with rev, negative integer ranges.
#[grad]
fn range_forms(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 1.0;
    for i in (0..n).step_by(2).rev() {
        s = s * x[i] + 0.5;
    }
    for i in (1..=n - 1).rev() {
        s = s * x[i] - x[i - 1];
    }
    for i in -2i32..2 {
        s = s * x[(i + 2) as usize] + i as f64;
    }
    for i in (0..=n - 1).step_by(3) {
        s = s * x[i];
    }
    s
}
probe!(
    p_range_forms,
    range_forms,
    range_forms_grad,
    vec![0.5, -0.8, 0.6, 1.1, 0.9]
);

// ---- deep nesting ---------------------------------------------------------------------

/// Three nested loops; the innermost range's bound is a local of the outermost body.
#[grad]
fn three_levels(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for a in 0..3 {
        let m = a + 1;
        for b in 0..2 {
            for c in (b..m).rev() {
                s = s * x[c] + 0.1 * x[b];
            }
        }
    }
    s
}
probe!(
    p_three_levels,
    three_levels,
    three_levels_grad,
    vec![0.5, -0.8, 0.6]
);

/// Same, with the bound changed between the inner loops.
#[grad]
fn three_levels_mut(x: &[f64]) -> f64 {
    let mut s = 1.0;
    let mut m = 1;
    for a in 0..3 {
        for b in 0..2 {
            for c in 0..m {
                s = s * x[c] + 0.1 * x[b];
            }
            m = (m + a) % 3 + 1;
        }
    }
    s
}
probe!(
    p_three_levels_mut,
    three_levels_mut,
    three_levels_mut_grad,
    vec![0.5, -0.8, 0.6]
);

/// A while inside a for inside a while, with breaks at each level.
#[grad]
fn while_for_while(x: &[f64]) -> f64 {
    let mut s = 0.3;
    let mut a = 0;
    while a < 3 {
        a += 1;
        for b in 0..x.len() {
            let mut c = 0;
            while c < a {
                c += 1;
                s = (s * x[b] + 0.2).sin();
                if s > 0.9 {
                    break;
                }
            }
            if s < -0.5 {
                break;
            }
        }
        if s > 0.95 {
            break;
        }
    }
    s
}
probe!(
    p_while_for_while,
    while_for_while,
    while_for_while_grad,
    vec![0.5, -0.8, 0.6]
);

// ---- stackless loops: the trip count from the range -----------------------------------

/// Nested stackless loops whose inner range depends on the outer index.
#[grad]
fn sl_nested(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        for j in i..w.len() {
            s += w[j] * x[i];
        }
        for j in (0..i).step_by(2).rev() {
            s += w[j] * x[i] * x[j];
        }
    }
    s
}
#[test]
fn p_sl_nested() {
    let x = X5.to_vec();
    let w = vec![0.3, -0.2, 0.9, 0.4, -1.1, 0.6];
    gradcheck!(sl_nested(x = &x, w = &w)).assert();
}

/// A range whose bound is changed inside the loop (Rust evaluates it once).
#[grad]
fn sl_bound_mutated(x: &[f64]) -> f64 {
    let mut m = x.len();
    let mut s = 0.0;
    for i in 0..m {
        s += x[i] * x[m - 1 - i];
        m = m - 0;
    }
    let mut n = 3;
    for i in 0..n {
        s += x[i];
        n += 1;
    }
    s + n as f64
}
probe!(
    p_sl_bound_mutated,
    sl_bound_mutated,
    sl_bound_mutated_grad,
    X5.to_vec()
);

/// Signed ranges with negative bounds.
#[grad]
fn sl_signed(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in -2i64..3 {
        s += x[(i + 2) as usize] * (i as f64);
    }
    for i in (-4i32..=0).rev().step_by(2) {
        s = s * x[(-i) as usize] + 1.0;
    }
    s
}
probe!(p_sl_signed, sl_signed, sl_signed_grad, X5.to_vec());

/// Loops over iterators (`enumerate`, `zip`) of different lengths.
#[grad]
fn sl_iters(x: &[f64], w: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, v) in x.iter().enumerate() {
        s += v * w[i % w.len()];
    }
    for (a, b) in x.iter().zip(w) {
        s += a * b * b;
    }
    for v in w.iter().rev() {
        s = s * 0.5 + v;
    }
    s
}
#[test]
fn p_sl_iters() {
    let x = X5.to_vec();
    let w = vec![0.3, -0.2, 0.9];
    gradcheck!(sl_iters(x = &x, w = &w)).assert();
}

/// A loop that saves something (pushes into reserved capacity) inside one that does
/// not, inside a `while`.
#[grad]
fn sl_mixed(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 1.0;
    let mut k = 0;
    while k < 2 {
        for i in 0..n {
            for j in 0..i {
                s = s * 0.9 + x[i] * x[j];
            }
            s += x[i];
        }
        for i in (0..n).rev() {
            s = (s * x[i]).sin();
        }
        k += 1;
    }
    s
}
probe!(p_sl_mixed, sl_mixed, sl_mixed_grad, X5.to_vec());

/// The same function run twice (recycled stacks), then backward in the other order.
#[test]
fn p_sl_two_tapes() {
    let a = X5.to_vec();
    let b: Vec<f64> = a.iter().map(|v| v * 0.5).collect();
    let (va, ta) = sl_mixed_forward(&a);
    let (vb, tb) = sl_mixed_forward(&b);
    let gb = sl_mixed_backward(tb, 1.0);
    let ga = sl_mixed_backward(ta, 1.0);
    check(&|x: &[f64]| sl_mixed(x), va, &ga.x, &a);
    check(&|x: &[f64]| sl_mixed(x), vb, &gb.x, &b);
}

/// Reversible counters in stackless loops: a counter used as an index (also when the
/// loop runs zero times), and an inner range bounded by an outer counter.
#[grad]
fn counters_stackless(x: &[f64], m: usize) -> f64 {
    let mut k = 0;
    let mut s = 0.0;
    for i in 0..m {
        s += x[k] * x[i];
        k += 1;
    }
    let mut b = 1;
    for t in 0..3 {
        for j in 0..b {
            s += x[j] * x[t] * 0.5;
        }
        b += 1;
    }
    s + x[k]
}
#[test]
fn p_counters_stackless() {
    let x = X5.to_vec();
    for m in [0usize, 3] {
        let (v, g) = counters_stackless_grad(&x, m);
        check(&|x: &[f64]| counters_stackless(x, m), v, &g.x, &x);
    }
    // m = 0: s = Σ_t Σ_{j<=t} x_j x_t / 2 over t < 3, plus x0.
    // x = [a, b, c, ..]: s = a²/2 + (ab + b²)/2 + (ac + bc + c²)/2 + a.
    let (v, g) = counters_stackless_grad(&[1.0, 2.0, 3.0], 0);
    assert_eq!(v, 0.5 + 3.0 + 9.0 + 1.0);
    // d/da = a + b/2 + c/2 + 1 = 4.5, d/db = a/2 + b + c/2 = 4, d/dc = a/2 + b/2 + c = 4.5.
    assert_eq!(g.x, vec![4.5, 4.0, 4.5]);
}

// ---- integer counters run backwards, carried values recomputed ------------------------

#[grad]
fn counter_down(x: &[f64]) -> f64 {
    let mut j = x.len();
    let mut s = 1.0;
    while j > 0 {
        j -= 1;
        s = s * x[j] + 0.5;
    }
    let mut i: i64 = 4;
    let mut t = 0.0;
    while i >= 0 {
        t = t * 0.5 + x[i as usize] * s;
        i -= 2;
    }
    t
}
probe!(p_counter_down, counter_down, counter_down_grad, X5.to_vec());

/// Counter stepped by a literal, also reassigned in a branch.
#[grad]
fn counter_reassigned(x: &[f64]) -> f64 {
    let n = x.len();
    let mut li = 0;
    let mut s = 0.0;
    for t in 0..8 {
        if s > 1.0 {
            li = 0;
        }
        s = s * 0.5 + x[li] * x[(li + 1) % n];
        li += 1;
        if li == n {
            li = 1;
        }
    }
    s
}
probe!(
    p_counter_reassigned,
    counter_reassigned,
    counter_reassigned_grad,
    X5.to_vec()
);

/// Counter stepped at the top, then reassigned at top level later.
#[grad]
fn counter_step_then_set(x: &[f64]) -> f64 {
    let mut li = 0;
    let mut s = 0.0;
    for t in 0..4 {
        li += 2;
        s = s * 0.5 + x[li % 5];
        li = li - 1;
        s = s + x[li % 5] * s;
    }
    s
}
probe!(
    p_counter_step_then_set,
    counter_step_then_set,
    counter_step_then_set_grad,
    X5.to_vec()
);

/// Counter stepped by a literal in a while with break before the step.
#[grad]
fn counter_while_break(x: &[f64]) -> f64 {
    let mut j = 0;
    let mut s = 0.0;
    while j < x.len() {
        s = s * 0.9 + x[j] * x[j];
        if s > 2.0 {
            break;
        }
        j += 1;
    }
    let mut k = 0;
    loop {
        k += 1;
        s = s + x[k] * s;
        if k >= 3 {
            break;
        }
    }
    s + j as f64
}
probe!(
    p_counter_while_break,
    counter_while_break,
    counter_while_break_grad,
    X5.to_vec()
);
probe!(
    p_counter_while_break_small,
    counter_while_break,
    counter_while_break_grad,
    vec![0.1, 0.2, 0.3, 0.4, 0.5]
);

/// Counter carried by an inner loop, reset by the outer; inner range bound is an
/// outer counter.
#[grad]
fn counter_nested(x: &[f64]) -> f64 {
    let mut m = 1;
    let mut s = 0.0;
    let mut g = 0;
    for t in 0..3 {
        let mut j = t;
        for i in 0..m {
            s = s * 0.5 + x[j] * x[i];
            j += 1;
            g += 1;
        }
        m += 1;
        s = s + x[g % 5];
    }
    s
}
probe!(
    p_counter_nested,
    counter_nested,
    counter_nested_grad,
    X5.to_vec()
);

/// Range bound from an outer carried value stepped in a branch.
#[grad]
fn range_bound_branch(x: &[f64]) -> f64 {
    let mut m = 1;
    let mut s = 0.5;
    for t in 0..4 {
        for i in 0..m {
            s = s * x[i] + 0.1;
        }
        if s > 0.0 {
            m += 1;
        } else {
            m = 1;
        }
    }
    s
}
probe!(
    p_range_bound_branch,
    range_bound_branch,
    range_bound_branch_grad,
    X5.to_vec()
);

/// Index arithmetic from a saved carried value, reads of local buffers from it.
#[grad]
fn cheap_from_saved(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut k = 1;
    let mut s = 0.0;
    for t in 0..6 {
        let idx = (k * 3 + t) % n;
        let v = h[idx];
        s = s * 0.5 + v * x[t % n];
        h[idx] = v * 0.9 + s;
        k = if s > 0.0 { k + 2 } else { k * 2 + 1 };
    }
    s
}
probe!(
    p_cheap_from_saved,
    cheap_from_saved,
    cheap_from_saved_grad,
    X5.to_vec()
);

/// Copies of carried values across iterations.
#[grad]
fn cheap_copies(x: &[f64]) -> f64 {
    let mut a = x[0];
    let mut b = x[1];
    for t in 0..5 {
        let old = a;
        a = b;
        b = old * b + x[t];
    }
    a * b
}
probe!(p_cheap_copies, cheap_copies, cheap_copies_grad, X5.to_vec());

/// Iterator forms: zip of different lengths, enumerate, rev.
#[grad]
fn iter_forms(x: &[f64]) -> f64 {
    let h = x[1..4].to_vec();
    let mut s = 0.0;
    for (a, b) in x.iter().zip(h.iter()) {
        s = s * 0.5 + a * b;
    }
    for (i, v) in h.iter().enumerate().rev() {
        s = s * v + i as f64;
    }
    s
}
probe!(p_iter_forms, iter_forms, iter_forms_grad, X5.to_vec());

// ---- recycled loop stacks -------------------------------------------------------------

#[grad]
fn pooled(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..n {
        for i in 0..n {
            s = s * 0.5 + h[i] * x[t];
            h[i] = s.sin();
        }
    }
    s
}

#[grad]
fn pooled_f32(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    let mut c = 0;
    for t in 0..x.len() {
        if x[t] > 0.0 {
            c += 1;
        }
        s = s * x[t] + 1.0;
    }
    s * c as f32
}

#[test]
fn p_stack_pool_repeated_and_threads() {
    let x = X7.to_vec();
    let (v0, g0) = pooled_grad(&x);
    let y: Vec<f32> = X7.iter().map(|v| *v as f32).collect();
    let (w0, k0) = pooled_f32_grad(&y);
    check(&|x: &[f64]| pooled(x), v0, &g0.x, &x);
    for _ in 0..200 {
        let (v, g) = pooled_grad(&x);
        assert_eq!(v, v0);
        assert_eq!(g.x, g0.x);
        let (w, k) = pooled_f32_grad(&y);
        assert_eq!(w, w0);
        assert_eq!(k.x, k0.x);
        // Tapes dropped unused, in varied order.
        let (_, t1) = pooled_forward(&x);
        let (_, t2) = pooled_f32_forward(&y);
        drop(t1);
        drop(t2);
    }
    let hs: Vec<_> = (0..2)
        .map(|k| {
            let x = x.clone();
            let y = y.clone();
            let (g0x, k0x) = (g0.x.clone(), k0.x.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let (v, g) = pooled_grad(&x);
                    let (w, q) = pooled_f32_grad(&y);
                    assert_eq!(w, w0);
                    assert_eq!(q.x, k0x);
                    assert_eq!(v, v0);
                    assert_eq!(g.x, g0x);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}
