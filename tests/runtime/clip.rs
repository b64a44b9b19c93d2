//! Clipping: norms before and after, untouched below the threshold, non-finite policy.

use backprop::clip::{ClipError, NonFiniteNorm, clip_grad_norm, clip_grad_value, global_norm};

#[test]
fn clips_to_max_norm_over_all_buffers() {
    // Buffers [3, 0] and [4]: global norm √(9 + 16) = 5. Clip to 2.5: scale ½.
    let mut g = vec![("a", vec![3.0f64, 0.0]), ("b", vec![4.0])];
    let before = clip_grad_norm(&mut g, 2.5, NonFiniteNorm::Error).unwrap();
    assert_eq!(before, 5.0);
    assert_eq!(g[0].1, [1.5, 0.0]);
    assert_eq!(g[1].1, [2.0]);
    assert!((global_norm(&g) - 2.5).abs() < 1e-15);
}

#[test]
fn no_change_below_or_at_the_threshold() {
    // √(0.375² + 0.5²) = √0.390625 = 0.625, exact in f32 and f64.
    let mut g = vec![vec![0.375f32, -0.5], vec![0.0]];
    let orig = g.clone();
    assert_eq!(
        clip_grad_norm(&mut g, 1.0, NonFiniteNorm::Error).unwrap(),
        0.625
    );
    assert_eq!(g, orig);
    // Exactly at the threshold: unchanged too (only n > max_norm clips).
    let mut g = vec![3.0f64, 4.0];
    assert_eq!(
        clip_grad_norm(&mut g, 5.0, NonFiniteNorm::Error).unwrap(),
        5.0
    );
    assert_eq!(g, [3.0, 4.0]);
}

#[test]
fn large_f32_norm_accumulates_in_f64() {
    // 10⁶ values of 1e-3: norm √(10⁶·1e-6) = 1 (an f32 running sum would drift).
    let mut g = vec![1e-3f32; 1_000_000];
    let n = global_norm(&g);
    assert!((n - 1.0).abs() < 1e-6, "{n}");
    clip_grad_norm(&mut g, 0.5, NonFiniteNorm::Error).unwrap();
    assert!((global_norm(&g) - 0.5).abs() < 1e-6);
}

#[test]
fn non_finite_norm_errors_or_returns_and_never_touches_grads() {
    let mut g = vec![1.0f64, f64::NAN];
    let err = clip_grad_norm(&mut g, 1.0, NonFiniteNorm::Error).unwrap_err();
    assert!(matches!(err, ClipError::NonFiniteNorm(n) if n.is_nan()));
    assert_eq!(g[0], 1.0);
    let mut g = vec![f64::INFINITY, 1.0];
    assert_eq!(
        clip_grad_norm(&mut g, 1.0, NonFiniteNorm::Return),
        Ok(f64::INFINITY)
    );
    assert_eq!(g[1], 1.0);
    assert_eq!(
        clip_grad_norm(&mut vec![1.0f64], -1.0, NonFiniteNorm::Error),
        Err(ClipError::BadThreshold(-1.0))
    );
}

#[test]
fn per_value_clipping() {
    let mut g = vec![vec![-2.0f64, 0.25, 7.0], vec![-0.5]];
    assert_eq!(clip_grad_value(&mut g, 0.5), Ok(2));
    assert_eq!(g, [vec![-0.5, 0.25, 0.5], vec![-0.5]]);
}
