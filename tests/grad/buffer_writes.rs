//! Writes to local buffers and the reads around them: an element read and later
//! overwritten (in the same statement, a later iteration or a later loop), bulk writes
//! (`fill`, `copy_from_slice`, `reverse`, `swap`), copies of local arrays (`let b = a;`,
//! `for v in a`), buffers made in loops and branches, and buffers that become active
//! through writes. Each `f_grad` against `f` (value) and central differences (gradient).
// Written the way users write such code, including forms clippy would rewrite.
#![allow(clippy::all, unused_mut, unused_variables, unused_assignments)]

use crate::support::check;
use backprop::grad;

// ---- an element read, then overwritten ------------------------------------------------

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

// ---- bulk writes ----------------------------------------------------------------------

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

// ---- copies of local arrays and buffers -----------------------------------------------

/// `let b = a;` copies a local array; writes to `a` afterwards must not reach `b`.
/// Pins: `let b = a;` of a local array aliased `a` (fb9a604).
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

/// Minimal: the copy `let b = a;` of a local array, then a write to `a`.
/// Pins: `let b = a;` of a local array aliased `a` (fb9a604).
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
/// Pins: `let b = a;` of a local array aliased `a` (fb9a604).
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
/// Pins: `for v in a` over a local array aliased it (fb9a604).
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

/// Same root cause through the slice methods: the copy `b` loses its gradient when `a` is
/// filled or swapped.
/// Pins: `let b = a;` of a local array aliased `a` (fb9a604).
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

// ---- where a buffer is made, and when it becomes active -------------------------------

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
