//! Learning-rate schedules: pure functions of the step number.
//!
//! A [`Schedule`] maps a step (`u64`, from 0) to a learning rate (`f64`) and holds no
//! state, so the same schedule can be queried in any order (resuming from a saved step
//! is `sched.lr(step)`). Drive an optimizer with
//! `opt.set_lr(sched.lr(step)); opt.step(..)`. Schedules compose with [`Join`]
//! (optax's `join_schedules`): each piece sees the step counted from its own start.
//!
//! ```
//! use backprop::schedule::{Schedule, WarmupCosine};
//! // The lesson's `lr_at`: linear warmup over 500 steps to 3e-4, cosine to 0 at 10 000.
//! let s = WarmupCosine { peak: 3e-4, warmup: 500, total: 10_000, floor: 0.0 };
//! assert_eq!(s.lr(0), 0.0);
//! assert_eq!(s.lr(500), 3e-4);
//! assert_eq!(s.lr(10_000), 0.0);
//! ```

use std::f64::consts::PI;

/// A learning rate as a pure function of the step (0-based).
pub trait Schedule {
    /// The learning rate at `step`.
    fn lr(&self, step: u64) -> f64;
}

/// A closure `Fn(u64) -> f64` is a schedule. (`Box<dyn Schedule>` is used through
/// deref, as [`Join`] does.)
impl<T: Fn(u64) -> f64> Schedule for T {
    fn lr(&self, step: u64) -> f64 {
        self(step)
    }
}

/// The same rate at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn lr(&self, _step: u64) -> f64 {
        self.0
    }
}

/// Step decay: `lr = initial · gammaᶠˡᵒᵒʳ⁽ˢᵗᵉᵖ ᐟ ᵉᵛᵉʳʸ⁾` (the ResNet recipe, He et al. 2016
/// §3.4: divide by 10 at fixed points; PyTorch's `StepLR`).
///
/// ```
/// use backprop::schedule::{Schedule, StepDecay};
/// let s = StepDecay { initial: 0.1, gamma: 0.5, every: 10 };
/// assert_eq!((s.lr(9), s.lr(10), s.lr(25)), (0.1, 0.05, 0.025));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDecay {
    /// Rate for steps `0..every`.
    pub initial: f64,
    /// Factor applied every `every` steps.
    pub gamma: f64,
    /// Steps per decay (0 is treated as never decaying).
    pub every: u64,
}

impl Schedule for StepDecay {
    fn lr(&self, step: u64) -> f64 {
        if self.every == 0 {
            return self.initial;
        }
        let k = (step / self.every).min(i32::MAX as u64) as i32;
        self.initial * self.gamma.powi(k)
    }
}

/// Linear warmup then inverse square root (Vaswani et al. 2017, §5.3, with the
/// `d_model^-0.5` factor folded into `peak`):
/// `lr = peak · min(step / warmup, √(warmup / step))`, which is 0 at step 0, `peak` at
/// `step = warmup`, and `peak·√(warmup/step)` after.
///
/// ```
/// use backprop::schedule::{InverseSqrt, Schedule};
/// let s = InverseSqrt { peak: 1.0, warmup: 100 };
/// assert_eq!((s.lr(0), s.lr(50), s.lr(100), s.lr(400)), (0.0, 0.5, 1.0, 0.5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InverseSqrt {
    /// Rate at the end of warmup.
    pub peak: f64,
    /// Warmup steps (0: no warmup, `peak` at step 0, `peak/√step` after).
    pub warmup: u64,
}

impl Schedule for InverseSqrt {
    fn lr(&self, step: u64) -> f64 {
        if self.warmup == 0 {
            return self.peak / (step.max(1) as f64).sqrt();
        }
        if step < self.warmup {
            self.peak * step as f64 / self.warmup as f64
        } else {
            self.peak * (self.warmup as f64 / step as f64).sqrt()
        }
    }
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then a half cosine from `peak`
/// down to `floor` at step `total`, then `floor` for ever (Loshchilov & Hutter 2017,
/// SGDR, eq. 5 without restarts; Goyal et al. 2017 for the warmup):
///
/// ```text
/// step < warmup:          lr = peak · step / warmup
/// warmup ≤ step ≤ total:  p = (step − warmup) / (total − warmup)
///                         lr = floor + (peak − floor) · ½(1 + cos(π·p))
/// step > total:           lr = floor
/// ```
///
/// With `floor = 0` this is the lesson's `lr_at`. Boundaries (for `0 < warmup < total`):
/// 0 at step 0, `peak` at step `warmup`, `floor` at step `total`. `warmup = 0` starts at
/// `peak`. `warmup ≥ total` is the warmup alone: `peak · step / warmup` below step
/// `warmup`, then `floor` (with `peak` at step `warmup` itself where `warmup = total`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// Rate at the end of warmup.
    pub peak: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// The step at which the rate reaches `floor`.
    pub total: u64,
    /// Final rate (often `peak / 10`, or 0).
    pub floor: f64,
}

impl Schedule for WarmupCosine {
    fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup as f64;
        }
        if step > self.total {
            return self.floor;
        }
        if self.total <= self.warmup {
            return self.peak;
        }
        let p = (step - self.warmup) as f64 / (self.total - self.warmup) as f64;
        cos_interp(self.peak, self.floor, p)
    }
}

/// The one-cycle policy (Smith & Topin 2019, "Super-Convergence", §3; the cosine form of
/// PyTorch's `OneCycleLR` and fast.ai): a cosine rise from `max_lr / div_factor` to
/// `max_lr`, reached at step `pct_start · total − 1`, then a cosine fall to
/// `max_lr / (div_factor · final_div_factor)`, reached at step `total − 1` (the last step
/// of a `total`-step run) and held after. Step for step PyTorch's schedule with
/// `total_steps = total` (`torch.optim.lr_scheduler.OneCycleLR`, `anneal_strategy='cos'`,
/// `three_phase=False`).
///
/// ```
/// use backprop::schedule::{OneCycle, Schedule};
/// let s = OneCycle { max_lr: 1.0, total: 100, ..Default::default() };
/// assert_eq!(s.lr(0), 1.0 / 25.0);
/// assert_eq!(s.lr(29), 1.0);
/// assert_eq!(s.lr(99), 1.0 / 25.0 / 1e4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    /// The peak rate.
    pub max_lr: f64,
    /// The step at which the cycle ends.
    pub total: u64,
    /// Fraction of `total` spent rising (PyTorch default 0.3).
    pub pct_start: f64,
    /// `initial = max_lr / div_factor` (default 25).
    pub div_factor: f64,
    /// `final = initial / final_div_factor` (default 1e4).
    pub final_div_factor: f64,
}

impl Default for OneCycle {
    fn default() -> Self {
        OneCycle {
            max_lr: 1e-3,
            total: 1000,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }
}

/// Cosine interpolation from `a` (p = 0) to `b` (p = 1), written as a weighted sum so
/// both ends are exact (`cos 0 = 1` and `cos π = −1` are exact in floating point).
fn cos_interp(a: f64, b: f64, p: f64) -> f64 {
    let w = 0.5 * (1.0 + (PI * p).cos());
    a * w + b * (1.0 - w)
}

impl Schedule for OneCycle {
    fn lr(&self, step: u64) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let last = initial / self.final_div_factor;
        // PyTorch's phase ends: `pct_start·total − 1` (a float) and `total − 1`.
        let peak_at = self.pct_start * self.total as f64 - 1.0;
        let end = self.total.saturating_sub(1) as f64;
        // After the last step the rate is held at the last step's.
        let s = (step as f64).min(end);
        // Phase 1 first, as PyTorch: with `pct_start = 1` it ends at the last step,
        // which then has `max_lr`.
        if s <= peak_at {
            if peak_at <= 0.0 {
                self.max_lr
            } else {
                cos_interp(initial, self.max_lr, s / peak_at)
            }
        } else if s >= end {
            last
        } else {
            cos_interp(self.max_lr, last, (s - peak_at) / (end - peak_at))
        }
    }
}

/// Schedules in sequence: piece `i` runs from `boundaries[i - 1]` (0 for the first) and
/// sees the step counted from that boundary (optax's `join_schedules`). `boundaries`
/// has one entry fewer than `schedules` and is non-decreasing.
///
/// ```
/// use backprop::schedule::{Constant, Join, Schedule, WarmupCosine};
/// // 100 warmup steps to 1.0, then a cosine from 1.0 to 0.1 over 900 steps.
/// let s = Join::new(
///     vec![
///         Box::new(|t: u64| t as f64 / 100.0) as Box<dyn Schedule>,
///         Box::new(WarmupCosine { peak: 1.0, warmup: 0, total: 900, floor: 0.1 }),
///     ],
///     vec![100],
/// );
/// assert_eq!((s.lr(50), s.lr(100), s.lr(1000)), (0.5, 1.0, 0.1));
/// ```
pub struct Join {
    schedules: Vec<Box<dyn Schedule>>,
    boundaries: Vec<u64>,
}

impl Join {
    /// Joins `schedules` at `boundaries`.
    ///
    /// # Panics
    /// If `schedules` is empty, `boundaries.len() != schedules.len() - 1`, or the
    /// boundaries decrease (a programming error in a fixed recipe, not user data).
    pub fn new(schedules: Vec<Box<dyn Schedule>>, boundaries: Vec<u64>) -> Self {
        assert!(!schedules.is_empty(), "Join needs at least one schedule");
        assert_eq!(
            boundaries.len() + 1,
            schedules.len(),
            "Join needs one boundary between each two schedules"
        );
        assert!(
            boundaries.windows(2).all(|w| w[0] <= w[1]),
            "Join boundaries must not decrease"
        );
        Join {
            schedules,
            boundaries,
        }
    }
}

impl Schedule for Join {
    fn lr(&self, step: u64) -> f64 {
        let i = self.boundaries.partition_point(|&b| b <= step);
        let start = if i == 0 { 0 } else { self.boundaries[i - 1] };
        self.schedules[i].lr(step - start)
    }
}
