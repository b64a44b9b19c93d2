//! `#[cfg]` inside a `#[grad]` body: the generated companions see exactly the
//! statements `f` sees (derive/src/cfg.rs expands once per combination of conditions).

#![allow(clippy::non_minimal_cfg, clippy::assign_op_pattern)]

use backprop::grad;

// The reproducer: a statement under a false `#[cfg]` must not run in `f_grad`.
#[grad]
fn never(x: f64) -> f64 {
    #[cfg(any())]
    let x = x * 100.0;
    x * x
}

#[test]
fn false_cfg_on_let_is_removed_from_the_gradient() {
    assert_eq!(never(3.0), 9.0);
    let (v, g) = never_grad(3.0);
    assert_eq!((v, g.x), (9.0, 6.0));
}

// `cfg(all())` is always true: the statement stays.
#[grad]
fn always(x: f64) -> f64 {
    #[cfg(all())]
    let x = x * 100.0;
    x * x
}

#[test]
fn true_cfg_on_let_is_kept() {
    assert_eq!(always(3.0), 90000.0);
    let (v, g) = always_grad(3.0);
    assert_eq!((v, g.x), (90000.0, 60000.0));
}

// `cfg(test)` is true in this test binary, an unknown feature is false; on `if`,
// `for` and expression statements, nested in blocks, and on `match` arms.
#[grad]
fn mixed(x: f64, n: usize) -> f64 {
    let mut s = x;
    #[cfg(test)]
    for _ in 0..n {
        s = s * x;
    }
    #[cfg(all(test, any()))]
    if x > 0.0 {
        s = s * 1000.0;
    }
    #[cfg(not(test))]
    {
        s = s + 7.0;
    }
    if n > 0 {
        #[cfg(test)]
        {
            s += 2.0 * x;
        }
        #[cfg(not(test))]
        {
            s += 1000.0 * x;
        }
    }
    match n {
        #[cfg(all(test, any()))]
        2 => s * 10.0,
        _ => s,
    }
}

#[test]
fn cfg_on_loops_branches_blocks_and_arms() {
    // s = x^(n+1) + 2x for n = 2: value x^3 + 2x, derivative 3x^2 + 2.
    let x = 1.5;
    let want = x * x * x + 2.0 * x;
    assert_eq!(mixed(x, 2), want);
    let (v, g) = mixed_grad(x, 2);
    assert_eq!(v, want);
    assert!((g.x - (3.0 * x * x + 2.0)).abs() < 1e-12, "{}", g.x);
    backprop::gradcheck!(mixed(x = 0.7, n = const 3)).assert();
}

// The value of `f_grad` equals `f`'s bit for bit under every combination.
#[grad]
fn f32_generic<T: num_traits::Float>(x: T) -> T {
    #[cfg(not(any()))]
    let y = x.sin();
    #[cfg(any())]
    let y = x.cos();
    y * x
}

#[test]
fn cfg_in_generic_code() {
    let (v, g) = f32_generic_grad(0.5f64);
    assert_eq!(v, f32_generic(0.5f64));
    assert_eq!(g.x, 0.5f64.cos() * 0.5 + 0.5f64.sin());
    let (v, g) = f32_generic_grad(0.5f32);
    assert_eq!(v, f32_generic(0.5f32));
    assert_eq!(g.x, 0.5f32.cos() * 0.5 + 0.5f32.sin());
}
