//! AdaFactor: Adam-like scaling with a factored second moment (sublinear memory).

use super::{BufferCtx, OptState, Optimizer, ParamGroup, StateSpec, constructors, plumbing};
use crate::params::Real;

/// Configuration of [`AdaFactor`]; `Default` is the paper's (Shazeer & Stern 2018,
/// §9 and Alg. 4/5): relative step size `ρ_t = min(1e-2, 1/√t)` scaled by the
/// parameter's RMS, `β̂₂ₜ = 1 − t^(−0.8)`, update clipping `d = 1`, `ε₁ = 1e-30`,
/// `ε₂ = 1e-3`, no first moment, no weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaFactorConfig {
    /// `None`: relative step size `ρ_t = min(1e-2, 1/√t)` (§8). `Some(lr)`: a fixed
    /// (scheduled) step size; `set_lr` sets it.
    pub lr: Option<f64>,
    /// ε₁, added to g² (keeps the statistics positive).
    pub eps1: f64,
    /// ε₂, floor of the parameter RMS in the relative step `α = max(ε₂, RMS(w))·ρ`.
    pub eps2: f64,
    /// d, update clipping threshold: `Û = U / max(1, RMS(U)/d)` (§6).
    pub clip_threshold: f64,
    /// c in `β̂₂ₜ = 1 − t^(−c)` (§7.2).
    pub decay_rate: f64,
    /// First-moment decay β₁; `None` keeps no first moment (the paper's choice).
    pub beta1: Option<f64>,
    /// Decoupled weight decay λ, applied as `α·λ·w`.
    pub weight_decay: f64,
    /// Scale the step by `max(ε₂, RMS(w))` (relative step size, §8).
    pub scale_parameter: bool,
}

impl Default for AdaFactorConfig {
    fn default() -> Self {
        AdaFactorConfig {
            lr: None,
            eps1: 1e-30,
            eps2: 1e-3,
            clip_threshold: 1.0,
            decay_rate: 0.8,
            beta1: None,
            weight_decay: 0.0,
            scale_parameter: true,
        }
    }
}

/// AdaFactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear
/// Memory Cost", Alg. 4 for matrices, Alg. 5 for vectors).
///
/// For a parameter of shape `[.., n, m]` (each trailing `n × m` matrix on its own) it
/// keeps row sums `R` (`[.., n]`) and column sums `C` (`[.., m]`) of the squared
/// gradient instead of the full second moment:
///
/// ```text
/// β = 1 − t^(−c)                                   (β = 0 at t = 1)
/// R ← β·R + (1 − β)·(G² + ε₁)·1ₘ                   (row sums)
/// C ← β·C + (1 − β)·1ₙᵀ·(G² + ε₁)                  (column sums)
/// V̂ = R·C / (1ₙᵀ·R)                                (rank-1 estimate of E[G²])
/// U = G / √V̂
/// Û = U / max(1, RMS(U)/d)                         (update clipping)
/// α = max(ε₂, RMS(W))·ρ,  ρ = min(1e-2, 1/√t)      (relative step; or α = lr)
/// W ← W − α·Û − α·λ·W
/// ```
///
/// Vectors (and scalars) keep a full `v ← β·v + (1 − β)·(g² + ε₁)` with `U = g/√v`.
/// With `beta1 = Some(β₁)` a first moment `m ← β₁·m + (1 − β₁)·Û` is kept and `m`
/// replaces `Û` in the update. State: `n + m` scalars per `n × m` matrix (plus `n·m`
/// with β₁), `n` per vector.
///
/// ```
/// use backprop::optim::{AdaFactor, Optimizer};
/// let mut w = ndarray::Array2::<f64>::from_elem((2, 3), 1.0);
/// let g = ndarray::Array2::<f64>::from_elem((2, 3), 0.5);
/// let mut opt = AdaFactor::default();
/// opt.step(&mut w, &g).unwrap();
/// // t = 1: V̂ = G² + ε₁, U = ±1, RMS(U) = 1 (no clipping), α = RMS(W)·1e-2 = 1e-2.
/// assert!(w.iter().all(|&x| (x - 0.99).abs() < 1e-12));
/// assert_eq!(opt.state_bytes(), (2 + 3) * 8);
/// ```
#[derive(Clone, Debug)]
pub struct AdaFactor<F> {
    /// Hyper-parameters.
    pub cfg: AdaFactorConfig,
    groups: Vec<ParamGroup>,
    state: OptState<F>,
}

constructors!(AdaFactor, AdaFactorConfig);

impl<F: Real> Default for AdaFactor<F> {
    fn default() -> Self {
        AdaFactor::new(AdaFactorConfig::default())
    }
}

fn rms<F: Real>(x: &[F]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v.f64() * v.f64()).sum::<f64>() / x.len() as f64).sqrt()
}

impl<F: Real> Optimizer<F> for AdaFactor<F> {
    const NAME: &'static str = "adafactor";
    plumbing!();

    /// The fixed step size, or 0 in relative-step mode (`cfg.lr = None`).
    fn lr(&self) -> f64 {
        self.cfg.lr.unwrap_or(0.0)
    }
    /// Switches to a fixed step size `lr`.
    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = Some(lr);
    }
    fn weight_decay(&self) -> f64 {
        self.cfg.weight_decay
    }
    /// `lr` and `beta1` appear only when set (`None` has no number to save).
    fn hyper_params(&self) -> Vec<(String, f64)> {
        let c = &self.cfg;
        let mut h: Vec<(String, f64)> = c.lr.map(|lr| ("lr".to_string(), lr)).into_iter().collect();
        h.extend([
            ("eps1".into(), c.eps1),
            ("eps2".into(), c.eps2),
            ("clip_threshold".into(), c.clip_threshold),
            ("decay_rate".into(), c.decay_rate),
        ]);
        h.extend(c.beta1.map(|b| ("beta1".to_string(), b)));
        h.push(("weight_decay".into(), c.weight_decay));
        h.push((
            "scale_parameter".into(),
            f64::from(u8::from(c.scale_parameter)),
        ));
        h
    }
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec> {
        let nd = shape.len();
        let mut specs = if nd >= 2 {
            let col: Vec<usize> = shape[..nd - 2]
                .iter()
                .chain(&shape[nd - 1..])
                .copied()
                .collect();
            vec![
                StateSpec::second_moment("row", &shape[..nd - 1]),
                StateSpec::second_moment("col", &col),
            ]
        } else {
            vec![StateSpec::second_moment("v", shape)]
        };
        if self.cfg.beta1.is_some() {
            specs.push(StateSpec::new("m", shape));
        }
        specs
    }
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]) {
        let c = &self.cfg;
        let t = ctx.t as f64;
        let rho = if c.lr.is_some() {
            ctx.lr
        } else {
            ctx.lr_scale * (1e-2f64).min(1.0 / t.sqrt())
        };
        let alpha = if c.scale_parameter {
            c.eps2.max(rms(w)) * rho
        } else {
            rho
        };
        let beta = 1.0 - t.powf(-c.decay_rate);
        let nd = ctx.shape.len();
        let (stats, m) = if c.beta1.is_some() {
            let (s, m) = state.split_at_mut(state.len() - 1);
            (s, Some(&mut m[0]))
        } else {
            (state, None)
        };
        let sq = |x: F| x.f64() * x.f64() + c.eps1;
        // The preconditioned update U = G/√V̂ as a function of the flat index, after the
        // statistics are updated; evaluated twice (for RMS(U), then for the step) rather
        // than stored, so the step needs no scratch buffer.
        let mut u_at: Box<dyn FnMut(usize) -> f64 + '_> = if nd >= 2 {
            let (rows, cols) = (ctx.shape[nd - 2], ctx.shape[nd - 1]);
            let [r, col] = stats else {
                unreachable!("factored layout is row, col")
            };
            let batch = g.len().checked_div(rows * cols).unwrap_or(0);
            let mut rsum = vec![0.0f64; batch];
            for b in 0..batch {
                let gb = &g[b * rows * cols..(b + 1) * rows * cols];
                let rb = &mut r[b * rows..(b + 1) * rows];
                for (i, ri) in rb.iter_mut().enumerate() {
                    let s: f64 = gb[i * cols..(i + 1) * cols].iter().map(|&x| sq(x)).sum();
                    *ri = F::of(beta * ri.f64() + (1.0 - beta) * s);
                }
                let cb = &mut col[b * cols..(b + 1) * cols];
                for (j, cj) in cb.iter_mut().enumerate() {
                    let s: f64 = (0..rows).map(|i| sq(gb[i * cols + j])).sum();
                    *cj = F::of(beta * cj.f64() + (1.0 - beta) * s);
                }
                rsum[b] = rb.iter().map(|x| x.f64()).sum();
            }
            let (r, col) = (&*r, &*col);
            Box::new(move |k: usize| {
                let (b, i, j) = (k / (rows * cols), (k / cols) % rows, k % cols);
                let vhat = r[b * rows + i].f64() * col[b * cols + j].f64() / rsum[b];
                g[k].f64() / vhat.sqrt()
            })
        } else {
            let [v] = stats else {
                unreachable!("unfactored layout is v")
            };
            for (vi, &gi) in v.iter_mut().zip(g) {
                *vi = F::of(beta * vi.f64() + (1.0 - beta) * sq(gi));
            }
            let v = &*v;
            Box::new(move |k: usize| g[k].f64() / v[k].f64().sqrt())
        };
        let n = g.len();
        let rms_u = if n == 0 {
            0.0
        } else {
            ((0..n).map(|k| u_at(k).powi(2)).sum::<f64>() / n as f64).sqrt()
        };
        let clip = (rms_u / c.clip_threshold).max(1.0);
        let decay = alpha * ctx.weight_decay;
        match (m, c.beta1) {
            (Some(m), Some(b1)) => {
                for (k, (wk, mk)) in w.iter_mut().zip(m.iter_mut()).enumerate() {
                    let mnew = b1 * mk.f64() + (1.0 - b1) * u_at(k) / clip;
                    *mk = F::of(mnew);
                    *wk = F::of(wk.f64() - alpha * mnew - decay * wk.f64());
                }
            }
            _ => {
                for (k, wk) in w.iter_mut().enumerate() {
                    *wk = F::of(wk.f64() - alpha * u_at(k) / clip - decay * wk.f64());
                }
            }
        }
    }
}
