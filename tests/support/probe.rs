//! Helpers shared by the break-it probe files: central differences of a function of
//! one slice, and a check of a generated value and gradient against them.
#![allow(dead_code)]

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
            check(&|x: &[f64]| $f(x), v, &g.x, &x);
        }
    };
}
