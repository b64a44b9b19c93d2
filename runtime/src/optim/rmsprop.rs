//! RMSProp: per-parameter step sizes from a running mean of squared gradients.

use super::{
    BufferCtx, OptState, Optimizer, ParamGroup, StateSpec, constructors, lr_plumbing, plumbing,
};
use crate::params::Real;

/// Configuration of [`RmsProp`]; `Default` is PyTorch's (`lr = 1e-2`, `α = 0.99`,
/// `ε = 1e-8`), Hinton's lecture suggests `α = 0.9`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay α of the running mean of g².
    pub alpha: f64,
    /// ε added to the root mean square.
    pub eps: f64,
    /// Coupled L2 coefficient λ: `g ← g + λ·w`.
    pub weight_decay: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// RMSProp (Tieleman & Hinton 2012, Coursera "Neural Networks for Machine Learning",
/// lecture 6e), in PyTorch's form (ε outside the square root):
///
/// ```text
/// g ← g + λ·w                (coupled L2, if λ > 0)
/// v ← α·v + (1 − α)·g²
/// w ← w − lr·g / (√v + ε)
/// ```
///
/// State: one buffer `v` per parameter, starting at 0 (no bias correction, so the
/// first step is `lr·g/(√(1−α)·|g| + ε)`, about 10·lr at α = 0.99).
///
/// ```
/// use backprop::optim::{Optimizer, RmsProp, RmsPropConfig};
/// let mut w = vec![1.0f64];
/// let mut opt = RmsProp::new(RmsPropConfig { lr: 0.01, alpha: 0.75, eps: 0.0, ..Default::default() });
/// opt.step(&mut w, &vec![2.0]).unwrap(); // v = 0.25·4 = 1, w = 1 − 0.01·2/1
/// assert!((w[0] - 0.98).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp<F> {
    /// Hyper-parameters.
    pub cfg: RmsPropConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(RmsProp, RmsPropConfig);

impl<F: Real> Optimizer<F> for RmsProp<F> {
    const NAME: &'static str = "rmsprop";
    plumbing!();

    lr_plumbing!();
    fn hyper_params(&self) -> Vec<(String, f64)> {
        let c = &self.cfg;
        vec![
            ("lr".into(), c.lr),
            ("alpha".into(), c.alpha),
            ("eps".into(), c.eps),
            ("weight_decay".into(), c.weight_decay),
        ]
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        vec![StateSpec::second_moment("v", shape)]
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let [v] = state else {
            unreachable!("RMSProp keeps one state buffer")
        };
        let (lr, l2, eps) = (F::of(ctx.lr), F::of(ctx.weight_decay), F::of(self.cfg.eps));
        let (a, one_a) = (F::of(self.cfg.alpha), F::of(1.0 - self.cfg.alpha));
        let coupled = ctx.weight_decay != 0.0;
        for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
            let g = if coupled { g + l2 * *w } else { g };
            *v = a * *v + one_a * g * g;
            *w -= lr * g / (v.sqrt() + eps);
        }
    }
}
