//! Break-it probes for buffers, jumps, match and structs in `#[grad]` functions (written
//! by a hostile review of the first version): each `f_grad` against `f` (value) and
//! central differences (gradient). The probes that found bugs are kept as regressions:
//! array copies (`let b = a;` of `[f64; N]`, `for v in a`) that were aliased, and a
//! `for` with `break` whose tape grew with its range instead of its iterations.
// Written the way users write such code, including forms clippy would rewrite.
#![allow(clippy::all, unused_mut, unused_variables, unused_assignments)]

use backprop::grad;

#[path = "grad/support.rs"]
#[macro_use]
mod support;
use support::{check, fd};

// ---------------------------------------------------------------- element overwrite

/// A write textually before the read, but later in time (next iteration of the
/// enclosing loop).
#[grad]
fn write_before_read_in_loop(x: &[f64]) -> f64 {
    let mut h = vec![0.0; 1];
    let mut s = 0.0;
    for t in 0..x.len() {
        h[0] = x[t];
        s += h[0] * h[0];
    }
    s
}
probe!(
    p_write_before_read_in_loop,
    write_before_read_in_loop,
    write_before_read_in_loop_grad,
    vec![0.5, -1.5, 2.0]
);

/// Read h[i], then a later iteration overwrites h[i + 1] from h[i].
#[grad]
fn overwrite_next(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 0.0;
    for i in 0..n {
        s += h[i] * h[i];
        if i + 1 < n {
            h[i + 1] = h[i + 1] * h[i];
        }
    }
    s
}
probe!(
    p_overwrite_next,
    overwrite_next,
    overwrite_next_grad,
    vec![0.5, -1.5, 2.0, 0.7]
);

/// Read in one loop, overwritten in a later loop.
#[grad]
fn read_then_later_loop_writes(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    let mut s = 0.0;
    for i in 0..n {
        s += h[i].sin() * h[i];
    }
    for i in 0..n {
        h[i] = 3.0 * h[i] + 1.0;
    }
    s + h[0]
}
probe!(
    p_read_then_later_loop_writes,
    read_then_later_loop_writes,
    read_then_later_loop_writes_grad,
    vec![0.5, -1.5, 2.0]
);

/// Same element read and written in one statement.
#[grad]
fn square_in_place(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    for i in 0..h.len() {
        h[i] = h[i] * h[i];
    }
    for i in 0..h.len() {
        h[i] += h[i];
    }
    for i in 0..h.len() {
        h[i] *= h[i];
    }
    let mut s = 0.0;
    for i in 0..h.len() {
        s += h[i] * x[i];
    }
    s
}
probe!(
    p_square_in_place,
    square_in_place,
    square_in_place_grad,
    vec![0.5, -1.5, 2.0]
);

/// h[i] = h[j] with i == j sometimes.
#[grad]
fn assign_from_other_index(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = x.to_vec();
    for i in 0..n {
        let j = (i * 2) / 2;
        h[i] = h[j] * 2.0 + h[i];
    }
    for i in 0..n {
        let j = n - 1 - i;
        h[i] = h[j] * h[i];
    }
    h[0] + h[1] + h[2]
}
probe!(
    p_assign_from_other_index,
    assign_from_other_index,
    assign_from_other_index_grad,
    vec![0.5, -1.5, 2.0]
);

/// Compound ops with the same element on both sides.
#[grad]
fn compound_self(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h[0] -= h[0] * h[1];
    h[1] /= h[1] + h[0];
    h[2] *= h[2];
    h[2] /= h[0];
    h[0] + h[1] + h[2]
}
probe!(
    p_compound_self,
    compound_self,
    compound_self_grad,
    vec![0.5, -1.5, 2.0]
);

/// Prefix sums, backwards recurrence with .rev(), step_by.
#[grad]
fn recurrences(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n];
    h[0] = x[0];
    for i in 1..n {
        h[i] = h[i - 1] * x[i] + x[i];
    }
    let mut g = vec![0.0; n + 1];
    g[n] = 1.0;
    for i in (0..n).rev() {
        g[i] = g[i + 1] * h[i].sin();
    }
    let mut s = 0.0;
    for i in (0..n).step_by(2) {
        s += g[i] * h[i];
    }
    for i in (1..n).rev().step_by(2) {
        s += g[i];
    }
    s
}
probe!(
    p_recurrences,
    recurrences,
    recurrences_grad,
    vec![0.5, -1.5, 2.0, 0.3, 0.9]
);

/// Nested loops with computed indices accumulating into a buffer.
#[grad]
fn outer_accumulate(x: &[f64]) -> f64 {
    let n = x.len();
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            h[i * n + j] += x[i] * x[j];
            h[j * n + i] += h[i * n + j] * 0.5;
        }
    }
    let mut s = 0.0;
    for k in 0..n * n {
        s += h[k] * h[k];
    }
    s
}
probe!(
    p_outer_accumulate,
    outer_accumulate,
    outer_accumulate_grad,
    vec![0.5, -1.5, 2.0]
);

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

/// A buffer created inside a loop.
#[grad]
fn buffer_in_loop(x: &[f64]) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for k in 0..3 {
        let mut t = vec![0.0; n];
        for i in 0..n {
            t[i] = x[i] * (k as f64 + 1.0) + s;
        }
        s += t[0] * t[n - 1];
    }
    s
}
probe!(
    p_buffer_in_loop,
    buffer_in_loop,
    buffer_in_loop_grad,
    vec![0.5, -1.5, 2.0]
);

/// A view of a local buffer, element read through the view, then the buffer written.
#[grad]
fn view_then_write(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let v = &h[1..];
    let a = v[0] * v[1];
    h[1] = 10.0;
    h[2] = h[2] * 3.0;
    a + h[1] + h[2]
}
probe!(
    p_view_then_write,
    view_then_write,
    view_then_write_grad,
    vec![0.5, -1.5, 2.0]
);

/// Helper called on a local buffer, then the buffer written.
#[grad]
fn sumsq(v: &[f64]) -> f64 {
    let mut s = 0.0;
    for k in 0..v.len() {
        s += v[k] * v[k] * v[k];
    }
    s
}

#[grad]
fn call_then_write(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let a = sumsq(&h);
    h[0] = a * h[1];
    let b = sumsq(&h[..2]);
    h[1] = b;
    a + b + h[0] * h[1]
}
probe!(
    p_call_then_write,
    call_then_write,
    call_then_write_grad,
    vec![0.5, -1.5, 2.0]
);

/// Closures capturing an outer active variable.
#[grad]
fn capturing(x: &[f64]) -> f64 {
    let w = x[0] * 2.0;
    let a: f64 = x.iter().map(|v| v * w).sum();
    let b = x.iter().fold(w, |acc, v| acc * v + w);
    let c: f64 = x.iter().zip(x.iter()).map(|(p, q)| p * q * w).sum();
    a + b + c
}
probe!(p_capturing, capturing, capturing_grad, vec![0.5, -1.5, 2.0]);

/// Iterating over a local buffer then writing it; iterating after writes.
#[grad]
fn iterate_local(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for v in &h {
        s += v * v;
    }
    let p: f64 = h.iter().product();
    h[0] = s * p;
    let q: f64 = h.iter().map(|v| v.sin()).sum();
    for (k, v) in h.iter().enumerate() {
        s += v * k as f64;
    }
    s + q
}
probe!(
    p_iterate_local,
    iterate_local,
    iterate_local_grad,
    vec![0.5, -1.5, 2.0]
);

/// Argmax found with a branch, then used as an index.
#[grad]
fn argmax_index(x: &[f64]) -> f64 {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    x[best] * x[best] + x[0]
}
probe!(
    p_argmax_index,
    argmax_index,
    argmax_index_grad,
    vec![0.5, -1.5, 2.0, 1.0]
);

/// Integer index updated in the loop, used to read.
#[grad]
fn strided_index(x: &[f64]) -> f64 {
    let n = x.len();
    let mut j = 0;
    let mut s = 0.0;
    for i in 0..n {
        s = s * 0.5 + x[j] * x[i];
        j = (j + 2) % n;
    }
    let mut i = 0;
    while i < n {
        s += x[i] * s;
        i += 2;
    }
    s
}
probe!(
    p_strided_index,
    strided_index,
    strided_index_grad,
    vec![0.5, -1.5, 2.0, 0.3, 1.1]
);

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

// ---------------------------------------------------------------- batch 2

/// A closure parameter shadowing an outer local, which is used after.
#[grad]
fn closure_shadows_outer(x: &[f64]) -> f64 {
    let v = x[0] * 3.0;
    let s: f64 = x.iter().map(|v| v * v).sum();
    let t = x.iter().fold(0.0, |v, w| v + w * x[1]);
    let mut u = 0.0;
    for v in x {
        u += v.sin();
    }
    s + v * t + u * v
}
probe!(
    p_closure_shadows_outer,
    closure_shadows_outer,
    closure_shadows_outer_grad,
    vec![0.5, -1.5, 2.0]
);

/// User names like the lowering's fresh names.
#[grad]
fn fresh_name_clash(x: &[f64]) -> f64 {
    let k = x[0];
    let acc = x[1];
    let elem = 2.0;
    let src = x[2];
    let mut h = vec![0.0; 3];
    let start = 1;
    let len = 2;
    h.fill(k);
    h[start..].fill(acc);
    let a: f64 = x.iter().map(|v| v * k + acc * elem).sum();
    let b = x.iter().fold(src, |a, v| a * v + k);
    a + b + h[0] * h[1] + h[2] * (start + len) as f64
}
probe!(
    p_fresh_name_clash,
    fresh_name_clash,
    fresh_name_clash_grad,
    vec![0.5, -1.5, 2.0]
);

/// zip of a longer with a shorter buffer: stops at the shorter.
#[grad]
fn zip_shorter(x: &[f64]) -> f64 {
    let a: f64 = x.iter().zip(&x[1..]).map(|(p, q)| p * q).sum();
    let b: f64 = x[1..].iter().zip(x.iter()).map(|(p, q)| p - q * q).sum();
    a + b
}
probe!(
    p_zip_shorter,
    zip_shorter,
    zip_shorter_grad,
    vec![0.5, -1.5, 2.0, 0.25]
);

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

/// zero iterations and empty slices.
#[grad]
fn maybe_empty(x: &[f64]) -> f64 {
    let mut s = 1.0;
    for i in 0..x.len() {
        s *= x[i];
    }
    let p: f64 = x.iter().product();
    let q = x.iter().fold(2.0, |a, v| a + v);
    let h = vec![0.0; x.len()];
    let t: f64 = h.iter().sum();
    s + p + q + t
}
#[test]
fn p_maybe_empty() {
    let (v, g) = maybe_empty_grad(&[]);
    assert_eq!(v, 4.0);
    assert!(g.x.is_empty());
    let (v, g) = maybe_empty_grad(&[3.0]);
    check(&|x: &[f64]| maybe_empty(x), v, &g.x, &[3.0]);
}

/// vec! and arrays repeating an active value.
#[grad]
fn repeat_active(x: &[f64]) -> f64 {
    let a = vec![x[0]; 3];
    let b = [x[1] * 2.0; 2];
    let mut c = vec![x[2]; 2];
    c[0] *= x[0];
    a[0] * a[1] * a[2] + b[0] * b[1] + c[0] + c[1]
}
probe!(
    p_repeat_active,
    repeat_active,
    repeat_active_grad,
    vec![0.5, -1.5, 2.0]
);

/// Views of views and views inside loops.
#[grad]
fn views(x: &[f64]) -> f64 {
    let a = &x[1..];
    let b = &a[1..3];
    let mut s = b[0] * b[1] + a.len() as f64;
    for i in 0..x.len() {
        let t = &x[i..];
        s += t[0] * t[t.len() - 1];
        let u: f64 = x[..i].iter().sum();
        s += u * x[i];
    }
    s
}
probe!(p_views, views, views_grad, vec![0.5, -1.5, 2.0, 0.9, 1.2]);

/// sub-slice writes: fill, copy_from_slice, reverse on ranges of a local buffer.
#[grad]
fn subslice_writes(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h[1..3].reverse();
    h[..2].copy_from_slice(&x[2..4]);
    let f = h[0] * h[1];
    h[3..].fill(f);
    h[2..].reverse();
    let mut s = 0.0;
    for (k, v) in h.iter().enumerate() {
        s += v * (k as f64 + 1.0) * v;
    }
    s
}
probe!(
    p_subslice_writes,
    subslice_writes,
    subslice_writes_grad,
    vec![0.5, -1.5, 2.0, 0.9, 1.2]
);

/// swap with equal indices, and swap in a loop with reads before.
#[grad]
fn swap_same(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let a = h[0] * h[1];
    h.swap(1, 1);
    h.swap(0, 2);
    let b = h[0] * h[2];
    for i in 0..h.len() - 1 {
        if h[i] > h[i + 1] {
            h.swap(i, i + 1);
        }
    }
    a + b + h[0] * 1.0 + h[2] * 3.0 + h[1] * h[1]
}
probe!(
    p_swap_same,
    swap_same,
    swap_same_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// f32 buffers with writes.
#[grad]
fn f32_writes(x: &[f32]) -> f32 {
    let mut h = x.to_vec();
    for i in 1..h.len() {
        h[i] = h[i] * h[i - 1] + 1.0;
    }
    h.iter().map(|v| v * v).sum()
}
#[test]
fn p_f32_writes() {
    let x = [0.5f32, -1.5, 2.0];
    let (v, g) = f32_writes_grad(&x);
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let f = |x: &[f64]| {
        let mut h = x.to_vec();
        for i in 1..h.len() {
            h[i] = h[i] * h[i - 1] + 1.0;
        }
        h.iter().map(|v| v * v).sum::<f64>()
    };
    let gd: Vec<f64> = g.x.iter().map(|&v| v as f64).collect();
    let num = fd(&f, &xd);
    for (a, b) in gd.iter().zip(&num) {
        assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{gd:?} vs {num:?}");
    }
    assert!((v as f64 - f(&xd)).abs() < 1e-4);
}

// ---------------------------------------------------------------- batch 3: ranges

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

// ---------------------------------------------------------------- batch 4: idioms

/// The idiomatic max over a slice: fold from NaN with f64::max.
#[grad]
fn nan_fold_max(x: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NAN, f64::max);
    let n = x.iter().copied().fold(f64::NAN, f64::min);
    3.0 * m + n
}
probe!(
    p_nan_fold_max,
    nan_fold_max,
    nan_fold_max_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Fold from the first element.
#[grad]
fn fold_from_first(x: &[f64]) -> f64 {
    let m = x[1..].iter().fold(x[0], |a, &b| a.max(b));
    m * m
}
probe!(
    p_fold_from_first,
    fold_from_first,
    fold_from_first_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Variance: a closure capturing the active mean.
#[grad]
fn variance(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
}
probe!(
    p_variance,
    variance,
    variance_grad,
    vec![0.5, -1.5, 2.0, 0.9]
);

/// Gather through an integer index buffer (labels).
#[grad(logits)]
fn gather(logits: &[f64], labels: &[usize], c: usize) -> f64 {
    let mut s = 0.0;
    for (row, &label) in labels.iter().enumerate() {
        s -= logits[row * c + label];
    }
    for i in 0..labels.len() {
        s += logits[i * c + labels[i]] * logits[i * c];
    }
    s
}
#[test]
fn p_gather() {
    let logits = vec![0.5, -1.5, 2.0, 0.9, 0.3, -0.7];
    let labels = [1usize, 2];
    let (v, g) = gather_grad(&logits, &labels, 3);
    check(&|x: &[f64]| gather(x, &labels, 3), v, &g.logits, &logits);
}

/// A helper called on a changing local buffer inside a loop.
#[grad]
fn call_in_loop(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        s += sumsq(&h) * x[t];
        h[t] = h[t] * s;
        s += sumsq(&h[t..]);
    }
    s
}
probe!(
    p_call_in_loop,
    call_in_loop,
    call_in_loop_grad,
    vec![0.5, -0.8, 0.6, 0.4]
);

/// A helper with two buffer parameters, passed the same local buffer twice.
#[grad]
fn dot2(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..a.len() {
        s += a[i] * b[i] * b[i];
    }
    s
}
#[grad]
fn same_buffer_twice(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h[0] *= 2.0;
    let a = dot2(&h, &h);
    let b = dot2(x, x);
    let c = dot2(&h[1..], &x[..2]);
    a + b + c
}
probe!(
    p_same_buffer_twice,
    same_buffer_twice,
    same_buffer_twice_grad,
    vec![0.5, -0.8, 0.6]
);

/// Reading an element into a local, then the element changes; the local must not.
#[grad]
fn local_copy_of_element(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let a = h[0];
    h[0] = h[1] * 5.0;
    let b = h[0];
    h[0] += a;
    a * b * h[0]
}
probe!(
    p_local_copy_of_element,
    local_copy_of_element,
    local_copy_of_element_grad,
    vec![0.5, -0.8, 0.6]
);

/// A `for v in &h` loop over a local that is written afterwards, in an outer loop.
#[grad]
fn iterate_then_write_in_outer_loop(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..3 {
        for v in &h {
            s += v * v;
        }
        let p: f64 = h.iter().map(|v| v.sin()).sum();
        s += p;
        h[t] = s * 0.1;
    }
    s
}
probe!(
    p_iterate_then_write_in_outer_loop,
    iterate_then_write_in_outer_loop,
    iterate_then_write_in_outer_loop_grad,
    vec![0.5, -0.8, 0.6]
);

/// Sorting network via swap in nested loops, then weighted sum (a rank-weighted loss).
#[grad]
fn bubble(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let n = h.len();
    for i in 0..n {
        for j in 0..n - 1 - i {
            if h[j] > h[j + 1] {
                h.swap(j, j + 1);
            }
        }
    }
    let mut s = 0.0;
    for i in 0..n {
        s += h[i] * (i as f64 + 1.0) * h[i];
    }
    s
}
probe!(
    p_bubble,
    bubble,
    bubble_grad,
    vec![0.5, -0.8, 0.6, 2.0, -0.1]
);

/// A bool mask buffer, indexed.
#[grad(x)]
fn masked(x: &[f64], mask: &[bool]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() {
        if mask[i] {
            s += x[i] * x[i];
        }
    }
    s
}
#[test]
fn p_masked() {
    let x = vec![0.5, -1.5, 2.0, 0.9];
    let mask = [true, false, true, false];
    let (v, g) = masked_grad(&x, &mask);
    check(&|x: &[f64]| masked(x, &mask), v, &g.x, &x);
}

// ---------------------------------------------------------------- batch 5: structs

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
pub struct Lin {
    pub w: Vec<f64>,
    pub b: f64,
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
pub struct Net {
    pub l1: Lin,
    pub l2: Lin,
    pub scale: [f64; 2],
}

/// Flatten a Net to a vector (w1, b1, w2, b2, scale) and back, for central differences.
fn net_flat(p: &Net) -> Vec<f64> {
    let mut v = p.l1.w.clone();
    v.push(p.l1.b);
    v.extend(&p.l2.w);
    v.push(p.l2.b);
    v.extend(p.scale);
    v
}
fn net_from(v: &[f64], like: &Net) -> Net {
    let n1 = like.l1.w.len();
    let n2 = like.l2.w.len();
    Net {
        l1: Lin {
            w: v[..n1].to_vec(),
            b: v[n1],
        },
        l2: Lin {
            w: v[n1 + 1..n1 + 1 + n2].to_vec(),
            b: v[n1 + 1 + n2],
        },
        scale: [v[n1 + 2 + n2], v[n1 + 3 + n2]],
    }
}
fn sample_net() -> Net {
    Net {
        l1: Lin {
            w: vec![0.3, -0.2, 0.5],
            b: 0.1,
        },
        l2: Lin {
            w: vec![0.7, -0.3, 0.45],
            b: -0.2,
        },
        scale: [1.5, -0.5],
    }
}
#[track_caller]
fn check_net(f: &dyn Fn(&Net) -> f64, value: f64, g: &Net, p: &Net) {
    let flat = net_flat(p);
    check(&|v: &[f64]| f(&net_from(v, p)), value, &net_flat(g), &flat);
}

#[grad]
fn lin_apply(l: &Lin, x: &[f64]) -> f64 {
    let mut z = l.b;
    for i in 0..l.w.len() {
        z += l.w[i] * x[i];
    }
    z.tanh()
}

/// Fields in loops, nested fields, array field, helper on &p.l1, field iterators.
#[grad(p)]
fn net_loss(p: &Net, x: &[f64]) -> f64 {
    let mut s = 0.0;
    for t in 0..2 {
        for i in 0..p.l1.w.len() {
            s += p.l1.w[i] * p.l2.w[i] * p.scale[t] + p.l1.b * x[i];
        }
        s = s * p.scale[1 - t] + p.l2.b;
    }
    let a = lin_apply(&p.l2, x);
    let mut c = 0.0;
    for i in 0..p.l2.w.len() {
        c += p.l1.w[i] * p.l2.w[i] * p.l2.b;
    }
    let l = &p.l1;
    let d = l.w[0] * l.b;
    s + a + c + d + lin_apply(&p.l1, &p.l2.w)
}
#[test]
fn p_net_loss() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = net_loss_grad(&p, &x);
    check_net(&|q| net_loss(q, &x), v, &g.p, &p);
}

/// A struct by value; the field buffer copied and written.
#[grad(p)]
fn net_by_value(p: Net, x: &[f64]) -> f64 {
    let mut w = p.l1.w.to_vec();
    for i in 0..w.len() {
        w[i] = w[i] * p.l2.w[i] + p.scale[0];
    }
    let mut s = 0.0;
    for i in 0..w.len() {
        s += w[i] * w[i] * x[i];
    }
    s + p.l1.b * p.l2.b
}
#[test]
fn p_net_by_value() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = net_by_value_grad(p.clone(), &x);
    check_net(&|q| net_by_value(q.clone(), &x), v, &g.p, &p);
}

/// The same struct passed twice / two struct args.
#[grad]
fn two_lins(a: &Lin, b: &Lin, x: &[f64]) -> f64 {
    lin_apply(a, x) * lin_apply(b, x) + a.b * b.b + lin_apply(a, &b.w)
}
#[test]
fn p_two_lins_same() {
    let p = sample_net();
    let x = [0.8, -1.1, 0.4];
    let (v, g) = two_lins_grad(&p.l1, &p.l1, &x);
    // d/dl where both args are the same struct: sum of both gradients
    let f = |v: &[f64]| {
        let l = Lin {
            w: v[..3].to_vec(),
            b: v[3],
        };
        two_lins(&l, &l, &x)
    };
    let mut flat = p.l1.w.clone();
    flat.push(p.l1.b);
    let mut gsum: Vec<f64> = g.a.w.iter().zip(&g.b.w).map(|(a, b)| a + b).collect();
    gsum.push(g.a.b + g.b.b);
    check(&f, v, &gsum, &flat);
    let (v2, g2) = two_lins_grad(&p.l1, &p.l2, &x);
    let f2 = |v: &[f64]| {
        let a = Lin {
            w: v[..3].to_vec(),
            b: v[3],
        };
        let b = Lin {
            w: v[4..7].to_vec(),
            b: v[7],
        };
        two_lins(&a, &b, &x)
    };
    let mut flat2 = p.l1.w.clone();
    flat2.push(p.l1.b);
    flat2.extend(&p.l2.w);
    flat2.push(p.l2.b);
    let mut gg = g2.a.w.clone();
    gg.push(g2.a.b);
    gg.extend(&g2.b.w);
    gg.push(g2.b.b);
    check(&f2, v2, &gg, &flat2);
}

/// Struct fields with writes to a local, loops with break and match.
#[grad(p)]
fn net_jumps(p: &Net, k: usize) -> f64 {
    let mut s = 0.0;
    let mut i = 0;
    loop {
        if i >= p.l1.w.len() {
            break;
        }
        let w = p.l1.w[i];
        i += 1;
        if w < 0.0 {
            continue;
        }
        s += match k {
            0 => w * p.scale[0],
            _ => w * p.l2.w[i - 1],
        };
    }
    s * p.l1.b
}
#[test]
fn p_net_jumps() {
    let p = sample_net();
    for k in 0..2 {
        let (v, g) = net_jumps_grad(&p, k);
        check_net(&|q| net_jumps(q, k), v, &g.p, &p);
    }
}

// ---------------------------------------------------------------- batch 6

/// `let b = a;` copies a local array; writes to `a` afterwards must not reach `b`.
#[grad]
fn array_copy_semantics(x: &[f64]) -> f64 {
    let mut a = [0.0; 2];
    a[0] = x[0];
    a[1] = x[2];
    let b = a;
    a[0] = x[1];
    a[1] *= a[0];
    b[0] * a[0] + b[1] * 10.0 + a[1]
}
probe!(
    p_array_copy_semantics,
    array_copy_semantics,
    array_copy_semantics_grad,
    vec![0.5, -0.8, 0.6]
);

/// Soft-DTW on a flat table: a DP recurrence over a buffer.
#[grad(x)]
fn soft_dtw(x: &[f64], y: &[f64], gamma: f64) -> f64 {
    let n = x.len();
    let m = y.len();
    let w = m + 1;
    let mut r = vec![1e10; (n + 1) * w];
    r[0] = 0.0;
    for i in 1..=n {
        for j in 1..=m {
            let d = (x[i - 1] - y[j - 1]) * (x[i - 1] - y[j - 1]);
            let a = -r[(i - 1) * w + j] / gamma;
            let b = -r[i * w + j - 1] / gamma;
            let c = -r[(i - 1) * w + j - 1] / gamma;
            let mx = a.max(b).max(c);
            let smin = -gamma * (mx + ((a - mx).exp() + (b - mx).exp() + (c - mx).exp()).ln());
            r[i * w + j] = d + smin;
        }
    }
    r[n * w + m]
}
#[test]
fn p_soft_dtw() {
    let x = vec![0.5, -0.8, 0.6, 1.2];
    let y = [0.1, 0.4, -0.5];
    let (v, g) = soft_dtw_grad(&x, &y, 0.7);
    check(&|x: &[f64]| soft_dtw(x, &y, 0.7), v, &g.x, &x);
}

/// Closures with branches, blocks, enumerate + map indexing another buffer, nested zip.
#[grad]
fn closure_forms(x: &[f64]) -> f64 {
    let w = vec![1.0, -2.0, 0.5];
    let a: f64 = x.iter().map(|&v| if v > 0.0 { v } else { 0.1 * v }).sum();
    let b: f64 = x
        .iter()
        .map(|v| {
            let t = v * 2.0;
            t * t
        })
        .sum();
    let c: f64 = x.iter().enumerate().map(|(i, v)| v * w[i] * x[i]).sum();
    let d: f64 = x
        .iter()
        .zip(&w)
        .zip(x.iter())
        .map(|((p, q), r)| p * q * r)
        .sum();
    let e: f64 = x.iter().map(|v| v.max(0.0)).product();
    a + b + c + d + e
}
probe!(
    p_closure_forms,
    closure_forms,
    closure_forms_grad,
    vec![0.5, -0.8, 0.6]
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

/// A top-level const sizing an array; array arg; writes with enumerate indices.
const N3: usize = 3;
#[grad]
fn const_sized(p: [f64; N3]) -> f64 {
    let mut a = [0.0; N3];
    for (i, v) in p.iter().enumerate() {
        a[i] += v * v;
        a[N3 - 1 - i] -= v;
    }
    let mut s = 0.0;
    for v in a {
        s = s * 0.5 + v * v;
    }
    s
}
#[test]
fn p_const_sized() {
    let p = [0.5, -0.8, 0.6];
    let (v, g) = const_sized_grad(p);
    check(&|x: &[f64]| const_sized([x[0], x[1], x[2]]), v, &g.p, &p);
}

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

/// Minimal: the copy `let b = a;` of a local array, then a write to `a`.
#[grad]
fn array_copy_min(x: &[f64]) -> f64 {
    let mut a = [0.0; 1];
    a[0] = x[0];
    let b = a;
    a[0] = x[1];
    b[0] * a[0]
}
probe!(
    p_array_copy_min,
    array_copy_min,
    array_copy_min_grad,
    vec![2.0, 3.0]
);

/// The plausible form: a fixed-size state copied to `prev` each step of a recurrence.
#[grad]
fn rnn_prev_copy(x: &[f64]) -> f64 {
    let mut h = [0.0; 2];
    h[0] = 0.5;
    h[1] = -0.25;
    for t in 0..x.len() {
        let prev = h;
        h[0] = (0.9 * prev[0] + prev[1] * x[t]).tanh();
        h[1] = (prev[0] - prev[1] * x[t]).tanh();
    }
    h[0] + 2.0 * h[1]
}
probe!(
    p_rnn_prev_copy,
    rnn_prev_copy,
    rnn_prev_copy_grad,
    vec![0.5, -0.8, 0.6]
);

/// `for v in a` over a local array iterates over a copy: writing `a` in the body
/// must not change the elements the loop sees.
#[grad]
fn for_over_array_copy(x: &[f64]) -> f64 {
    let mut a = [0.0; 3];
    a[0] = x[0];
    a[1] = x[1];
    a[2] = x[2];
    let mut s = 0.0;
    for v in a {
        a[2] += v;
        s += v * v;
    }
    s + a[2]
}
probe!(
    p_for_over_array_copy,
    for_over_array_copy,
    for_over_array_copy_grad,
    vec![0.5, -0.8, 0.6]
);

// ---------------------------------------------------------------- batch 7: match forms

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

// ---------------------------------------------------------------- batch 8: buffers + control flow

/// while condition reading a buffer element that the body writes.
#[grad]
fn while_on_element(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    while h[0] < 10.0 {
        h[0] = h[0] * 2.0 + h[1];
        h[1] *= 0.5;
    }
    h[0] * h[1]
}
probe!(
    p_while_on_element,
    while_on_element,
    while_on_element_grad,
    vec![0.7, 0.4]
);

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

/// A delay line (FIR filter): shift the buffer every step.
#[grad(x, w)]
fn fir(x: &[f64], w: &[f64]) -> f64 {
    let m = w.len();
    let mut line = vec![0.0; m];
    let mut s = 0.0;
    for t in 0..x.len() {
        for i in (1..m).rev() {
            line[i] = line[i - 1];
        }
        line[0] = x[t];
        let mut y = 0.0;
        for i in 0..m {
            y += w[i] * line[i];
        }
        s += y * y;
    }
    s
}
#[test]
fn p_fir() {
    let x = vec![0.5, -0.8, 0.6, 1.2, 0.3];
    let w = vec![0.3, -0.2, 0.7];
    let (v, g) = fir_grad(&x, &w);
    check(&|x: &[f64]| fir(x, &w), v, &g.x, &x);
    check(&|w: &[f64]| fir(&x, w), v, &g.w, &w);
}

/// Reset an accumulator with fill each step.
#[grad]
fn fill_reset(x: &[f64]) -> f64 {
    let mut acc = vec![0.0; 2];
    let mut s = 0.0;
    for t in 0..x.len() {
        acc.fill(0.0);
        for j in 0..2 {
            acc[j] += x[t] * (j as f64 + 1.0) + s;
        }
        s += acc.iter().map(|v| v * v).sum::<f64>() * 0.1;
    }
    s
}
probe!(
    p_fill_reset,
    fill_reset,
    fill_reset_grad,
    vec![0.5, -0.8, 0.6]
);

/// An RNN with Vec state, copying the previous state with copy_from_slice.
#[grad]
fn rnn_copy_from_slice(x: &[f64]) -> f64 {
    let mut h = vec![0.0; 2];
    h[0] = 0.5;
    h[1] = -0.25;
    let mut prev = vec![0.0; 2];
    for t in 0..x.len() {
        prev.copy_from_slice(&h);
        h[0] = (0.9 * prev[0] + prev[1] * x[t]).tanh();
        h[1] = (prev[0] - prev[1] * x[t]).tanh();
    }
    h[0] + 2.0 * h[1]
}
probe!(
    p_rnn_copy_from_slice,
    rnn_copy_from_slice,
    rnn_copy_from_slice_grad,
    vec![0.5, -0.8, 0.6]
);

/// Same with prev = h.clone() / h.to_vec() each step.
#[grad]
fn rnn_to_vec(x: &[f64]) -> f64 {
    let mut h = vec![0.0; 2];
    h[0] = 0.5;
    h[1] = -0.25;
    for t in 0..x.len() {
        let prev = h.clone();
        h[0] = (0.9 * prev[0] + prev[1] * x[t]).tanh();
        h[1] = (prev[0] - prev[1] * x[t]).tanh();
    }
    h[0] + 2.0 * h[1]
}
probe!(
    p_rnn_to_vec,
    rnn_to_vec,
    rnn_to_vec_grad,
    vec![0.5, -0.8, 0.6]
);

/// A buffer created in a branch.
#[grad]
fn buffer_in_branch(x: &[f64]) -> f64 {
    let mut s = x[0];
    if x[1] > 0.0 {
        let mut t = vec![0.0; 2];
        t[0] = x[0] * x[1];
        t[1] = t[0] + x[2];
        s += t[0] * t[1];
    } else {
        let t = x[1..].to_vec();
        s -= t[0] * t[1];
    }
    s
}
#[test]
fn p_buffer_in_branch() {
    for x in [vec![0.5, -0.8, 0.6], vec![0.5, 0.8, 0.6]] {
        let (v, g) = buffer_in_branch_grad(&x);
        check(&|x: &[f64]| buffer_in_branch(x), v, &g.x, &x);
    }
}

/// Helper with return-from-loop, called from a loop on views of a written buffer.
#[grad]
fn first_big(v: &[f64]) -> f64 {
    let mut acc = 0.0;
    for i in 0..v.len() {
        acc += v[i] * v[i];
        if acc > 1.0 {
            return acc * v[i];
        }
    }
    acc
}
#[grad]
fn call_first_big(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let mut s = 0.0;
    for t in 0..h.len() {
        s += first_big(&h[t..]);
        h[t] = s * 0.3;
    }
    s + first_big(&h)
}
probe!(
    p_call_first_big,
    call_first_big,
    call_first_big_grad,
    vec![0.3, -0.45, 0.2, 0.9]
);

// ---------------------------------------------------------------- batch 9: scoping, laziness

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

/// An integer chosen in a branch, then used as an index.
#[grad]
fn index_from_branch(x: &[f64]) -> f64 {
    let mut k = 0;
    if x[0] > 0.0 {
        k = 2;
    }
    let mut h = vec![0.0; 3];
    h[k] = x[1] * x[k];
    h[2 - k] += x[k] * 3.0;
    h[0] * h[2] + h[k]
}
#[test]
fn p_index_from_branch() {
    for x in [vec![0.5, -0.8, 0.6], vec![-0.5, -0.8, 0.6]] {
        let (v, g) = index_from_branch_grad(&x);
        check(&|x: &[f64]| index_from_branch(x), v, &g.x, &x);
    }
}

/// Integer counter decremented in a loop, used as index.
#[grad]
fn countdown(x: &[f64]) -> f64 {
    let mut j = x.len();
    let mut s = 1.0;
    while j > 0 {
        j -= 1;
        s = s * x[j] + x[x.len() - 1 - j];
    }
    s
}
probe!(
    p_countdown,
    countdown,
    countdown_grad,
    vec![0.5, -0.8, 0.6, 1.1]
);

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

// ---------------------------------------------------------------- batch 10: match on active values

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

// ---------------------------------------------------------------- batch 11: hygiene

/// User names that look like the macro's own: t0, d_x, k, range, done, count, tape...
#[grad]
fn hygiene(x: &[f64]) -> f64 {
    let t0 = x[0] * 2.0;
    let t1 = t0 * x[1];
    let d_x = t1 + x[2];
    let mut done = false;
    let mut count = 0;
    let mut k = 0.0;
    let range = 3;
    let mut tape = vec![0.0; range];
    let mut d_tape = 1.0;
    for i in 0..range {
        if done {
            continue;
        }
        tape[i] = d_x * x[i] + k;
        k += tape[i] * t0;
        count += 1;
        if k > 5.0 {
            done = true;
        }
    }
    let pullback = k * d_tape;
    let heap_bytes = tape[0] * tape[1];
    let value = pullback + heap_bytes + count as f64;
    let mut skip = 0.0;
    let mut loop_value = 0.0;
    let mut returned = 1.0;
    let mut i = 0;
    loop {
        i += 1;
        skip += x[i % 3];
        loop_value = skip * returned;
        returned *= 0.5;
        if i > 3 {
            break;
        }
    }
    let start = 1;
    let len = 2;
    let mut acc = vec![0.0; 3];
    acc[start..].fill(value);
    let elem = acc.iter().fold(0.0, |source, v| source + v * loop_value);
    d_tape = elem + t1;
    d_tape
}
probe!(p_hygiene, hygiene, hygiene_grad, vec![0.5, -0.8, 0.6]);

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

// ---------------------------------------------------------------- batch 12: deep nesting

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

// ---------------------------------------------------------------- batch 13: custom rules on local buffers

#[backprop::custom_vjp(cubes_vjp)]
fn cubes(v: &[f64]) -> f64 {
    v.iter().map(|t| t * t * t).sum()
}
fn cubes_vjp(v: &[f64], _y: f64, d: f64) -> (Vec<f64>,) {
    (v.iter().map(|t| 3.0 * t * t * d).collect(),)
}

/// A custom rule called on a local buffer that is written afterwards, and in a loop.
#[grad]
fn custom_on_local(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    let a = cubes(&h);
    h[0] = a * h[1];
    let mut s = a;
    for t in 0..h.len() {
        s += cubes(&h[t..]) * 0.1;
        h[t] = s * 0.5;
    }
    s + h[0]
}
probe!(
    p_custom_on_local,
    custom_on_local,
    custom_on_local_grad,
    vec![0.5, -0.8, 0.6]
);

// ---------------------------------------------------------------- batch 14: float-derived indices

/// Linear interpolation in a table at an active position (index from floor).
#[grad]
fn lerp_table(table: &[f64], t: f64) -> f64 {
    let n = table.len();
    let pos = t * (n - 1) as f64;
    let i = (pos.floor() as usize).min(n - 2);
    let frac = pos - i as f64;
    table[i] * (1.0 - frac) + table[i + 1] * frac
}
#[test]
fn p_lerp_table() {
    let table = vec![0.5, -0.8, 0.6, 1.5];
    let (v, g) = lerp_table_grad(&table, 0.4);
    check(&|x: &[f64]| lerp_table(x, 0.4), v, &g.table, &table);
    check(&|x: &[f64]| lerp_table(&table, x[0]), v, &[g.t], &[0.4]);
}

/// Same root cause through the slice methods: the copy `b` loses its gradient when `a` is
/// filled or swapped.
#[grad]
fn copy_then_fill(x: &[f64]) -> f64 {
    let mut a = [0.0; 2];
    a[0] = x[0];
    a[1] = x[1];
    let b = a;
    a.fill(x[1]);
    b[0] * a[0] + b[1]
}
probe!(
    p_copy_then_fill,
    copy_then_fill,
    copy_then_fill_grad,
    vec![2.0, 3.0]
);

#[grad]
fn copy_then_swap(x: &[f64]) -> f64 {
    let mut a = [0.0; 2];
    a[0] = x[0];
    a[1] = x[1];
    let b = a;
    a.swap(0, 1);
    b[0] * a[0] * 3.0 + b[1]
}
probe!(
    p_copy_then_swap,
    copy_then_swap,
    copy_then_swap_grad,
    vec![2.0, 3.0]
);

// ---------------------------------------------------------------- batch 15: for + break cost

/// Newton's iteration with a generous iteration cap that converges in a few steps.
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

// ---------------------------------------------------------------- batch 16: generic buffers

/// `T: Float` with a buffer argument needs `AddAssign` too (see break2_ui/generic_buffer.rs):
/// with the extra bound it works.
#[grad]
fn generic_with_add_assign<T: num_traits::Float + std::ops::AddAssign>(x: &[T]) -> T {
    let mut h = vec![T::zero(); x.len()];
    let mut s = T::zero();
    for i in 0..x.len() {
        h[i] = x[i] * x[i];
        s = s + h[i] * x[i];
    }
    s
}
#[test]
fn p_generic_with_add_assign() {
    let x = vec![0.5, -1.5, 2.0];
    let (v, g) = generic_with_add_assign_grad(&x);
    check(&|x: &[f64]| generic_with_add_assign(x), v, &g.x, &x);
}

// ---------------------------------------------------------------- batch 17: activity

/// A copy of a DATA buffer that becomes active through writes.
#[grad(x)]
fn data_copy_becomes_active(x: &[f64], y: &[f64]) -> f64 {
    let mut h = y.to_vec();
    h[0] = x[0] * 2.0;
    for i in 1..h.len() {
        h[i] = h[i] * h[i - 1] + x[i] * y[i];
    }
    let mut s = 0.0;
    for v in &h {
        s += v * v;
    }
    s
}
#[test]
fn p_data_copy_becomes_active() {
    let x = vec![0.5, -0.8, 0.6];
    let y = vec![1.5, 0.3, -0.7];
    let (v, g) = data_copy_becomes_active_grad(&x, &y);
    check(&|x: &[f64]| data_copy_becomes_active(x, &y), v, &g.x, &x);
}

/// A buffer that only becomes active inside a branch, and one whose active write is undone.
#[grad]
fn active_in_branch_only(x: &[f64]) -> f64 {
    let mut h = vec![1.0; 3];
    if x[0] > 0.0 {
        h[1] = x[1] * x[2];
    }
    let mut g = vec![0.0; 2];
    g[0] = x[0];
    g[0] = 3.0;
    h[0] * h[1] + g[0] * h[1] + g[1]
}
#[test]
fn p_active_in_branch_only() {
    for x in [vec![0.5, -0.8, 0.6], vec![-0.5, -0.8, 0.6]] {
        let (v, g) = active_in_branch_only_grad(&x);
        check(&|x: &[f64]| active_in_branch_only(x), v, &g.x, &x);
    }
}

/// Overlapping views of one local buffer passed to a two-buffer helper.
#[grad]
fn overlapping_views(x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    h[1] *= h[2];
    dot2(&h[..2], &h[1..]) + dot2(&h, &h)
}
probe!(
    p_overlapping_views,
    overlapping_views,
    overlapping_views_grad,
    vec![0.5, -0.8, 0.6]
);
