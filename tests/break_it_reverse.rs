//! Break-it probes (third pass) for the reverse pass's recent optimisations: stable
//! re-reads of local buffers, loop-invariant reads hoisted after the loop, integer
//! counters run backwards, cheap recomputation, `for`+`break` rewritten to a counter,
//! ranges rebuilt from their bounds, and the recycled loop stacks. It found one bug,
//! kept here: a `let` in a loop body shadowing a carried `let mut` replaced the carried
//! value (the body's bindings now live in a scope of their own).
#![allow(
    clippy::all,
    unused_mut,
    unused_variables,
    unused_assignments,
    unused_labels
)]

use backprop::grad;

#[path = "grad/support.rs"]
#[macro_use]
mod support;
use support::{X5, X7, check};

// ------------------------------------------------------------ 2. hoisted invariant reads

/// Buffer written in one outer iteration, read invariantly in an inner loop.
#[grad]
fn hoist_outer_write(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; 2];
    let mut s = 0.0;
    for t in 0..n {
        h[0] = x[t] * x[t];
        for j in 0..n {
            s = s * 0.5 + h[0] * x[j];
        }
        h[1] = h[0] + s;
    }
    s + h[1]
}
probe!(
    p_hoist_outer_write,
    hoist_outer_write,
    hoist_outer_write_grad,
    X5.to_vec()
);

/// Outer write after the inner loop; inner reads at an outer-carried index.
#[grad]
fn hoist_outer_carried_index(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut k = 0;
    let mut s = 0.0;
    for t in 0..n {
        for j in 0..3 {
            s = s * 0.9 + h[k] * x[j];
        }
        h[k] = s * x[t];
        if s > 0.0 {
            k = (k + 2) % n;
        } else {
            k = (k + 1) % n;
        }
    }
    s + h[0] + h[1]
}
probe!(
    p_hoist_outer_carried_index,
    hoist_outer_carried_index,
    hoist_outer_carried_index_grad,
    X5.to_vec()
);

/// Inner loop with zero iterations on some outer iterations.
#[grad]
fn hoist_zero_iterations(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 1.0;
    for t in 0..n {
        for j in 0..t % 3 {
            s = s * h[t] + x[j];
        }
        h[t] = s;
        h[(t + 1) % n] = h[(t + 1) % n] * s;
    }
    s + h[0]
}
probe!(
    p_hoist_zero_iterations,
    hoist_zero_iterations,
    hoist_zero_iterations_grad,
    X5.to_vec()
);

/// Three-deep nest: middle loop writes, innermost reads invariantly.
#[grad]
fn three_deep(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![1.0; n];
    let mut s = 0.0;
    for a in 0..2 {
        for b in 0..n {
            h[b] = h[b] * x[(a + b) % n] + 0.1;
            for c in 0..2 {
                s = s * 0.5 + h[b] * h[(b + 1) % n] * x[c];
            }
        }
    }
    s
}
probe!(p_three_deep, three_deep, three_deep_grad, X5.to_vec());

/// While loop with an invariant read and a break.
#[grad]
fn hoist_while(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        let mut j = 0;
        while j < 4 {
            s = s + h[t] * x[j];
            j += 1;
            if s > 3.0 {
                break;
            }
        }
        h[t] = s * s;
    }
    s + h[0] * h[1] + h[2]
}
probe!(p_hoist_while, hoist_while, hoist_while_grad, X5.to_vec());

/// Invariant read through a view of a local buffer written elsewhere.
#[grad]
fn hoist_view(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        let v = &h[1..4];
        for j in 0..3 {
            s = s * 0.5 + v[t] * x[j];
        }
        h[t + 1] = s * x[t];
    }
    s + h[2]
}
probe!(p_hoist_view, hoist_view, hoist_view_grad, X5.to_vec());

/// A view made outside the loops, the buffer written through another view inside.
#[grad]
fn hoist_view_outside(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        for j in 0..2 {
            let v = &h[1..4];
            s = s * 0.5 + v[1] * x[j];
        }
        h[2] = s * x[t];
    }
    s + h[2]
}
probe!(
    p_hoist_view_outside,
    hoist_view_outside,
    hoist_view_outside_grad,
    X5.to_vec()
);

/// Inner loop reads invariant element, outer swaps.
#[grad]
fn hoist_swap(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..4 {
        for j in 0..2 {
            s = s * 0.7 + h[0] * x[j + 1];
        }
        h.swap(0, t + 1);
    }
    s
}
probe!(p_hoist_swap, hoist_swap, hoist_swap_grad, X5.to_vec());

/// Inner loop reads invariant element, outer fills / copies.
#[grad]
fn hoist_fill_copy(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        for j in 0..2 {
            s = s * 0.7 + h[1] * h[2] * x[j + t];
        }
        if t == 0 {
            h[1..3].fill(s);
        } else {
            h[1..3].copy_from_slice(&x[t..t + 2]);
        }
    }
    s + h[1]
}
probe!(
    p_hoist_fill_copy,
    hoist_fill_copy,
    hoist_fill_copy_grad,
    X5.to_vec()
);

// ------------------------------------------------------------ 1. stable re-reads

/// Reads with a carried counter (changed in a branch) as index, after all writes.
#[grad]
fn stable_branch_counter(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    for i in 0..n {
        h[i] = x[i] * x[(i + 1) % n];
    }
    let mut k = 0;
    let mut s = 0.0;
    for t in 0..6 {
        s = s * h[k] + h[(k + 2) % n];
        if s > 0.5 {
            k = (k + 3) % n;
        } else {
            k += 1;
            if k >= n {
                k = 0;
            }
        }
    }
    s
}
probe!(
    p_stable_branch_counter,
    stable_branch_counter,
    stable_branch_counter_grad,
    X5.to_vec()
);

/// Reads, then a later checkpointed helper call receives the buffer.
#[grad]
fn sumsq3(v: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..v.len() {
        s += v[i] * v[i];
    }
    s
}

#[grad]
fn stable_then_call(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    for i in 0..n {
        h[i] = x[i].sin();
    }
    let mut s = 0.0;
    for i in 0..n {
        s = s * h[i] + 1.0;
    }
    let q = sumsq3(&h);
    let r = sumsq3(&h[1..3]);
    s * q + r
}
probe!(
    p_stable_then_call,
    stable_then_call,
    stable_then_call_grad,
    X5.to_vec()
);

/// Reads in a loop, then the buffer is swapped / filled / copied in a later loop.
#[grad]
fn read_then_swap_later(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 0.0;
    for i in 0..n {
        s = s * h[i] + h[(i + 1) % n];
    }
    for i in 0..n - 1 {
        h.swap(i, i + 1);
    }
    let mut t = 0.0;
    for i in 0..n {
        t = t * 0.5 + h[i] * s;
    }
    h.fill(t);
    h[0..2].copy_from_slice(&x[2..4]);
    s + t + h[0] * h[3]
}
probe!(
    p_read_then_swap_later,
    read_then_swap_later,
    read_then_swap_later_grad,
    X5.to_vec()
);

/// A buffer created afresh in each outer iteration, written in one inner loop and read
/// in a later one.
#[grad]
fn fresh_per_iteration(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 1.0;
    for t in 0..3 {
        let mut h = vec![0.0; n];
        for i in 0..n {
            h[i] = x[i] * s;
        }
        for i in 0..n {
            s = s * 0.3 + h[i] * h[(i + t) % n];
        }
    }
    s
}
probe!(
    p_fresh_per_iteration,
    fresh_per_iteration,
    fresh_per_iteration_grad,
    X5.to_vec()
);

/// Read in a loop, written in a branch in the same loop later.
#[grad]
fn read_then_branch_write(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 0.0;
    for i in 0..n {
        let a = h[(i + 1) % n];
        s = s + a * x[i];
        if s > 0.0 {
            h[(i + 1) % n] = s;
        }
    }
    s
}
probe!(
    p_read_then_branch_write,
    read_then_branch_write,
    read_then_branch_write_grad,
    X5.to_vec()
);

/// Array buffer: read, then written later.
#[grad]
fn array_buffer(x: &[f64]) -> f64 {
    let mut h = [0.0; 3];
    for i in 0..3 {
        h[i] = x[i];
    }
    let mut s = 0.0;
    for i in 0..3 {
        s = s * h[i] + h[2 - i];
    }
    for i in 0..3 {
        h[i] = h[i] * s;
    }
    s + h[0] * h[2]
}
probe!(p_array_buffer, array_buffer, array_buffer_grad, X5.to_vec());

// ------------------------------------------------------------ 3. counters run backwards

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

/// Range bounds shadowed / modified after the loop; nested loop with its range
/// bound redefined in the outer body after it.
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

// ------------------------------------------------------------ 5. for + break

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

// ------------------------------------------------------------ 4. cheap recomputation

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

// ------------------------------------------------------------ 6. ranges and size_hint

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

// ------------------------------------------------------------ 7. stack pool

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

#[test]
fn p_gradcheck_macro() {
    let x = X7.to_vec();
    backprop::gradcheck!(hoist_outer_write(x = &x)).assert();
}
