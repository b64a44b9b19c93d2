//! Calls between `#[grad]` functions on buffers: a helper called on a local buffer that
//! is written afterwards or in a loop, on the same buffer twice, on overlapping views,
//! and a helper that returns from inside its loop. Each `f_grad` against `f` (value)
//! and central differences (gradient).
// Written the way users write such code, including forms clippy would rewrite.
#![allow(clippy::all, unused_mut, unused_variables, unused_assignments)]

use backprop::grad;

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

#[grad]
fn norm2(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Buffer literals borrowed as arguments (`&[x, y]`, `&vec![..]`, `&[v; N]`), as the
/// same literal bound by `let` first (rustc errors out of the expansion before).
#[grad]
fn literal_arguments(x: f64, y: f64) -> f64 {
    backprop::logsumexp(&[x, y, x * y]) * x
        + norm2(&[x, y * 2.0])
        + norm2(&vec![x, y])
        + norm2(&[y; 3])
}

#[test]
fn buffer_literals_as_arguments() {
    let (x, y) = (0.3_f64, 0.7_f64);
    let (l, g) = literal_arguments_grad(x, y);
    let s = x.exp() + y.exp() + (x * y).exp();
    let p = [x.exp() / s, y.exp() / s, (x * y).exp() / s];
    let (n1, n2, n3) = (
        (x * x + 4.0 * y * y).sqrt(),
        (x * x + y * y).sqrt(),
        3f64.sqrt() * y,
    );
    let lse = s.ln();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs().max(1.0);
    assert!(close(l, lse * x + n1 + n2 + n3), "{l}");
    let dx = lse + x * (p[0] + p[2] * y) + x / n1 + x / n2;
    let dy = x * (p[1] + p[2] * x) + 4.0 * y / n1 + y / n2 + 3f64.sqrt();
    assert!(
        close(g.x, dx) && close(g.y, dy),
        "{g:?} against ({dx}, {dy})"
    );
    // Forward mode and second order take the same literals.
    let (_, t) = literal_arguments_jvp(x, y, 0.5, -1.0);
    assert!(close(t, 0.5 * dx - dy), "{t}");
    backprop::gradcheck!(literal_arguments(x = x, y = y), order = 2).assert();
}
