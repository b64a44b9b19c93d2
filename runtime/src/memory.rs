//! Memory accounting: where training memory goes, versus inference.
//!
//! Training keeps, per parameter: the weight, its gradient, and the optimizer's state
//! (SGD 0 buffers, momentum 1, RMSProp 1, Adam/AdamW 2, Lion 1, AdaFactor `n + m` per
//! `n × m` matrix), plus the activations the forward pass saved for the backward pass
//! (a `#[grad]` tape reports its own byte count: pass it to
//! [`MemoryReport::with_activations`]). Inference keeps only the weights, often in a
//! 16-bit format. For `P` parameters with AdamW in `f32`:
//!
//! ```text
//! training  = 4P (weights) + 4P (grads) + 8P (m, v) = 16P bytes
//! inference = 2P bytes (bf16/f16 weights)
//! ```
//!
//! so for 7·10⁹ parameters, 112 GB against 14 GB (the lesson's central memory fact).
//!
//! ```
//! use backprop::memory::MemoryReport;
//! use backprop::optim::AdamW;
//! let r = MemoryReport::for_shapes(&[vec![7_000_000_000]], &AdamW::<f32>::default());
//! assert_eq!(r.training_bytes(), 112_000_000_000);
//! assert_eq!(r.inference_bytes(backprop::params::Dtype::Bf16), 14_000_000_000);
//! ```

use std::fmt;

use crate::optim::Optimizer;
use crate::params::{Dtype, Params, Real};

/// Bytes of training state for one set of parameters under one optimizer.
///
/// Counts are `u128` so that shapes of any model fit; GB are 10⁹ bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// Number of parameters (scalars).
    pub params: u128,
    /// Element type of weights, gradients and state during training.
    pub dtype: Dtype,
    /// Weight bytes.
    pub weights: u128,
    /// Gradient bytes (one gradient per weight, same dtype).
    pub grads: u128,
    /// Optimizer state bytes.
    pub optimizer_state: u128,
    /// Saved activations (the tape), if given.
    pub activations: u128,
}

impl MemoryReport {
    /// The report for parameters of these shapes under `opt`, with element type `F`,
    /// computed from the shapes alone (nothing is allocated: works for 7·10⁹ scalars).
    pub fn for_shapes<F: Real, O: Optimizer<F>>(shapes: &[Vec<usize>], opt: &O) -> Self {
        let params: u128 = shapes
            .iter()
            .map(|s| s.iter().map(|&d| d as u128).product::<u128>())
            .sum();
        let w = params * F::DTYPE.bytes() as u128;
        MemoryReport {
            params,
            dtype: F::DTYPE,
            weights: w,
            grads: w,
            optimizer_state: opt.state_bytes_for(shapes),
            activations: 0,
        }
    }

    /// The report for a live parameter set under `opt`.
    ///
    /// ```
    /// use backprop::{memory::MemoryReport, optim::Lion};
    /// let params = vec![("w", vec![0.0f32; 1000])];
    /// let r = MemoryReport::of(&params, &Lion::<f32>::new(Default::default()));
    /// assert_eq!((r.weights, r.grads, r.optimizer_state), (4000, 4000, 4000));
    /// ```
    pub fn of<F: Real, P: Params<F> + ?Sized, O: Optimizer<F>>(params: &P, opt: &O) -> Self {
        let shapes: Vec<Vec<usize>> = params.shapes().into_iter().map(|(_, s)| s).collect();
        Self::for_shapes(&shapes, opt)
    }

    /// Adds the bytes of saved activations (a tape's byte count).
    pub fn with_activations(mut self, bytes: u128) -> Self {
        self.activations = bytes;
        self
    }

    /// Weights + gradients + optimizer state + activations.
    pub fn training_bytes(&self) -> u128 {
        self.weights + self.grads + self.optimizer_state + self.activations
    }

    /// Weights only, stored as `dtype` (no gradients, no optimizer state, activations of
    /// one or two layers at a time, not counted).
    pub fn inference_bytes(&self, dtype: Dtype) -> u128 {
        self.params * dtype.bytes() as u128
    }
}

fn gb(b: u128) -> f64 {
    b as f64 / 1e9
}

/// A table in GB (10⁹ bytes): training components, then inference in f32 and bf16.
impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| component | GB |")?;
        writeln!(f, "|---|---:|")?;
        writeln!(
            f,
            "| weights ({:?}) | {:.1} |",
            self.dtype,
            gb(self.weights)
        )?;
        writeln!(f, "| gradients | {:.1} |", gb(self.grads))?;
        writeln!(f, "| optimizer state | {:.1} |", gb(self.optimizer_state))?;
        if self.activations > 0 {
            writeln!(f, "| activations (tape) | {:.1} |", gb(self.activations))?;
        }
        writeln!(
            f,
            "| **training total** | **{:.1}** |",
            gb(self.training_bytes())
        )?;
        writeln!(
            f,
            "| inference, f32 weights | {:.1} |",
            gb(self.inference_bytes(Dtype::F32))
        )?;
        write!(
            f,
            "| inference, bf16/f16 weights | {:.1} |",
            gb(self.inference_bytes(Dtype::Bf16))
        )
    }
}
