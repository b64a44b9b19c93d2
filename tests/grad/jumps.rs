//! `loop`, `break` (also with a value) and `continue` in `#[grad]` functions: the jump
//! becomes a flag, the statements after it run under `if !done`, and the reverse pass
//! replays exactly the iterations (and the part of the last one) that ran.
#![allow(
    clippy::assign_op_pattern,
    clippy::needless_range_loop,
    clippy::never_loop,
    clippy::mut_range_bound
)]

use crate::support::{X5, check};
use backprop::{grad, gradcheck};

/// Halve until below 0.1: v = x·2⁻ᵏ for the first k that gets there.
#[grad]
fn halve_until_small(x: f64) -> f64 {
    let mut v = x;
    loop {
        v = v * 0.5;
        if v < 0.1 {
            break;
        }
    }
    v
}

#[test]
fn loop_with_break() {
    // 1.0 → 0.5 → 0.25 → 0.125 → 0.0625: four halvings.
    let (v, g) = halve_until_small_grad(1.0);
    assert_eq!(v, 0.0625);
    assert_eq!(g.x, 0.0625);
    gradcheck!(halve_until_small(x = 0.77)).assert();
}

/// Σ v² over the non-negative elements: `continue` skips the rest of an iteration.
#[grad]
fn positive_squares(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in x {
        if v < 0.0 {
            continue;
        }
        s += v * v;
    }
    s
}

#[test]
fn for_with_continue() {
    let (v, g) = positive_squares_grad(&[1.0, -2.0, 3.0]);
    assert_eq!(v, 10.0);
    assert_eq!(g.x, vec![2.0, 0.0, 6.0]);
    gradcheck!(positive_squares(x = &vec![0.5, -1.5, 2.0, -0.1])).assert();
}

/// Accumulate a·x_k until the running sum passes `limit`: elements after the `break`
/// get no gradient, and neither does the rest of the breaking iteration.
#[grad(a, x)]
fn sum_until(a: f64, x: &[f64], limit: f64) -> f64 {
    let mut s = 0.0;
    let mut last = 0.0;
    for i in 0..x.len() {
        s += a * x[i];
        if s > limit {
            break;
        }
        last = x[i];
    }
    s + last
}

#[test]
fn for_with_break() {
    // a = 2, x = [1, 2, 3, 4], limit 5: s = 2, 6 → break at i = 1; last = x[0] = 1.
    let (v, g) = sum_until_grad(2.0, &[1.0, 2.0, 3.0, 4.0], 5.0);
    assert_eq!(v, 7.0);
    assert_eq!(g.a, 3.0);
    assert_eq!(g.x, vec![2.0 + 1.0, 2.0, 0.0, 0.0]);
    gradcheck!(sum_until(a = 1.3, x = &vec![0.4, 0.9, 1.7, 0.2], limit = const 2.0)).assert();
}

/// `break value` out of a `loop`, and a `while` with a `break` inside a nested `if`.
#[grad]
fn grow(x: f64) -> f64 {
    let mut v = x;
    let r = loop {
        if v > 10.0 {
            break v * 2.0;
        }
        v = v * 1.5;
    };
    let mut w = r;
    let mut k = 0;
    while k < 100 {
        k += 1;
        if w > 5.0 {
            w = w - 2.0;
            if w < 8.0 {
                break;
            }
        }
    }
    w
}

#[test]
fn break_with_a_value_and_from_nested_ifs() {
    // x = 4: 4 → 6 → 9 → 13.5 > 10: r = 27 = 4·1.5³·2, dr/dx = 6.75.
    // w: 27 → 25 → ... → 7 (ten subtractions; 7 < 8 breaks): w = r − 20.
    let (v, g) = grow_grad(4.0);
    assert_eq!(v, 7.0);
    assert_eq!(g.x, 6.75);
    gradcheck!(grow(x = 4.3)).assert();
}

/// A `break` in an inner loop leaves only the inner loop.
#[grad]
fn row_prefix_sums(m: &[f64], rows: usize, cols: usize) -> f64 {
    let mut total = 0.0;
    for r in 0..rows {
        for c in 0..cols {
            let v = m[r * cols + c];
            if v < 0.0 {
                break;
            }
            total += v * v;
        }
    }
    total
}

#[test]
fn inner_break_leaves_the_inner_loop() {
    let m = [1.0, -1.0, 5.0, 2.0, 3.0, -4.0];
    let (v, g) = row_prefix_sums_grad(&m, 2, 3);
    assert_eq!(v, 1.0 + 4.0 + 9.0);
    assert_eq!(g.m, vec![2.0, 0.0, 0.0, 4.0, 6.0, 0.0]);
}

/// Newton's iteration for √a that returns as soon as the step is small: `return` from
/// inside a loop.
#[grad]
fn newton_sqrt_early(a: f64) -> f64 {
    let mut x = a;
    for _ in 0..100 {
        let next = 0.5 * (x + a / x);
        if (next - x).abs() < 1e-13 {
            return next;
        }
        x = next;
    }
    x
}

#[test]
fn return_from_inside_a_loop() {
    let (v, g) = newton_sqrt_early_grad(2.0);
    assert!((v - 2f64.sqrt()).abs() < 1e-15);
    assert!((g.a - 0.5 / 2f64.sqrt()).abs() < 1e-12, "{}", g.a);
}

/// The first w·x[i]·x[j] above a threshold, from two nested loops; the sum of all of
/// them if none is.
#[grad(w, x)]
fn first_large_product(w: f64, x: &[f64], limit: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..x.len() {
        for j in i..x.len() {
            let p = w * x[i] * x[j];
            if p > limit {
                return p + total;
            }
            total += p;
        }
    }
    total
}

#[test]
fn return_from_nested_loops() {
    // x = [1, 2, 3], w = 1: products 1, 2, 3, 4 (i = j = 1), 6 > 5 → 6 + (1 + 2 + 3 + 4).
    let (v, g) = first_large_product_grad(1.0, &[1.0, 2.0, 3.0], 5.0);
    assert_eq!(v, 16.0);
    // Every product is linear in w: d/dw = 16.
    assert_eq!(g.w, 16.0);
    // d/dx = w·Σ over the products used of ∂(x_i x_j): x0: 2·1 + 2 + 3 = 7;
    // x1: 1 + 2·2 + 3 = 8; x2: 1 + 2 = 3.
    assert_eq!(g.x, vec![7.0, 8.0, 3.0]);
    // None large: the sum of all six products, 1+2+3+4+6+9 = 25.
    assert_eq!(
        first_large_product_grad(1.0, &[1.0, 2.0, 3.0], 100.0).0,
        25.0
    );
    gradcheck!(first_large_product(w = 0.9, x = &vec![1.1, 1.9, 3.2], limit = const 5.0)).assert();
}

/// `break` and `return` in `match` arms inside loops, an integer `break` value, and a
/// body that ends with a `loop` left only by `return`.
#[grad]
fn first_index_then_scale(x: &[f64], limit: f64) -> f64 {
    let found = loop {
        let mut i = 0;
        while i < x.len() {
            if x[i] > limit {
                break;
            }
            i += 1;
        }
        break i;
    };
    let mut s = 0.0;
    for k in 0..x.len() {
        match k % 3 {
            0 => {
                s += x[k];
            }
            1 => {
                if k > found {
                    break;
                }
                s += 2.0 * x[k];
            }
            _ => {
                continue;
            }
        }
    }
    s
}

#[grad]
fn newton_until_converged(a: f64) -> f64 {
    let mut x = a;
    loop {
        let next = 0.5 * (x + a / x);
        if (next - x).abs() < 1e-13 {
            return next;
        }
        x = next;
    }
}

#[test]
fn jumps_in_match_arms_and_a_final_loop() {
    // x = [1, 2, 5, 3, 4]: found = 2 (x[2] = 5 is the first above 4.5);
    // k = 0: s = 1; k = 1: 1 ≤ 2, s += 4; k = 2: skip; k = 3: s += 3; k = 4: 4 > 2 → break.
    let x = [1.0, 2.0, 5.0, 3.0, 4.0];
    let (v, g) = first_index_then_scale_grad(&x, 4.5);
    assert_eq!(v, 8.0);
    assert_eq!(g.x, vec![1.0, 2.0, 0.0, 1.0, 0.0]);
    let (v, g) = newton_until_converged_grad(9.0);
    assert!((v - 3.0).abs() < 1e-15);
    assert!((g.a - 1.0 / 6.0).abs() < 1e-12);
}

// ---- continue, return and break values in every loop form -----------------------------

/// continue in a while.
#[grad]
fn continue_in_while(x: &[f64]) -> f64 {
    let mut s = 1.0;
    let mut i = 0;
    while i < x.len() {
        i += 1;
        if x[i - 1] < 0.0 {
            continue;
        }
        s = s * x[i - 1] + 0.5;
    }
    s
}
probe!(
    p_continue_in_while,
    continue_in_while,
    continue_in_while_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// return from a top-level loop, from inside an if/else inside the loop; code after.
#[grad]
fn return_in_else(x: &[f64]) -> f64 {
    let mut s = x[0];
    for i in 1..x.len() {
        if s < 0.0 {
            s = s * s;
        } else {
            s = s * x[i];
            if s.abs() > 2.0 {
                return s * 10.0 + x[0];
            }
        }
        s += 0.1;
    }
    s + x[1]
}
#[test]
fn p_return_in_else() {
    for x in [
        vec![0.5, -1.5, 2.0, 0.9],
        vec![0.5, 0.5, 0.5, 0.9],
        vec![-0.5, 0.5, 3.5, 0.9],
    ] {
        let (v, g) = return_in_else_grad(&x);
        check(&|x: &[f64]| return_in_else(x), v, &g.x, &x);
    }
}

/// loop with break value reading a buffer, nested in a for.
#[grad]
fn break_value_in_for(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut total = 0.0;
    for i in 0..h.len() {
        let mut k = 0;
        let r = loop {
            h[i] = h[i] * 0.5;
            k += 1;
            if h[i].abs() < 0.3 {
                break h[i] * k as f64;
            }
        };
        total += r * x[i];
    }
    total
}
probe!(
    p_break_value_in_for,
    break_value_in_for,
    break_value_in_for_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// continue in a loop (not for/while).
#[grad]
fn continue_in_loop(x: &[f64]) -> f64 {
    let mut i = 0;
    let mut s = 0.0;
    loop {
        i += 1;
        if i > x.len() {
            break;
        }
        if i % 2 == 0 {
            continue;
        }
        s = s * x[i - 1] + x[i - 1];
    }
    s
}
probe!(
    p_continue_in_loop,
    continue_in_loop,
    continue_in_loop_grad,
    vec![0.5, -1.5, 2.0, 0.9, 1.2]
);

/// is_empty and early return at the top.
#[grad]
fn early_empty(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let mut s = x[0];
    for i in 1..x.len() {
        s = s.max(x[i]) + 0.1 * x[i];
    }
    s
}
probe!(
    p_early_empty,
    early_empty,
    early_empty_grad,
    vec![0.5, -0.8, 0.6]
);
#[test]
fn p_early_empty_empty() {
    assert_eq!(early_empty_grad(&[]).0, 0.0);
}

/// break after a write, continue skipping a write.
#[grad]
fn break_after_write(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    for i in 0..n {
        h[i] = x[i] * 2.0;
        if h[i] > 1.5 {
            break;
        }
        if h[i] < 0.0 {
            continue;
        }
        h[i] += h[i] * x[i];
    }
    let mut s = 0.0;
    for i in 0..n {
        s += h[i] * h[i];
    }
    s
}
probe!(
    p_break_after_write,
    break_after_write,
    break_after_write_grad,
    vec![0.5, -0.8, 0.6, 1.2, 0.3]
);

// ---- a for with break stops where it breaks -------------------------------------------

/// Newton's iteration with a generous iteration cap that converges in a few steps.
/// Pins: a `for` with `break` grew its tape with its range, not with the iterations run
/// (fb9a604).
#[grad]
fn newton_cap(a: f64, cap: usize) -> f64 {
    let mut x = a;
    for _ in 0..cap {
        let next = 0.5 * (x + a / x);
        if (next - x).abs() < 1e-13 {
            break;
        }
        x = next;
    }
    x
}

#[test]
fn p_newton_cap_values() {
    let (v, g) = newton_cap_grad(2.0, 100);
    assert!((v - 2f64.sqrt()).abs() < 1e-15);
    assert!((g.a - 0.5 / 2f64.sqrt()).abs() < 1e-12);
}

#[test]
fn p_newton_cap_tape_follows_iterations_run() {
    use backprop::Pullback;
    let (_, small) = newton_cap_forward(2.0, 100);
    let (_, large) = newton_cap_forward(2.0, 1_000_000);
    assert_eq!(
        small.bytes(),
        large.bytes(),
        "{} vs {}",
        small.bytes(),
        large.bytes()
    );
}

#[test]
fn p_newton_cap_unbounded() {
    assert!((newton_cap(2.0, usize::MAX) - 2f64.sqrt()).abs() < 1e-15);
    let (v, _) = newton_cap_grad(2.0, usize::MAX);
    assert!((v - 2f64.sqrt()).abs() < 1e-15);
}

/// `for` with break where the range end changes in the body (evaluated once).
#[grad]
fn break_end_mutated(x: &[f64]) -> f64 {
    let mut b = 5;
    let mut s = 0.0;
    for i in 0..b {
        b -= 1;
        s = s * 0.5 + x[i];
        if s > 100.0 {
            break;
        }
    }
    s + b as f64
}
probe!(
    p_break_end_mutated,
    break_end_mutated,
    break_end_mutated_grad,
    X5.to_vec()
);

/// `for mut i` with break.
#[grad]
fn break_mut_index(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for mut i in 0..3 {
        i += 1;
        s = s * 0.5 + x[i];
        if s > 100.0 {
            break;
        }
    }
    s
}
probe!(
    p_break_mut_index,
    break_mut_index,
    break_mut_index_grad,
    X5.to_vec()
);

/// Inclusive, rev and step_by ranges with break, reading a local buffer.
#[grad]
fn break_ranges(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for i in 0..=4 {
        s = s * 0.5 + h[i];
        if s > 1.2 {
            break;
        }
    }
    for i in (0..5).rev() {
        h[i] = h[i] * s;
        if h[i] < -1.0 {
            break;
        }
    }
    for i in (0..5).step_by(2) {
        s = s * 0.5 + h[i] * x[i];
        if s > 3.0 {
            break;
        }
    }
    for i in (1..5).rev().step_by(2) {
        s = s * 0.5 + h[i];
        if s < -3.0 {
            break;
        }
    }
    s
}
probe!(p_break_ranges, break_ranges, break_ranges_grad, X5.to_vec());

/// `for` with break and zero iterations (start > end), and start from a variable.
#[grad]
fn break_empty(x: &[f64]) -> f64 {
    let mut s = x[0];
    let a = 3;
    for i in a..2 {
        s = s * x[i];
        if s > 1.0 {
            break;
        }
    }
    for i in a..x.len() {
        s = s * x[i];
        if s > 10.0 {
            break;
        }
    }
    s
}
probe!(p_break_empty, break_empty, break_empty_grad, X5.to_vec());

/// Break in an inner for whose index reads a local buffer written by the outer loop.
#[grad]
fn break_inner_reads(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    let mut s = 0.0;
    for t in 0..n {
        h[t] = x[t] + s;
        for i in 0..n {
            s = s * 0.5 + h[i] * h[t];
            if i >= t {
                break;
            }
        }
    }
    s
}
probe!(
    p_break_inner_reads,
    break_inner_reads,
    break_inner_reads_grad,
    X5.to_vec()
);

/// Continue and break together with a counter.
#[grad]
fn break_continue(x: &[f64]) -> f64 {
    let mut s = 0.0;
    let mut c = 0;
    for i in 0..7 {
        c += 1;
        if i % 2 == 1 {
            continue;
        }
        s = s + x[i % 5] * x[c % 5];
        if s > 2.0 {
            break;
        }
    }
    s * c as f64
}
probe!(
    p_break_continue,
    break_continue,
    break_continue_grad,
    X5.to_vec()
);
