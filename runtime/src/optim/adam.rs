//! Adam and AdamW: bias-corrected first and second moments; AdamW decouples the weight
//! decay from them. Both run the fused kernel of [`crate::kernels::adamw`].

use super::{
    BufferCtx, OptState, Optimizer, ParamGroup, StateSpec, constructors, lr_plumbing, plumbing,
};
use crate::kernels::adamw::AdamWConsts;
use crate::params::Real;

/// Configuration of [`Adam`]; `Default` is the paper's (`lr = 1e-3`, `β₁ = 0.9`,
/// `β₂ = 0.999`, `ε = 1e-8`) with no L2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate α.
    pub lr: f64,
    /// β₁, decay of the first moment.
    pub beta1: f64,
    /// β₂, decay of the second moment.
    pub beta2: f64,
    /// ε, added to √v̂.
    pub eps: f64,
    /// Coupled L2 coefficient λ: `g ← g + λ·w` *before* the moments (PyTorch's `Adam`
    /// `weight_decay`). This is the variant AdamW fixes; prefer [`AdamW`] for decay.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Alg. 1), with
/// ε outside the root as in the paper:
///
/// ```text
/// g ← g + λ·w                         (coupled L2, if λ > 0)
/// m ← β₁·m + (1 − β₁)·g               v ← β₂·v + (1 − β₂)·g²
/// m̂ = m / (1 − β₁ᵗ)                   v̂ = v / (1 − β₂ᵗ)
/// w ← w − lr·m̂ / (√v̂ + ε)
/// ```
///
/// State: `m` and `v`, each the parameter's shape (2 scalars per parameter). Bias
/// correction makes the first step exactly `lr·g/(|g| + ε)`, i.e. `lr·sign(g)` as ε → 0.
///
/// ```
/// use backprop::optim::{Adam, AdamConfig, Optimizer};
/// let mut w = vec![1.0f64, 1.0];
/// let mut opt = Adam::new(AdamConfig { lr: 0.1, eps: 0.0, ..Default::default() });
/// opt.step(&mut w, &vec![5.0, -0.01]).unwrap();
/// assert!((w[0] - 0.9).abs() < 1e-12 && (w[1] - 1.1).abs() < 1e-12);
/// ```
#[derive(Clone, Debug)]
pub struct Adam<F> {
    /// Hyper-parameters.
    pub cfg: AdamConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(Adam, AdamConfig);

impl<F: Real> Optimizer<F> for Adam<F> {
    const NAME: &'static str = "adam";
    plumbing!();

    lr_plumbing!();
    fn hyper_params(&self) -> Vec<(String, f64)> {
        adam_hyper_params(
            self.cfg.lr,
            self.cfg.beta1,
            self.cfg.beta2,
            self.cfg.eps,
            self.cfg.weight_decay,
        )
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        adam_state_layout(shape)
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let c = &self.cfg;
        adam_update(ctx, (c.beta1, c.beta2, c.eps), false, w, g, state);
    }
}

/// Configuration of [`AdamW`]; `Default` is Adam's betas and ε with PyTorch's
/// `λ = 0.01` (LLM pretraining typically uses 0.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (the peak of a schedule, usually).
    pub lr: f64,
    /// β₁, decay of the first moment.
    pub beta1: f64,
    /// β₂, decay of the second moment.
    pub beta2: f64,
    /// ε, added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay λ, applied as `lr·λ·w` (see [`AdamW`]).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Alg. 2):
/// Adam's moment update, and the weight decay applied to the weight directly rather
/// than through the gradient (so √v̂ does not rescale it):
///
/// ```text
/// m ← β₁·m + (1 − β₁)·g               v ← β₂·v + (1 − β₂)·g²
/// m̂ = m / (1 − β₁ᵗ)                   v̂ = v / (1 − β₂ᵗ)
/// w ← w − lr·m̂ / (√v̂ + ε) − lr·λ·w
/// ```
///
/// **The lr·λ convention.** Decay is `lr·λ·w`, as PyTorch's `AdamW` and as
/// `optax.adamw` (whose `learning_rate` multiplies the whole update, decay included),
/// so the decay follows the schedule. The paper writes `η_t·λ·w` with a separate
/// schedule multiplier `η_t` and an unscaled `λ`; in that convention the λ that matches
/// ours is `lr·λ`. Hence `λ = 0.01` with `lr = 1e-3` shrinks weights by 1e-5 per step.
/// optax's default is `weight_decay = 1e-4`, PyTorch's `1e-2`: the same formula, a
/// different default (ours is PyTorch's).
///
/// A zero gradient still decays the weight: `w ← (1 − lr·λ)·w` (m and v stay 0).
///
/// State: `m` and `v` (2 scalars per parameter). `f32` parameters take the fused SIMD,
/// multi-threaded kernel; `f64` the scalar loop.
///
/// ```
/// use backprop::optim::{AdamW, AdamWConfig, Optimizer};
/// let mut w = vec![2.0f64];
/// let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.5, ..Default::default() });
/// opt.step(&mut w, &vec![0.0]).unwrap(); // only the decay: 2 − 0.1·0.5·2
/// assert!((w[0] - 1.9).abs() < 1e-15);
/// ```
#[derive(Clone, Debug)]
pub struct AdamW<F> {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(AdamW, AdamWConfig);

impl<F: Real> Default for AdamW<F> {
    fn default() -> Self {
        AdamW::new(AdamWConfig::default())
    }
}

impl<F: Real> Optimizer<F> for AdamW<F> {
    const NAME: &'static str = "adamw";
    plumbing!();

    lr_plumbing!();
    fn hyper_params(&self) -> Vec<(String, f64)> {
        adam_hyper_params(
            self.cfg.lr,
            self.cfg.beta1,
            self.cfg.beta2,
            self.cfg.eps,
            self.cfg.weight_decay,
        )
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        adam_state_layout(shape)
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let c = &self.cfg;
        adam_update(ctx, (c.beta1, c.beta2, c.eps), true, w, g, state);
    }
}

/// Adam's and AdamW's hyper-parameters, by name, for the state dict.
fn adam_hyper_params(
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
) -> Vec<(String, f64)> {
    vec![
        ("lr".into(), lr),
        ("beta1".into(), beta1),
        ("beta2".into(), beta2),
        ("eps".into(), eps),
        ("weight_decay".into(), weight_decay),
    ]
}

/// Both keep the first and second moments `m` and `v`, shaped like the parameter.
fn adam_state_layout(shape: &[usize]) -> Vec<StateSpec> {
    vec![
        StateSpec::new("m", shape),
        StateSpec::second_moment("v", shape),
    ]
}

/// One fused step of the Adam family: the group's weight decay is decoupled
/// (AdamW: `w ← w − lr·λ·w`) or coupled L2 (Adam: `g ← g + λ·w`).
fn adam_update<F: Real>(
    ctx: &BufferCtx<'_>,
    (beta1, beta2, eps): (f64, f64, f64),
    decoupled: bool,
    w: &mut [F],
    g: &[F],
    state: &mut [Vec<F>],
) {
    let [m, v] = state else {
        unreachable!("the Adam family keeps two state buffers")
    };
    let (decoupled_wd, l2_wd) = if decoupled {
        (ctx.weight_decay, 0.0)
    } else {
        (0.0, ctx.weight_decay)
    };
    let k = AdamWConsts::new(ctx.lr, beta1, beta2, eps, decoupled_wd, l2_wd, ctx.t);
    F::adamw_step(w, g, m, v, &k);
}
