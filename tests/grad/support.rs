//! Helpers shared by the feature modules: central differences of a function of one
//! slice, a check of a generated value and gradient against them (and `probe!`, a test
//! of the two at one point), and equality that treats NaN as equal to NaN.
#![allow(dead_code, unused_macros)]

/// Points away from kinks, of the two lengths the probes use.
pub const X5: [f64; 5] = [0.5, -1.5, 2.0, 0.3, 1.1];
pub const X7: [f64; 7] = [0.5, -1.5, 2.0, 0.3, 1.1, -0.7, 0.9];

/// Central differences of a function of one slice.
pub fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|k| {
            let h = 1e-6 * x[k].abs().max(1.0);
            let mut a = x.to_vec();
            let mut b = x.to_vec();
            a[k] += h;
            b[k] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

#[track_caller]
pub fn check(f: &dyn Fn(&[f64]) -> f64, value: f64, g: &[f64], x: &[f64]) {
    let v = f(x);
    let num = fd(f, x);
    let vok = (v - value).abs() <= 1e-12 * v.abs().max(1.0) || (v.is_nan() && value.is_nan());
    let gok = g.len() == num.len()
        && g.iter()
            .zip(&num)
            .all(|(a, b)| (a - b).abs() <= 1e-5 + 1e-4 * b.abs());
    assert!(
        vok && gok,
        "value: f = {v}, f_grad = {value}\ngradient: f_grad = {g:?}\n   numeric = {num:?}"
    );
}

macro_rules! probe {
    ($test:ident, $f:ident, $fg:ident, $x:expr) => {
        #[test]
        fn $test() {
            let x: Vec<f64> = $x;
            let (v, g) = $fg(&x);
            $crate::support::check(&|x: &[f64]| $f(x), v, &g.x, &x);
        }
    };
}

/// Equal, treating NaN == NaN and +0 == −0.
pub fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}
pub fn same_v(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(*x, *y))
}
macro_rules! assert_same {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        assert!(
            $crate::support::same(a, b),
            "{} = {a:?} but {} = {b:?}",
            stringify!($a),
            stringify!($b)
        );
    }};
}
macro_rules! assert_same_v {
    ($a:expr, $b:expr) => {{
        let (a, b): (&[f64], &[f64]) = (&$a[..], &$b[..]);
        assert!(
            $crate::support::same_v(a, b),
            "{} = {a:?} but {} = {b:?}",
            stringify!($a),
            stringify!($b)
        );
    }};
}

/// `got` within `tol` of `expected`, relative to `max(|expected|, 1)`; the panic names
/// `what` and both values.
#[track_caller]
pub fn close(got: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (got - expected).abs() <= tol * expected.abs().max(1.0),
        "{what}: got {got:e}, expected {expected:e}"
    );
}
