//! Initialisers: empirical mean and variance of a large draw against the formula, and
//! reproducibility with a seed.

use backprop::init::{FanMode, Fans, Init, init_params};
use rand::{SeedableRng, rngs::StdRng};

const N: usize = 400_000;

/// Draws N values and checks mean ≈ 0 and variance ≈ `var` within 5 standard errors:
/// SE(mean) = σ/√N; SE(variance) = σ²·√((κ − 1)/N) with kurtosis κ = 3 (normal) or
/// 1.8 (uniform), so √(2/N)·σ² covers both.
fn check(init: Init, var: f64, seed: u64) {
    let mut w = vec![0.0f64; N];
    init.fill(&mut StdRng::seed_from_u64(seed), &mut w);
    let mean = w.iter().sum::<f64>() / N as f64;
    let emp = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (N - 1) as f64;
    let se_mean = (var / N as f64).sqrt();
    let se_var = var * (2.0 / N as f64).sqrt();
    assert!(mean.abs() < 5.0 * se_mean, "{init:?}: mean {mean}");
    assert!(
        (emp - var).abs() < 5.0 * se_var,
        "{init:?}: variance {emp}, formula {var}"
    );
    assert!((init.std() - var.sqrt()).abs() < 1e-15, "{init:?}: std()");
}

#[test]
fn xavier_variance_is_2_over_fan_in_plus_fan_out() {
    let f = Fans::new(300, 100);
    check(Init::XavierNormal(f), 2.0 / 400.0, 1);
    check(Init::XavierUniform(f), 2.0 / 400.0, 2);
}

#[test]
fn kaiming_variance_is_2_over_fan() {
    let f = Fans::new(512, 128);
    check(Init::KaimingNormal(f, FanMode::FanIn), 2.0 / 512.0, 3);
    check(Init::KaimingUniform(f, FanMode::FanIn), 2.0 / 512.0, 4);
    check(Init::KaimingNormal(f, FanMode::FanOut), 2.0 / 128.0, 5);
}

#[test]
fn uniform_bounds_are_sqrt_3_std() {
    // Kaiming uniform a = √(6/fan_in): every draw inside [−a, a], and the extremes near a.
    let a = (6.0f64 / 512.0).sqrt();
    let mut w = vec![0.0f64; N];
    Init::KaimingUniform(Fans::new(512, 1), FanMode::FanIn)
        .fill(&mut StdRng::seed_from_u64(6), &mut w);
    let max = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(max <= a && max > 0.999 * a, "max {max}, a {a}");
}

#[test]
fn gpt2_std_and_residual_scaling() {
    check(
        Init::Gpt2 {
            residual_layers: None,
        },
        0.02f64.powi(2),
        7,
    );
    // 12 layers: std 0.02/√24.
    check(
        Init::Gpt2 {
            residual_layers: Some(12),
        },
        0.02f64.powi(2) / 24.0,
        8,
    );
}

#[test]
fn zeros_and_constants() {
    let mut w = vec![1.0f32; 10];
    Init::Zeros.fill(&mut StdRng::seed_from_u64(0), &mut w);
    assert_eq!(w, [0.0; 10]);
    Init::Constant(1.0).fill(&mut StdRng::seed_from_u64(0), &mut w);
    assert_eq!(w, [1.0; 10]);
}

#[test]
fn seeded_draws_are_reproducible_and_seeds_differ() {
    let draw = |seed| {
        let mut p = vec![("w", vec![0.0f32; 1000]), ("b", vec![0.0; 10])];
        init_params(
            &mut p,
            &mut StdRng::seed_from_u64(seed),
            |name, shape| match name {
                "b" => Init::Zeros,
                _ => Init::XavierNormal(Fans::of_shape(shape)),
            },
        );
        p
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42)[0].1, draw(43)[0].1);
    assert_eq!(draw(42)[1].1, [0.0; 10]);
}

#[test]
fn fans_of_shape() {
    assert_eq!(Fans::of_shape(&[784, 128]), Fans::new(784, 128));
    assert_eq!(Fans::of_shape(&[3, 3, 16, 32]), Fans::new(9 * 16, 9 * 32));
    assert_eq!(Fans::of_shape(&[10]), Fans::new(10, 10));
}

/// An initialiser that would fill with NaN or ±∞ panics naming itself: a fan of 0
/// (Xavier on an empty layer), a negative or NaN spread, a non-finite constant.
#[test]
fn initialisers_that_would_fill_with_non_finite_values_panic() {
    let fans = Fans {
        fan_in: 0,
        fan_out: 0,
    };
    for (init, says) in [
        (Init::XavierNormal(fans), "XavierNormal"),
        (Init::KaimingUniform(fans, FanMode::FanIn), "KaimingUniform"),
        (Init::Normal { std: f64::NAN }, "Normal"),
        (Init::Uniform { bound: -1.0 }, "Uniform"),
        (Init::Constant(f64::INFINITY), "Constant"),
    ] {
        let err = std::panic::catch_unwind(|| {
            let mut w = vec![0.0f32; 4];
            init.fill(&mut StdRng::seed_from_u64(1), &mut w);
        })
        .expect_err(says);
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("init: ") && msg.contains(says), "{msg}");
    }
}
