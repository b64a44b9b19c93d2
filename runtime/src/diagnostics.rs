//! The lesson's table of training pathologies, as checks any training loop can call.
//!
//! | symptom | check | likely cause |
//! |---|---|---|
//! | loss is NaN or ∞ | [`Monitor::observe`] → [`Finding::NonFiniteLoss`] | lr too high, log(0), overflow; names the parameter with the largest gradient |
//! | first loss far from ln C | [`check_initial_loss`] → [`Finding::InitialLoss`] | symmetric init, or softmax applied before the cross-entropy |
//! | gradient-norm spike | [`Monitor::observe`] → [`Finding::GradNormSpike`] | a bad batch, lr too high (clip, or lower the lr) |
//! | per-layer norms ≪ or ≫ the others | [`check_layer_norms`] → [`Finding::Vanishing`] / [`Finding::Exploding`] | depth without normalisation, bad init |
//! | many ReLUs never fire | [`dead_relu_fraction`] + [`check_dead_relu`] → [`Finding::DeadRelu`] | lr too high, large negative biases |
//! | train ≫ validation accuracy | [`check_generalization`] → [`Finding::Overfitting`] | too little data or regularisation |
//!
//! And the sanity check to run before any long run: [`overfit_single_batch`] — a model
//! that cannot drive one batch's loss near zero has a bug, not a tuning problem.

use std::fmt;

/// One diagnosis, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// The loss is NaN or infinite at `step`.
    NonFiniteLoss {
        /// Step (0-based).
        step: u64,
        /// The loss.
        loss: f64,
        /// The parameter with the largest gradient norm, and that norm.
        worst: Option<(String, f64)>,
    },
    /// The first loss is far from ln C, the loss of a uniform prediction over C classes.
    InitialLoss {
        /// The loss seen.
        loss: f64,
        /// ln C.
        expected: f64,
    },
    /// A gradient norm far above the running median.
    GradNormSpike {
        /// Step.
        step: u64,
        /// The norm.
        norm: f64,
        /// Median of the recent norms.
        median: f64,
    },
    /// A layer's gradient norm is far below the median of the layers'.
    Vanishing {
        /// Parameter name.
        layer: String,
        /// Its gradient norm.
        norm: f64,
        /// Median over parameters.
        median: f64,
    },
    /// A layer's gradient norm is far above the median of the layers'.
    Exploding {
        /// Parameter name.
        layer: String,
        /// Its gradient norm.
        norm: f64,
        /// Median over parameters.
        median: f64,
    },
    /// A large fraction of a layer's ReLU units output 0 on every example of a batch.
    DeadRelu {
        /// Layer name.
        layer: String,
        /// Fraction of units dead on the batch.
        fraction: f64,
    },
    /// Training accuracy is well above validation accuracy.
    Overfitting {
        /// Training accuracy.
        train: f64,
        /// Validation accuracy.
        validation: f64,
    },
}

impl Finding {
    /// Whether training should stop (a non-finite loss); the rest are warnings.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Finding::NonFiniteLoss { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NonFiniteLoss { step, loss, worst } => {
                write!(
                    f,
                    "step {step}: loss is {loss}; stop (lower the lr, clip gradients, look for log(0))"
                )?;
                if let Some((name, norm)) = worst {
                    write!(f, "; largest gradient: `{name}` with norm {norm:.3e}")?;
                }
                Ok(())
            }
            Finding::InitialLoss { loss, expected } => write!(
                f,
                "initial loss {loss:.4} is far from ln C = {expected:.4}: is the symmetry broken at init, and is softmax applied only inside the cross-entropy?"
            ),
            Finding::GradNormSpike { step, norm, median } => {
                write!(
                    f,
                    "step {step}: gradient norm {norm:.3e} is {:.1}× the running median {median:.3e}",
                    norm / median
                )
            }
            Finding::Vanishing {
                layer,
                norm,
                median,
            } => {
                write!(
                    f,
                    "`{layer}`: gradient norm {norm:.3e} is far below the median {median:.3e} (vanishing gradients)"
                )
            }
            Finding::Exploding {
                layer,
                norm,
                median,
            } => {
                write!(
                    f,
                    "`{layer}`: gradient norm {norm:.3e} is far above the median {median:.3e} (exploding gradients)"
                )
            }
            Finding::DeadRelu { layer, fraction } => {
                write!(
                    f,
                    "`{layer}`: {:.0}% of ReLU units output 0 for the whole batch (dead ReLUs)",
                    fraction * 100.0
                )
            }
            Finding::Overfitting { train, validation } => write!(
                f,
                "train accuracy {:.1}% vs validation {:.1}%: overfitting (more data, weight decay, early stopping)",
                train * 100.0,
                validation * 100.0
            ),
        }
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `|loss − ln C| > tolerance·ln C` for the first loss of a C-class classifier.
pub fn check_initial_loss(loss: f64, classes: usize, tolerance: f64) -> Option<Finding> {
    let expected = (classes as f64).ln();
    ((loss - expected).abs() > tolerance * expected || !loss.is_finite())
        .then_some(Finding::InitialLoss { loss, expected })
}

/// Per-parameter gradient norms against their median: a norm below `median/ratio` is
/// vanishing, above `median·ratio` exploding.
pub fn check_layer_norms(norms: &[(String, f64)], ratio: f64) -> Vec<Finding> {
    let values: Vec<f64> = norms.iter().map(|(_, n)| *n).collect();
    let m = median(&values);
    if m.is_nan() || m <= 0.0 {
        return Vec::new();
    }
    norms
        .iter()
        .filter_map(|(layer, norm)| {
            if *norm < m / ratio {
                Some(Finding::Vanishing {
                    layer: layer.clone(),
                    norm: *norm,
                    median: m,
                })
            } else if *norm > m * ratio {
                Some(Finding::Exploding {
                    layer: layer.clone(),
                    norm: *norm,
                    median: m,
                })
            } else {
                None
            }
        })
        .collect()
}

/// The fraction of columns (units) of a `batch × units` activation that are ≤ 0 for
/// every row: ReLU units that did not fire on any example.
pub fn dead_relu_fraction<S: ndarray::Data<Elem = f32>>(
    activations: &ndarray::ArrayBase<S, ndarray::Ix2>,
) -> f64 {
    let units = activations.ncols();
    if units == 0 {
        return 0.0;
    }
    let dead = activations
        .columns()
        .into_iter()
        .filter(|c| c.iter().all(|&v| v <= 0.0))
        .count();
    dead as f64 / units as f64
}

/// A finding when more than `threshold` of a layer's units are dead.
pub fn check_dead_relu(layer: &str, fraction: f64, threshold: f64) -> Option<Finding> {
    (fraction > threshold).then(|| Finding::DeadRelu {
        layer: layer.to_string(),
        fraction,
    })
}

/// A finding when training accuracy exceeds validation accuracy by more than `gap`.
pub fn check_generalization(train: f64, validation: f64, gap: f64) -> Option<Finding> {
    (train - validation > gap).then_some(Finding::Overfitting { train, validation })
}

/// Watches a run step by step: non-finite losses and gradient-norm spikes against a
/// running median of the last `window` norms.
#[derive(Clone, Debug)]
pub struct Monitor {
    window: usize,
    spike_ratio: f64,
    norms: Vec<f64>,
}

impl Monitor {
    /// A spike is a norm above `spike_ratio` × the median of the last `window` norms.
    pub fn new(window: usize, spike_ratio: f64) -> Self {
        Monitor {
            window: window.max(1),
            spike_ratio,
            norms: Vec::new(),
        }
    }

    /// Records one step. `layer_norms` (parameter name, gradient norm) names the worst
    /// parameter when the loss is not finite.
    pub fn observe(
        &mut self,
        step: u64,
        loss: f64,
        grad_norm: f64,
        layer_norms: &[(String, f64)],
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        if !loss.is_finite() {
            let worst = layer_norms
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(n, v)| (n.clone(), *v));
            out.push(Finding::NonFiniteLoss { step, loss, worst });
        }
        if self.norms.len() >= self.window.min(10) {
            let m = median(&self.norms);
            if m > 0.0 && grad_norm > self.spike_ratio * m {
                out.push(Finding::GradNormSpike {
                    step,
                    norm: grad_norm,
                    median: m,
                });
            }
        }
        self.norms.push(grad_norm);
        if self.norms.len() > self.window {
            self.norms.remove(0);
        }
        out
    }
}

/// What [`overfit_single_batch`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct OverfitReport {
    /// Whether the loss went below the target.
    pub reached: bool,
    /// The first loss.
    pub initial_loss: f64,
    /// The last (or first below-target) loss.
    pub final_loss: f64,
    /// Steps taken.
    pub steps: usize,
}

impl fmt::Display for OverfitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "overfit one batch: {} (loss {:.4} → {:.4} in {} steps)",
            if self.reached {
                "yes"
            } else {
                "NO: look for a bug before tuning"
            },
            self.initial_loss,
            self.final_loss,
            self.steps
        )
    }
}

/// The lesson's sanity check: can the model drive one fixed batch's loss below
/// `target`? `step` performs one optimizer step on that batch and returns its loss.
pub fn overfit_single_batch(
    mut step: impl FnMut() -> f64,
    max_steps: usize,
    target: f64,
) -> OverfitReport {
    let mut initial_loss = f64::NAN;
    let mut final_loss = f64::NAN;
    for k in 0..max_steps {
        let loss = step();
        if k == 0 {
            initial_loss = loss;
        }
        final_loss = loss;
        if loss < target {
            return OverfitReport {
                reached: true,
                initial_loss,
                final_loss,
                steps: k + 1,
            };
        }
        if !loss.is_finite() {
            break;
        }
    }
    OverfitReport {
        reached: false,
        initial_loss,
        final_loss,
        steps: max_steps,
    }
}
