//! Lion: the sign of an interpolated momentum, one state buffer.

use super::{
    BufferCtx, OptState, Optimizer, ParamGroup, StateSpec, constructors, lr_plumbing, plumbing,
};
use crate::params::Real;

/// Configuration of [`Lion`]; `Default` is the paper's (`lr = 1e-4`, `β₁ = 0.9`,
/// `β₂ = 0.99`, `λ = 0`). The paper advises an lr 3–10× smaller than AdamW's and a λ
/// 3–10× larger, keeping `lr·λ` similar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁, interpolation between momentum and gradient for the update direction.
    pub beta1: f64,
    /// β₂, decay of the momentum.
    pub beta2: f64,
    /// Decoupled weight decay λ (applied as `lr·λ·w`).
    pub weight_decay: f64,
}

impl Default for LionConfig {
    fn default() -> Self {
        LionConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
        }
    }
}

/// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Alg. 2):
///
/// ```text
/// c ← β₁·m + (1 − β₁)·g
/// w ← w − lr·(sign(c) + λ·w)
/// m ← β₂·m + (1 − β₂)·g
/// ```
///
/// with `sign(0) = 0`. State: one buffer `m` per parameter (half of Adam's).
///
/// ```
/// use backprop::optim::{Lion, LionConfig, Optimizer};
/// let mut w = vec![1.0f64, 1.0];
/// let mut opt = Lion::new(LionConfig { lr: 0.1, ..Default::default() });
/// opt.step(&mut w, &vec![3.0, -0.5]).unwrap(); // every weight moves by lr against sign(g)
/// assert_eq!(w, [0.9, 1.1]);
/// ```
#[derive(Clone, Debug)]
pub struct Lion<F> {
    /// Hyper-parameters.
    pub cfg: LionConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(Lion, LionConfig);

impl<F: Real> Optimizer<F> for Lion<F> {
    const NAME: &'static str = "lion";
    plumbing!();

    lr_plumbing!();
    fn hyper_params(&self) -> Vec<(String, f64)> {
        let c = &self.cfg;
        vec![
            ("lr".into(), c.lr),
            ("beta1".into(), c.beta1),
            ("beta2".into(), c.beta2),
            ("weight_decay".into(), c.weight_decay),
        ]
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        vec![StateSpec::new("m", shape)]
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let [m] = state else {
            unreachable!("Lion keeps one state buffer")
        };
        let (lr, wd) = (F::of(ctx.lr), F::of(ctx.weight_decay));
        let (b1, one_b1) = (F::of(self.cfg.beta1), F::of(1.0 - self.cfg.beta1));
        let (b2, one_b2) = (F::of(self.cfg.beta2), F::of(1.0 - self.cfg.beta2));
        for ((w, &g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            let c = b1 * *m + one_b1 * g;
            let s = if c > F::zero() {
                F::one()
            } else if c < F::zero() {
                -F::one()
            } else {
                F::zero()
            };
            *w = *w - lr * (s + wd * *w);
            *m = b2 * *m + one_b2 * g;
        }
    }
}
