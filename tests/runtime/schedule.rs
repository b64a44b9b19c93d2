//! Schedules at their boundaries: step 0, end of warmup, last step, past the end.

use backprop::schedule::{
    Constant, InverseSqrt, Join, OneCycle, Schedule, StepDecay, WarmupCosine,
};

#[test]
fn warmup_cosine_is_the_lessons_lr_at_at_its_boundaries() {
    // lr_at(step, peak=3e-4, warmup=500, total=10000) with floor 0.
    let s = WarmupCosine {
        peak: 3e-4,
        warmup: 500,
        total: 10_000,
        floor: 0.0,
    };
    assert_eq!(s.lr(0), 0.0);
    assert_eq!(s.lr(250), 1.5e-4); // halfway up the ramp: peak·250/500
    assert_eq!(s.lr(499), 3e-4 * 499.0 / 500.0);
    assert_eq!(s.lr(500), 3e-4); // end of warmup: cos 0 = 1
    // Midpoint of the decay, p = ½: ½(1 + cos(π/2)) = ½ (cos(π/2) ≈ 6e-17).
    assert!((s.lr(5250) - 1.5e-4).abs() < 1e-18);
    assert_eq!(s.lr(10_000), 0.0); // last step: cos π = −1
    assert_eq!(s.lr(10_001), 0.0); // past the end: the floor
    assert_eq!(s.lr(u64::MAX), 0.0);
}

#[test]
fn warmup_cosine_decays_to_its_floor() {
    let s = WarmupCosine {
        peak: 1.0,
        warmup: 10,
        total: 110,
        floor: 0.1,
    };
    assert_eq!(
        (s.lr(0), s.lr(10), s.lr(110), s.lr(1000)),
        (0.0, 1.0, 0.1, 0.1)
    );
    // p = ½: floor + (peak − floor)·½ = 0.55
    assert!((s.lr(60) - 0.55).abs() < 1e-15);
    // Monotone after warmup.
    assert!((10..110).all(|t| s.lr(t + 1) <= s.lr(t)));
    // No warmup: the peak at step 0.
    let s = WarmupCosine {
        peak: 1.0,
        warmup: 0,
        total: 100,
        floor: 0.0,
    };
    assert_eq!(s.lr(0), 1.0);
}

#[test]
fn constant_and_step_decay() {
    assert_eq!(Constant(0.3).lr(0), 0.3);
    assert_eq!(Constant(0.3).lr(u64::MAX), 0.3);
    let s = StepDecay {
        initial: 1.0,
        gamma: 0.1,
        every: 30,
    };
    assert_eq!((s.lr(0), s.lr(29)), (1.0, 1.0));
    assert_eq!(s.lr(30), 0.1); // first drop exactly at the boundary
    assert_eq!(s.lr(60), 0.1f64.powi(2));
}

#[test]
fn inverse_sqrt_boundaries() {
    // peak·min(t/w, √(w/t)): 0, rising linearly, peak at w, then peak/2 at 4w.
    let s = InverseSqrt {
        peak: 2.0,
        warmup: 4000,
    };
    assert_eq!(s.lr(0), 0.0);
    assert_eq!(s.lr(2000), 1.0);
    assert_eq!(s.lr(4000), 2.0);
    assert_eq!(s.lr(16_000), 1.0);
}

#[test]
fn one_cycle_boundaries() {
    // initial = max/25, peak at pct_start·total, final = initial/1e4 at total and after.
    let s = OneCycle {
        max_lr: 0.1,
        total: 1000,
        ..Default::default()
    };
    // PyTorch's phases: the peak at step 0.3·1000 − 1 = 299, the end at step 999.
    assert_eq!(s.lr(0), 0.1 / 25.0);
    assert_eq!(s.lr(299), 0.1);
    assert_eq!(s.lr(999), 0.1 / 25.0 / 1e4);
    assert_eq!(s.lr(1000), 0.1 / 25.0 / 1e4);
    assert_eq!(s.lr(5000), 0.1 / 25.0 / 1e4);
    // Halfway up (step 149.5 of 299) lies between steps 149 and 150.
    let mid = 0.5 * (0.004 + 0.1);
    assert!(s.lr(149) < mid && mid < s.lr(150));
    // torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=100) (PyTorch
    // 2.15, defaults), the optimizer's lr at steps 0, 1, 29, 50, 98 and 99.
    let s = OneCycle {
        max_lr: 1.0,
        total: 100,
        ..Default::default()
    };
    for (step, torch) in [
        (0, 0.040000000000000036),
        (1, 0.042813780565907456),
        (29, 1.0),
        (50, 0.793893450575732),
        (98, 0.0005074647154757879),
        (99, 4e-06),
    ] {
        let ours = s.lr(step);
        // The same formula to rounding (ours is written as a weighted sum).
        assert!(
            (ours - torch).abs() <= 1e-14 * torch,
            "step {step}: {ours} against {torch}"
        );
    }
}

/// `pct_start = 1`: the whole cycle rises, so the last step has `max_lr` (phase 1 is
/// tested first, as PyTorch does), and steps after the end hold the last step's rate.
/// PyTorch 2.15: `OneCycleLR(opt, max_lr=1.0, total_steps=3, pct_start=1.0)` gives
/// 0.040000000000000036, 0.52, 1.0.
#[test]
fn one_cycle_rising_to_the_end_holds_max_lr() {
    let s = OneCycle {
        max_lr: 1.0,
        total: 3,
        pct_start: 1.0,
        ..Default::default()
    };
    for (step, torch) in [(0, 0.040000000000000036), (1, 0.52), (2, 1.0)] {
        let ours = s.lr(step);
        assert!(
            (ours - torch).abs() <= 1e-14,
            "step {step}: {ours} against {torch}"
        );
    }
    assert_eq!(s.lr(3), 1.0);
    assert_eq!(s.lr(100), 1.0);
}

#[test]
fn join_restarts_the_step_count_at_each_boundary() {
    // Warmup as a linear closure, then a constant, then a cosine from 1 to 0 over 100.
    let s = Join::new(
        vec![
            Box::new(|t: u64| t as f64 / 10.0) as Box<dyn Schedule>,
            Box::new(Constant(1.0)),
            Box::new(WarmupCosine {
                peak: 1.0,
                warmup: 0,
                total: 100,
                floor: 0.0,
            }),
        ],
        vec![10, 50],
    );
    assert_eq!(s.lr(0), 0.0);
    assert_eq!(s.lr(9), 0.9);
    assert_eq!(s.lr(10), 1.0); // the second piece at its own step 0
    assert_eq!(s.lr(49), 1.0);
    assert_eq!(s.lr(50), 1.0); // the cosine at its step 0
    assert_eq!(s.lr(150), 0.0); // the cosine's last step
    assert_eq!(s.lr(10_000), 0.0);
}
