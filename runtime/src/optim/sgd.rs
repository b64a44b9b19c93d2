//! Stochastic gradient descent, with heavy-ball momentum and Nesterov momentum.

use super::{
    BufferCtx, OptState, Optimizer, ParamGroup, StateSpec, constructors, lr_plumbing, plumbing,
};
use crate::params::Real;

/// Configuration of [`Sgd`]; `Default` is plain SGD at PyTorch's `lr = 1e-3`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum β (0 = plain SGD, no state).
    pub momentum: f64,
    /// Nesterov momentum (needs `momentum > 0`).
    pub nesterov: bool,
    /// Coupled L2 coefficient λ: `g ← g + λ·w` before the update.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl SgdConfig {
    /// Heavy-ball momentum β at learning rate `lr`.
    pub fn momentum(lr: f64, beta: f64) -> Self {
        SgdConfig {
            lr,
            momentum: beta,
            ..Default::default()
        }
    }
    /// Nesterov momentum β at learning rate `lr`.
    pub fn nesterov(lr: f64, beta: f64) -> Self {
        SgdConfig {
            lr,
            momentum: beta,
            nesterov: true,
            ..Default::default()
        }
    }
}

/// SGD (Robbins & Monro 1951), with momentum in PyTorch's form (Polyak 1964; Sutskever
/// et al. 2013, eq. 1–2 with the learning rate moved outside the buffer):
///
/// ```text
/// g ← g + λ·w                          (coupled L2, if λ > 0)
/// plain:     w ← w − lr·g
/// momentum:  v ← β·v + g;  w ← w − lr·v
/// Nesterov:  v ← β·v + g;  w ← w − lr·(g + β·v)
/// ```
///
/// State: none for plain SGD, one buffer `v` (same shape as the parameter) with
/// momentum. `v` starts at 0, so the first momentum step is `w − lr·g`.
///
/// ```
/// use backprop::optim::{Optimizer, Sgd, SgdConfig};
/// let mut w = vec![1.0f64];
/// let mut opt = Sgd::new(SgdConfig::momentum(0.1, 0.9));
/// opt.step(&mut w, &vec![1.0]).unwrap(); // v = 1,   w = 1 − 0.1·1   = 0.9
/// opt.step(&mut w, &vec![1.0]).unwrap(); // v = 1.9, w = 0.9 − 0.1·1.9 = 0.71
/// assert!((w[0] - 0.71).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<F> {
    /// Hyper-parameters.
    pub cfg: SgdConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(Sgd, SgdConfig);

impl<F: Real> Optimizer<F> for Sgd<F> {
    const NAME: &'static str = "sgd";
    plumbing!();

    lr_plumbing!();
    fn hyper_params(&self) -> Vec<(String, f64)> {
        let c = &self.cfg;
        vec![
            ("lr".into(), c.lr),
            ("momentum".into(), c.momentum),
            ("nesterov".into(), f64::from(u8::from(c.nesterov))),
            ("weight_decay".into(), c.weight_decay),
        ]
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        if self.cfg.momentum == 0.0 {
            Vec::new()
        } else {
            vec![StateSpec::new("v", shape)]
        }
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let (lr, l2, beta) = (
            F::of(ctx.lr),
            F::of(ctx.weight_decay),
            F::of(self.cfg.momentum),
        );
        let coupled = ctx.weight_decay != 0.0;
        match state {
            [] => {
                for (w, &g) in w.iter_mut().zip(g) {
                    let g = if coupled { g + l2 * *w } else { g };
                    *w -= lr * g;
                }
            }
            [v] => {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                    let g = if coupled { g + l2 * *w } else { g };
                    *v = beta * *v + g;
                    let d = if self.cfg.nesterov { g + beta * *v } else { *v };
                    *w -= lr * d;
                }
            }
            _ => unreachable!("SGD keeps at most one state buffer"),
        }
    }
}
