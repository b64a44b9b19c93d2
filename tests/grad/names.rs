//! Names a user picks that the expansion uses too (`pullback`, `tape`, `d_x`, `t0`,
//! `__value`, ...) and raw identifiers: the companions keep the user's names apart from
//! their own.

// Written the way users write such code, including forms clippy would rewrite.
#![allow(
    unused_variables,
    unused_assignments,
    clippy::useless_vec,
    clippy::let_and_return
)]

use crate::support::X5;
use backprop::grad;

// ---- raw identifiers and the expansion's names ----------------------------------------

/// Raw identifiers, reassigned: r#loop = x², then r#loop·r#loop = x⁴; d/dx = 4x³.
/// Pins: raw identifiers did not expand (bf5618a).
#[grad]
fn raw_identifiers(mut r#type: f64) -> f64 {
    r#type = r#type * r#type;

    r#type * r#type
}

#[test]
fn raw_identifiers_expand() {
    assert_eq!(
        raw_identifiers_grad(2.0),
        (16.0, RawIdentifiersGrad { r#type: 32.0 })
    );
}

/// A user variable named `pullback` (the name the expansion uses for its closure).
/// Pins: a user name collided with the expansion's (bf5618a).
#[grad]
fn named_like_the_expansion(x: f64) -> f64 {
    let pullback = x * x;

    pullback + 1.0
}

#[test]
fn user_names_do_not_collide_with_generated_ones() {
    assert_eq!(
        named_like_the_expansion_grad(3.0),
        (10.0, NamedLikeTheExpansionGrad { x: 6.0 })
    );
}

// ---- user names like the lowering's ---------------------------------------------------

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

/// User names that look like the generated ones.
#[grad]
fn names_clash(x: &[f64]) -> f64 {
    let n = x.len();
    let mut range = vec![0.0; n];
    let mut count = 0.0;
    let mut start = 0.0;
    for k in 0..n {
        let step_0 = x[k];
        for i_1 in 0..n {
            let d_x = x[i_1] * x[k];
            range[i_1] += d_x * step_0;
            count += x[k] * 0.5;
        }
        start += range[k];
    }
    let tape_iterations = start * count;
    let pullback = tape_iterations + range[0];
    pullback
}
probe!(p_names_clash, names_clash, names_clash_grad, X5.to_vec());
