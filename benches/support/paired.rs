//! Timing for the paired-rounds benches (`jvp_cost`, `hvp_cost`): this machine drifts
//! ±20% between rounds, so each round times every variant back to back and ratios are
//! taken within a round.

use std::time::Instant;

/// Seconds per call of `f`, over enough calls to take about 50 ms.
pub fn per_call(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let n = ((0.05 / once) as usize).clamp(1, 100_000);
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / n as f64
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The number of rounds from the command line (`-- 21`), or `default`.
pub fn rounds(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A fixed direction of length `n` (a tangent, or a Hessian-vector product's `v`).
pub fn direction(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect()
}
