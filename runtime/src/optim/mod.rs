//! Optimizers: SGD (+ momentum, Nesterov), RMSProp, Adam, AdamW, Lion and AdaFactor
//! behind one trait, with parameter groups, a typed state dict and state byte counts.
//!
//! Every optimizer is a small part: a config struct with the paper's defaults, a
//! *layout* (which state buffers one parameter of a given shape needs) and a per-buffer
//! *update*. The [`Optimizer`] trait builds everything else from those once: state
//! allocation, the walk over parameters and gradients with shape checks, the
//! non-finite gradient policy, parameter groups, state bytes, save/load with validation.
//!
//! ```
//! use backprop::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Select};
//! // Two named buffers; the bias gets no weight decay (PyTorch's usual param groups).
//! let mut params = vec![("w", vec![1.0f64, -2.0]), ("b", vec![0.5])];
//! let grads = vec![("w", vec![0.1f64, 0.1]), ("b", vec![0.0])];
//! let mut opt = AdamW::new(AdamWConfig { lr: 0.1, ..Default::default() })
//!     .with_groups(vec![ParamGroup::new(Select::MaxNdim(1)).weight_decay(0.0)]);
//! opt.step(&mut params, &grads).unwrap();
//! // `b` had a zero gradient and no decay: it did not move.
//! assert_eq!(params[1].1, [0.5]);
//! assert_eq!(opt.state_bytes(), 2 * 3 * 8); // m and v for 3 f64 scalars
//! ```
//!
//! Conventions shared by all optimizers:
//! - **Steps are counted from 1**: the first call to `step` uses `t = 1` (bias
//!   corrections 1 − βᵗ are then nonzero).
//! - **Learning rate**: `set_lr` is how a [`crate::schedule::Schedule`] drives the
//!   optimizer (`opt.set_lr(sched.lr(step))` before each step); a group's `lr_scale`
//!   multiplies it.
//! - **Weight decay** `λ` is *decoupled* (`w ← w − lr·λ·w`, PyTorch's convention, where
//!   the decay follows the schedule) for AdamW, Lion and AdaFactor, and *coupled L2*
//!   (`g ← g + λ·w` before the update) for SGD, RMSProp and Adam, as in PyTorch.
//! - **Non-finite gradients** (NaN, ±∞): [`Optimizer::step`] returns
//!   [`OptimError::NonFiniteGradient`] and leaves parameters and state untouched;
//!   [`Optimizer::step_with`] with [`NonFinite::Skip`] instead skips the step and reports
//!   it (optax's `apply_if_finite`). State is never updated from a non-finite gradient.
//!   Both scan every gradient value first, one more read of the gradients per step. A
//!   loop that clips has read them already: [`crate::clip::clip_grad_norm_finite`]
//!   returns a [`Finite`] proof with the norm, and [`Optimizer::step_finite`] takes it
//!   instead of scanning again (the same step at the cost of PyTorch's fused one, which
//!   checks nothing; docs/PERFORMANCE.md).

mod adafactor;
mod adam;
mod lion;
mod rmsprop;
mod sgd;

pub use adafactor::{AdaFactor, AdaFactorConfig};
pub use adam::{Adam, AdamConfig, AdamW, AdamWConfig};
pub use lion::{Lion, LionConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use std::fmt;

use crate::params::{Dtype, Params, Real, join_name};

/// What a step does when a gradient holds NaN or ±∞.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// Return [`OptimError::NonFiniteGradient`]; nothing is modified.
    Error,
    /// Skip the step (parameters, state and step counter unchanged) and return
    /// [`StepOutcome::Skipped`], as optax's `apply_if_finite`.
    Skip,
}

/// A gradient set checked to hold only finite values, borrowed for as long as the proof
/// lives (so it cannot change in between). [`Optimizer::step_finite`] takes it and skips
/// its own scan of the gradients: one read of every gradient value fewer per step (at
/// 100M `f32` parameters the scan is a fifth of an AdamW step, see docs/PERFORMANCE.md).
///
/// Made only by code that has read every value: [`Finite::check`] (the same scan a
/// step does), or [`crate::clip::clip_grad_norm_finite`], whose global norm is finite
/// exactly when every value is. A NaN or ±∞ anywhere makes the `f64` sum of squares NaN
/// or ∞; `f32` squares (each below 1.2·10⁷⁷) cannot overflow an `f64` sum. For `f64`
/// gradients the sum can overflow with every value finite: then no proof is made, which
/// is conservative, never wrong.
///
/// ```
/// use backprop::optim::{AdamW, AdamWConfig, Finite, Optimizer};
/// let mut w = vec![1.0f32, -2.0];
/// let g = vec![0.5f32, 0.25];
/// let mut opt = AdamW::<f32>::new(AdamWConfig::default());
/// let checked = Finite::check(&g).expect("finite gradients");
/// opt.step_finite(&mut w, checked).unwrap();
/// assert!(w[0] < 1.0 && w[1] < -2.0 + 1e-3);
/// assert!(Finite::check(&vec![f32::NAN]).is_none());
/// ```
#[derive(Debug)]
pub struct Finite<'g, P: ?Sized> {
    grads: &'g P,
}

impl<'g, P: ?Sized> Clone for Finite<'g, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<'g, P: ?Sized> Copy for Finite<'g, P> {}

impl<'g, P: ?Sized> Finite<'g, P> {
    /// Scans every value of `grads`; `Some` if all are finite.
    pub fn check<F: Real>(grads: &'g P) -> Option<Self>
    where
        P: Params<F>,
    {
        let all_finite = grads.buffers().iter().all(|g| !F::any_non_finite(g.values));
        all_finite.then_some(Finite { grads })
    }

    /// For the crate's own checks that have read every value (clipping's norm).
    pub(crate) fn checked_by_caller(grads: &'g P) -> Self {
        Finite { grads }
    }

    /// The checked gradients.
    pub fn grads(&self) -> &'g P {
        self.grads
    }
}

/// What a step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The update was applied; `t` is the step number it used (1-based).
    Applied {
        /// The step number just taken.
        t: u64,
    },
    /// The step was skipped because of a non-finite gradient.
    Skipped {
        /// Name of the first buffer with a non-finite gradient.
        name: String,
        /// Flat index of the first non-finite value in it.
        index: usize,
    },
}

/// Errors of the fallible optimizer API; every message names both sides of a mismatch.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimError {
    /// A hyper-parameter out of its range (a NaN learning rate from a schedule, `β₂ = 1`,
    /// a negative weight decay): the step would write NaN into every weight.
    InvalidHyperParameter {
        /// Its name (`"lr"`, `"beta2"`, ..).
        name: String,
        /// Its value.
        value: f64,
        /// The range it must be in, in words.
        want: &'static str,
    },
    /// The step counter is `u64::MAX` and cannot be incremented: a saved state that
    /// says so is rejected on load, and a step from it is refused.
    StepOverflow {
        /// The step counter.
        step: u64,
    },
    /// Two sets have different numbers of buffers.
    BufferCount {
        /// What was compared (`"gradients"`, `"saved state"`, ...).
        what: &'static str,
        /// The number the parameters call for.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// A buffer's shape (or name) differs from the one expected.
    ShapeMismatch {
        /// What was compared.
        what: &'static str,
        /// Name of the expected buffer.
        expected_name: String,
        /// Its shape.
        expected_shape: Vec<usize>,
        /// Name of the buffer found.
        found_name: String,
        /// Its shape.
        found_shape: Vec<usize>,
    },
    /// A gradient holds NaN or ±∞ (policy [`NonFinite::Error`]).
    NonFiniteGradient {
        /// Buffer name.
        name: String,
        /// Flat index of the first non-finite value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Saved state belongs to another optimizer.
    WrongOptimizer {
        /// This optimizer's name.
        expected: String,
        /// The name in the state.
        found: String,
    },
    /// Saved bytes do not start with the state file's magic (`BPOPTSD` + version).
    BadMagic {
        /// Up to the first 8 bytes found.
        found: Vec<u8>,
    },
    /// Saved bytes are a state file of another format version.
    UnsupportedVersion {
        /// The version byte found (`b'1'` for the unchecksummed first format).
        found: u8,
        /// The version this build reads and writes ([`STATE_FORMAT_VERSION`]).
        supported: u8,
    },
    /// Saved bytes are shorter than their header says (or than the header itself).
    Truncated {
        /// Bytes the header promises (header included).
        expected: u64,
        /// Bytes present.
        found: usize,
    },
    /// Saved bytes go on past the length their header gives.
    TrailingBytes {
        /// Bytes the header promises (header included).
        expected: u64,
        /// Bytes present.
        found: usize,
    },
    /// The payload's CRC-32 differs from the one stored: the bytes were changed.
    ChecksumMismatch {
        /// The CRC-32 in the header.
        stored: u32,
        /// The CRC-32 of the payload as found.
        computed: u32,
    },
    /// Saved state of one element type loaded as another.
    DtypeMismatch {
        /// The type loading it (`"f32"`, `"f64"`).
        expected: &'static str,
        /// The type in the bytes.
        found: &'static str,
    },
    /// A saved state buffer holds a different number of values than its shape.
    ValueCount {
        /// Buffer name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Values present.
        found: usize,
    },
    /// A saved state buffer holds NaN or ±∞.
    NonFiniteState {
        /// Buffer name.
        name: String,
        /// Flat index of the first non-finite value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A saved second moment (a running mean of squares) is negative.
    NegativeState {
        /// Buffer name.
        name: String,
        /// Flat index of the first negative value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Saved bytes pass the checksum but cannot be decoded (invalid UTF-8, a dtype
    /// byte that is neither 0 nor 1, a payload whose parts overrun its length): written
    /// by something other than [`StateDict::to_bytes`].
    Malformed(String),
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptimError::BufferCount {
                what,
                expected,
                found,
            } => {
                let per = if *what == "gradients" {
                    " (one per parameter buffer)"
                } else {
                    ""
                };
                write!(f, "{what}: expected {expected} buffers{per}, found {found}")
            }
            OptimError::ShapeMismatch {
                what,
                expected_name,
                expected_shape,
                found_name,
                found_shape,
            } => write!(
                f,
                "{what}: expected `{expected_name}` with shape {expected_shape:?}, found `{found_name}` with shape {found_shape:?}"
            ),
            OptimError::NonFiniteGradient { name, index, value } => {
                write!(
                    f,
                    "non-finite gradient {value} in `{name}` at flat index {index}; parameters and state unchanged"
                )
            }
            OptimError::WrongOptimizer { expected, found } => {
                write!(
                    f,
                    "saved state is for optimizer `{found}`, this optimizer is `{expected}`"
                )
            }
            OptimError::InvalidHyperParameter { name, value, want } => write!(
                f,
                "hyper-parameter `{name}` is {value}; it must be {want}; parameters and state unchanged"
            ),
            OptimError::StepOverflow { step } => write!(
                f,
                "step counter {step} cannot be incremented (the next step would overflow u64); state unchanged"
            ),
            OptimError::BadMagic { found } => write!(
                f,
                "not a saved state dict: the bytes start with \"{}\", expected \"{}\"",
                found.escape_ascii(),
                MAGIC.escape_ascii()
            ),
            OptimError::UnsupportedVersion { found, supported } => write!(
                f,
                "saved state format version {}, this build reads version {}",
                char::from(*found).escape_default(),
                char::from(*supported)
            ),
            OptimError::Truncated { expected, found } => write!(
                f,
                "saved state truncated: the header promises {expected} bytes, found {found}"
            ),
            OptimError::TrailingBytes { expected, found } => write!(
                f,
                "saved state has trailing bytes: the header promises {expected} bytes, found {found}"
            ),
            OptimError::ChecksumMismatch { stored, computed } => write!(
                f,
                "saved state corrupt: the payload's CRC-32 is 0x{computed:08x}, the header says 0x{stored:08x}"
            ),
            OptimError::DtypeMismatch { expected, found } => {
                write!(f, "saved state holds {found}, loading as {expected}")
            }
            OptimError::ValueCount { name, shape, found } => write!(
                f,
                "saved state `{name}` has shape {shape:?} ({} values) but {found} values",
                shape.iter().product::<usize>()
            ),
            OptimError::NonFiniteState { name, index, value } => write!(
                f,
                "saved state `{name}` holds non-finite {value} at flat index {index}; state unchanged"
            ),
            OptimError::NegativeState { name, index, value } => write!(
                f,
                "saved state `{name}` is a second moment (a mean of squares) but holds {value} at flat index {index}; state unchanged"
            ),
            OptimError::Malformed(why) => write!(f, "malformed saved state bytes: {why}"),
        }
    }
}

impl std::error::Error for OptimError {}

/// Which buffers a [`ParamGroup`] applies to (matched on the buffer's name and shape).
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    /// Every buffer.
    All,
    /// Buffers with exactly these names.
    Names(Vec<String>),
    /// Names starting with this prefix (`"encoder."`).
    Prefix(String),
    /// Names ending with this suffix (`".bias"`).
    Suffix(String),
    /// Buffers of at most this many dimensions: `MaxNdim(1)` picks biases and norm
    /// scales, the usual "no weight decay" set (nanoGPT's `dim < 2` rule).
    MaxNdim(usize),
}

impl Select {
    /// Whether a buffer with this name and shape is selected.
    pub fn matches(&self, name: &str, shape: &[usize]) -> bool {
        match self {
            Select::All => true,
            Select::Names(ns) => ns.iter().any(|n| n == name),
            Select::Prefix(p) => name.starts_with(p.as_str()),
            Select::Suffix(s) => name.ends_with(s.as_str()),
            Select::MaxNdim(d) => shape.len() <= *d,
        }
    }
}

/// Per-group overrides, as PyTorch's param groups and optax's `multi_transform`: a
/// buffer takes the first group whose [`Select`] matches it, else the optimizer's
/// defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// Which buffers.
    pub select: Select,
    /// Multiplies the optimizer's (scheduled) learning rate for these buffers.
    pub lr_scale: f64,
    /// Replaces the optimizer's weight decay for these buffers (`Some(0.0)`: none).
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with no overrides yet.
    pub fn new(select: Select) -> Self {
        ParamGroup {
            select,
            lr_scale: 1.0,
            weight_decay: None,
        }
    }
    /// Sets the learning-rate multiplier.
    pub fn lr_scale(mut self, s: f64) -> Self {
        self.lr_scale = s;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = Some(wd);
        self
    }
}

/// What an optimizer's per-buffer update sees besides the values.
#[derive(Clone, Copy, Debug)]
pub struct BufferCtx<'s> {
    /// The step number, from 1.
    pub t: u64,
    /// Learning rate for this buffer (optimizer lr × group `lr_scale`).
    pub lr: f64,
    /// The group's `lr_scale` (AdaFactor scales its relative step with it).
    pub lr_scale: f64,
    /// Weight decay for this buffer (group override or optimizer default).
    pub weight_decay: f64,
    /// The buffer's logical shape.
    pub shape: &'s [usize],
}

/// One state buffer an optimizer keeps for a parameter: its suffix (`"m"`), shape, and
/// whether its values are never negative (checked when a saved state is loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSpec {
    /// Suffix appended to the parameter's name in the state dict (`"w.m"`).
    pub suffix: &'static str,
    /// Shape of the buffer.
    pub shape: Vec<usize>,
    /// The values are never negative (second moments: running means of squares).
    pub non_negative: bool,
}

impl StateSpec {
    /// A state buffer named `suffix` of `shape`, of any sign (a momentum).
    pub fn new(suffix: &'static str, shape: &[usize]) -> Self {
        StateSpec {
            suffix,
            shape: shape.to_vec(),
            non_negative: false,
        }
    }
    /// A state buffer that is never negative (a second moment): loading a saved state
    /// with a negative value in it is [`OptimError::NegativeState`].
    pub fn second_moment(suffix: &'static str, shape: &[usize]) -> Self {
        StateSpec {
            non_negative: true,
            ..StateSpec::new(suffix, shape)
        }
    }
}

/// The live state of an optimizer: the step counter and, per parameter buffer, its
/// state buffers in layout order. Allocated once (on `init` or the first step) and
/// reused by every step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptState<F> {
    t: u64,
    /// `None` until initialised.
    params: Option<Vec<ParamSlot<F>>>,
}

#[derive(Clone, Debug, PartialEq)]
struct ParamSlot<F> {
    name: String,
    shape: Vec<usize>,
    group: Option<usize>,
    specs: Vec<StateSpec>,
    bufs: Vec<Vec<F>>,
}

impl<F> OptState<F> {
    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.t
    }
}

/// A saved optimizer state: named buffers, step counter and hyper-parameters.
///
/// Buffer names are the parameter's name and the state's suffix (`"w.m"`, `"w.v"`); the
/// order is the parameters' walk order, then layout order.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDict<F> {
    /// [`Optimizer::NAME`] of the optimizer that saved it.
    pub optimizer: String,
    /// Steps taken.
    pub step: u64,
    /// Hyper-parameters at save time, for the record (loading does not apply them: the
    /// configuration lives in code, as in optax).
    pub hyper: Vec<(String, f64)>,
    /// The state buffers.
    pub buffers: Vec<StateBuffer<F>>,
}

/// One named state buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct StateBuffer<F> {
    /// `"<param name>.<suffix>"`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub values: Vec<F>,
}

/// The format version [`StateDict::to_bytes`] writes and [`StateDict::from_bytes`]
/// reads: 2 (version 1 had no length or checksum and is refused).
pub const STATE_FORMAT_VERSION: u8 = b'2' - b'0';
const MAGIC: &[u8; 8] = b"BPOPTSD2";
/// Magic (8), payload length (8), CRC-32 (4).
const HEADER_LEN: usize = 20;

impl<F: Real> StateDict<F> {
    /// Encodes as little-endian bytes: a header that fixes the length and checksums the
    /// rest, then the payload.
    ///
    /// ```text
    /// b"BPOPTSD2"  u64 payload length  u32 CRC-32 (IEEE) of the payload
    /// payload:
    /// u8 dtype (0 = f32, 1 = f64)  str optimizer  u64 step
    /// u32 n_hyper   { str name  f64 value } × n_hyper
    /// u32 n_buffers { str name  u32 ndim  u64 dim × ndim  F value × Π dims } × n_buffers
    /// str = u32 byte length + UTF-8 bytes
    /// ```
    ///
    /// The last byte of the magic is the format version ([`STATE_FORMAT_VERSION`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.push(match F::DTYPE {
            Dtype::F64 => 1,
            _ => 0,
        });
        put_str(&mut payload, &self.optimizer);
        payload.extend_from_slice(&self.step.to_le_bytes());
        payload.extend_from_slice(&(self.hyper.len() as u32).to_le_bytes());
        for (k, v) in &self.hyper {
            put_str(&mut payload, k);
            payload.extend_from_slice(&v.to_le_bytes());
        }
        payload.extend_from_slice(&(self.buffers.len() as u32).to_le_bytes());
        for b in &self.buffers {
            put_str(&mut payload, &b.name);
            payload.extend_from_slice(&(b.shape.len() as u32).to_le_bytes());
            for &d in &b.shape {
                payload.extend_from_slice(&(d as u64).to_le_bytes());
            }
            for &x in &b.values {
                x.write_le(&mut payload);
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes [`StateDict::to_bytes`] output, checking the header first: the magic and
    /// version, the length (no fewer and no more bytes), then the payload's CRC-32, so
    /// any change to the bytes that keeps their length is caught before decoding. The
    /// values themselves are checked by [`Optimizer::load_state_dict`].
    ///
    /// # Errors
    /// [`OptimError::BadMagic`] (not a state file), [`OptimError::UnsupportedVersion`],
    /// [`OptimError::Truncated`] / [`OptimError::TrailingBytes`] (the header's length
    /// and the bytes' disagree), [`OptimError::ChecksumMismatch`],
    /// [`OptimError::DtypeMismatch`] (saved as the other of `f32`/`f64`), and
    /// [`OptimError::Malformed`] for a payload that passes the checksum but does not
    /// decode (not written by [`StateDict::to_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OptimError> {
        let lead = &bytes[..bytes.len().min(8)];
        if lead != &MAGIC[..lead.len()] {
            let version_only = lead.len() == 8 && lead[..7] == MAGIC[..7];
            return Err(if version_only {
                OptimError::UnsupportedVersion {
                    found: lead[7],
                    supported: MAGIC[7],
                }
            } else {
                OptimError::BadMagic {
                    found: lead.to_vec(),
                }
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(OptimError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len(),
            });
        }
        let payload_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let expected = payload_len.saturating_add(HEADER_LEN as u64);
        match (bytes.len() as u64).cmp(&expected) {
            std::cmp::Ordering::Less => {
                return Err(OptimError::Truncated {
                    expected,
                    found: bytes.len(),
                });
            }
            std::cmp::Ordering::Greater => {
                return Err(OptimError::TrailingBytes {
                    expected,
                    found: bytes.len(),
                });
            }
            std::cmp::Ordering::Equal => {}
        }
        let stored = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let payload = &bytes[HEADER_LEN..];
        let computed = crc32fast::hash(payload);
        if computed != stored {
            return Err(OptimError::ChecksumMismatch { stored, computed });
        }
        let mut r = Reader { b: payload, at: 0 };
        let want = match F::DTYPE {
            Dtype::F64 => 1,
            _ => 0,
        };
        let name = |d: u8| if d == 1 { "f64" } else { "f32" };
        match r.take(1)?[0] {
            dt if dt == want => {}
            dt @ (0 | 1) => {
                return Err(OptimError::DtypeMismatch {
                    expected: name(want),
                    found: name(dt),
                });
            }
            dt => return Err(OptimError::Malformed(format!("dtype byte {dt}"))),
        }
        let optimizer = r.str()?;
        let step = r.u64()?;
        let n_hyper = r.u32()?;
        let mut hyper = Vec::new();
        for _ in 0..n_hyper {
            let k = r.str()?;
            let v = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            hyper.push((k, v));
        }
        let n_buf = r.u32()?;
        let mut buffers = Vec::new();
        for _ in 0..n_buf {
            let name = r.str()?;
            let ndim = r.u32()? as usize;
            let mut shape = Vec::with_capacity(ndim.min(16));
            for _ in 0..ndim {
                shape.push(
                    usize::try_from(r.u64()?)
                        .map_err(|_| OptimError::Malformed("dimension overflows usize".into()))?,
                );
            }
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| OptimError::Malformed(format!("shape {shape:?} overflows")))?;
            let w = F::DTYPE.bytes();
            let raw = r.take(
                count
                    .checked_mul(w)
                    .ok_or_else(|| OptimError::Malformed("size overflows".into()))?,
            )?;
            let values = raw.chunks_exact(w).map(F::read_le).collect();
            buffers.push(StateBuffer {
                name,
                shape,
                values,
            });
        }
        if r.at != payload.len() {
            return Err(OptimError::Malformed(format!(
                "{} bytes left over after the last buffer",
                payload.len() - r.at
            )));
        }
        Ok(StateDict {
            optimizer,
            step,
            hyper,
            buffers,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], OptimError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| {
            OptimError::Malformed(format!("truncated at byte {} (wanted {n} more)", self.at))
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, OptimError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, OptimError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self) -> Result<String, OptimError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| OptimError::Malformed("invalid UTF-8 in a name".into()))
    }
}

/// An optimizer over any [`Params`] set of element type `F`.
///
/// Implementors give the five small parts (name, hyper-parameters, learning rate,
/// [`Optimizer::state_layout`], [`Optimizer::update`]) and access to their
/// [`OptState`]; the provided methods do the rest, identically for every optimizer.
/// The gradient set has the same type as the parameter set (the `#[grad]` convention).
pub trait Optimizer<F: Real> {
    /// Name stored in saved state (`"adamw"`).
    const NAME: &'static str;

    /// The base learning rate (before group scaling).
    fn lr(&self) -> f64;
    /// Sets the base learning rate; call it each step from a schedule.
    fn set_lr(&mut self, lr: f64);
    /// The default weight decay (decoupled or L2, see the module docs).
    fn weight_decay(&self) -> f64;
    /// The parameter groups, first match wins.
    fn groups(&self) -> &[ParamGroup];
    /// Hyper-parameters by name, for the state dict.
    fn hyper_params(&self) -> Vec<(String, f64)>;
    /// The state buffers one parameter of `shape` needs (empty for plain SGD).
    fn state_layout(&self, shape: &[usize]) -> Vec<StateSpec>;
    /// Updates one parameter buffer in place from its gradient and its state buffers
    /// (in layout order). Shapes are already checked; `g` is finite.
    fn update(&self, ctx: &BufferCtx<'_>, w: &mut [F], g: &[F], state: &mut [Vec<F>]);
    /// The live state.
    fn state(&self) -> &OptState<F>;
    /// The live state, mutably.
    fn state_mut(&mut self) -> &mut OptState<F>;

    /// Allocates zeroed state for `params` (done by the first step if not called) and
    /// resets the step counter.
    fn init<P: Params<F> + ?Sized>(&mut self, params: &P) {
        let slots = fresh_slots(self, params);
        *self.state_mut() = OptState {
            t: 0,
            params: Some(slots),
        };
    }

    /// One step, erroring on a non-finite gradient: `step_with(.., NonFinite::Error)`.
    ///
    /// # Errors
    /// As [`Optimizer::step_with`].
    fn step<P: Params<F> + ?Sized>(
        &mut self,
        params: &mut P,
        grads: &P,
    ) -> Result<StepOutcome, OptimError> {
        self.step_with(params, grads, NonFinite::Error)
    }

    /// One step over every buffer: checks that `grads` matches `params` (and the state,
    /// if initialised) buffer by buffer, applies the non-finite policy, then updates.
    ///
    /// # Errors
    /// [`OptimError::BufferCount`] / [`OptimError::ShapeMismatch`] naming both sides when
    /// the gradients or the state do not match the parameters;
    /// [`OptimError::NonFiniteGradient`] under [`NonFinite::Error`];
    /// [`OptimError::StepOverflow`] when the step counter is already `u64::MAX`;
    /// [`OptimError::InvalidHyperParameter`] for a NaN or negative learning rate, a
    /// decay outside `[0, 1)` and the like. On any error nothing is modified.
    fn step_with<P: Params<F> + ?Sized>(
        &mut self,
        params: &mut P,
        grads: &P,
        policy: NonFinite,
    ) -> Result<StepOutcome, OptimError> {
        step_checked(self, params, grads, Some(policy))
    }

    /// One step from gradients already checked to be finite: as [`Optimizer::step`],
    /// without its scan of every gradient value (the proof says it was done).
    ///
    /// # Errors
    /// [`OptimError::BufferCount`] / [`OptimError::ShapeMismatch`] as
    /// [`Optimizer::step_with`], and [`OptimError::StepOverflow`]; never
    /// [`OptimError::NonFiniteGradient`].
    fn step_finite<P: Params<F> + ?Sized>(
        &mut self,
        params: &mut P,
        grads: Finite<'_, P>,
    ) -> Result<StepOutcome, OptimError>
    where
        Self: Sized,
    {
        step_checked(self, params, grads.grads, None)
    }

    /// Bytes of live optimizer state (0 before the state is allocated).
    fn state_bytes(&self) -> usize {
        let slots = self.state().params.as_deref().unwrap_or(&[]);
        slots
            .iter()
            .flat_map(|s| &s.bufs)
            .map(|b| b.len() * F::DTYPE.bytes())
            .sum()
    }

    /// Bytes of state this optimizer would keep for parameters of these shapes, without
    /// allocating (the memory accounting of [`crate::memory`]).
    fn state_bytes_for(&self, shapes: &[Vec<usize>]) -> u128 {
        let scalars: u128 = shapes
            .iter()
            .flat_map(|s| self.state_layout(s))
            .map(|spec| spec.shape.iter().map(|&d| d as u128).product::<u128>())
            .sum();
        scalars * F::DTYPE.bytes() as u128
    }

    /// A copy of the state: step counter, hyper-parameters and named buffers.
    fn state_dict(&self) -> StateDict<F> {
        let slots = self.state().params.as_deref().unwrap_or(&[]);
        let buffers = slots
            .iter()
            .flat_map(|s| {
                s.specs.iter().zip(&s.bufs).map(|(spec, b)| StateBuffer {
                    name: join_name(&s.name, spec.suffix),
                    shape: spec.shape.clone(),
                    values: b.clone(),
                })
            })
            .collect();
        StateDict {
            optimizer: Self::NAME.to_string(),
            step: self.state().t,
            hyper: self.hyper_params(),
            buffers,
        }
    }

    /// Replaces the state with `sd`, after checking it against `params` (optimizer name,
    /// number of state buffers, each buffer's name, shape and number of values) and
    /// checking its values: a step counter below `u64::MAX` (the next step increments
    /// it), finite values, and no negative second moment. The new state is built and
    /// checked aside and swapped in only when all of it passes.
    ///
    /// # Errors
    /// [`OptimError::WrongOptimizer`], [`OptimError::StepOverflow`],
    /// [`OptimError::BufferCount`] (both counts), [`OptimError::ShapeMismatch`] (both
    /// names and shapes), [`OptimError::ValueCount`], [`OptimError::NonFiniteState`],
    /// [`OptimError::NegativeState`] (each naming the buffer and the flat index). On
    /// every error the current state is kept as it was.
    fn load_state_dict<P: Params<F> + ?Sized>(
        &mut self,
        params: &P,
        sd: &StateDict<F>,
    ) -> Result<(), OptimError> {
        if sd.optimizer != Self::NAME {
            return Err(OptimError::WrongOptimizer {
                expected: Self::NAME.into(),
                found: sd.optimizer.clone(),
            });
        }
        if sd.step == u64::MAX {
            return Err(OptimError::StepOverflow { step: sd.step });
        }
        // Saved before the first step (no state allocated yet): a fresh optimizer, as
        // PyTorch's empty `state` loads.
        if sd.step == 0 && sd.buffers.is_empty() {
            *self.state_mut() = OptState { t: 0, params: None };
            return Ok(());
        }
        let mut fresh = fresh_slots(self, params);
        let expected: Vec<(String, Vec<usize>)> = fresh
            .iter()
            .flat_map(|s| {
                s.specs
                    .iter()
                    .map(|sp| (join_name(&s.name, sp.suffix), sp.shape.clone()))
            })
            .collect();
        check_pair(
            "saved state",
            expected.iter().map(|(n, s)| (n, s)),
            sd.buffers.iter().map(|b| (&b.name, &b.shape)),
        )?;
        let mut it = sd.buffers.iter();
        for slot in &mut fresh {
            for (buf, spec) in slot.bufs.iter_mut().zip(&slot.specs) {
                let saved = it.next().expect("counts checked");
                if saved.values.len() != buf.len() {
                    return Err(OptimError::ValueCount {
                        name: saved.name.clone(),
                        shape: spec.shape.clone(),
                        found: saved.values.len(),
                    });
                }
                if F::any_non_finite(&saved.values) {
                    let index = saved
                        .values
                        .iter()
                        .position(|x| !x.is_finite())
                        .expect("a non-finite value");
                    return Err(OptimError::NonFiniteState {
                        name: saved.name.clone(),
                        index,
                        value: saved.values[index].f64(),
                    });
                }
                if spec.non_negative
                    && let Some(index) = saved.values.iter().position(|x| x.f64() < 0.0)
                {
                    return Err(OptimError::NegativeState {
                        name: saved.name.clone(),
                        index,
                        value: saved.values[index].f64(),
                    });
                }
                buf.copy_from_slice(&saved.values);
            }
        }
        *self.state_mut() = OptState {
            t: sd.step,
            params: Some(fresh),
        };
        Ok(())
    }
}

/// Zeroed state for `params` under `opt`'s layout and groups.
fn fresh_slots<F: Real, O: Optimizer<F> + ?Sized, P: Params<F> + ?Sized>(
    opt: &O,
    params: &P,
) -> Vec<ParamSlot<F>> {
    params
        .buffers()
        .into_iter()
        .map(|b| {
            let specs = opt.state_layout(&b.shape);
            let bufs = specs
                .iter()
                .map(|s| vec![F::zero(); s.shape.iter().product()])
                .collect();
            let group = opt
                .groups()
                .iter()
                .position(|g| g.select.matches(&b.name, &b.shape));
            ParamSlot {
                name: b.name,
                shape: b.shape,
                group,
                specs,
                bufs,
            }
        })
        .collect()
}

/// Checks two walks agree in count, and per position in shape, naming both on mismatch.
fn check_pair<'x>(
    what: &'static str,
    expected: impl ExactSizeIterator<Item = (&'x String, &'x Vec<usize>)>,
    found: impl ExactSizeIterator<Item = (&'x String, &'x Vec<usize>)>,
) -> Result<(), OptimError> {
    if expected.len() != found.len() {
        return Err(OptimError::BufferCount {
            what,
            expected: expected.len(),
            found: found.len(),
        });
    }
    for ((en, es), (fnm, fs)) in expected.zip(found) {
        if es != fs || en != fnm {
            return Err(OptimError::ShapeMismatch {
                what,
                expected_name: en.clone(),
                expected_shape: es.clone(),
                found_name: fnm.clone(),
                found_shape: fs.clone(),
            });
        }
    }
    Ok(())
}

/// The shared "optimizer plumbing" impl: every optimizer struct has `cfg`, `groups` and
/// `state` fields, and `cfg.lr` / `cfg.weight_decay`.
macro_rules! plumbing {
    () => {
        fn groups(&self) -> &[$crate::optim::ParamGroup] {
            &self.groups
        }
        fn state(&self) -> &$crate::optim::OptState<F> {
            &self.state
        }
        fn state_mut(&mut self) -> &mut $crate::optim::OptState<F> {
            &mut self.state
        }
    };
}
pub(crate) use plumbing;

/// `lr`, `set_lr` and `weight_decay` for a config with plain `lr` and `weight_decay`
/// fields (every optimizer but AdaFactor, whose lr is optional).
macro_rules! lr_plumbing {
    () => {
        fn lr(&self) -> f64 {
            self.cfg.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.cfg.lr = lr;
        }
        fn weight_decay(&self) -> f64 {
            self.cfg.weight_decay
        }
    };
}
pub(crate) use lr_plumbing;

/// `new(cfg)` and `with_groups(groups)` for an optimizer struct with fields `cfg`,
/// `groups` and `state`.
macro_rules! constructors {
    ($ty:ident, $cfg:ty) => {
        impl<F: Real> $ty<F> {
            /// An optimizer with this configuration and no parameter groups.
            pub fn new(cfg: $cfg) -> Self {
                $ty {
                    cfg,
                    groups: Vec::new(),
                    state: OptState::default(),
                }
            }
            /// Sets the parameter groups (first match wins).
            pub fn with_groups(mut self, groups: Vec<ParamGroup>) -> Self {
                self.groups = groups;
                self
            }
        }
    };
}
pub(crate) use constructors;

/// The ranges PyTorch's optimizers check at construction, checked here at each step
/// (a learning rate may come from a schedule): a finite `lr ≥ 0`, `0 ≤ β < 1` for the
/// moment decays, finite `eps ≥ 0` and `weight_decay ≥ 0`, `0 ≤ alpha ≤ 1`.
fn check_hyper_params(hyper: &[(String, f64)]) -> Result<(), OptimError> {
    for (name, value) in hyper {
        let v = *value;
        let (ok, want) = match name.as_str() {
            "lr" => (v.is_finite() && v >= 0.0, "finite and ≥ 0"),
            "beta1" | "beta2" | "momentum" => ((0.0..1.0).contains(&v), "in [0, 1)"),
            "alpha" => ((0.0..=1.0).contains(&v), "in [0, 1]"),
            "eps" | "eps1" | "eps2" | "weight_decay" => {
                (v.is_finite() && v >= 0.0, "finite and ≥ 0")
            }
            _ => (!v.is_nan(), "a number"),
        };
        if !ok {
            return Err(OptimError::InvalidHyperParameter {
                name: name.clone(),
                value: v,
                want,
            });
        }
    }
    Ok(())
}

/// The shared step: shape checks, the non-finite policy (`None`: the caller proved the
/// gradients finite), then every buffer's update.
fn step_checked<F: Real, O: Optimizer<F> + ?Sized, P: Params<F> + ?Sized>(
    opt: &mut O,
    params: &mut P,
    grads: &P,
    policy: Option<NonFinite>,
) -> Result<StepOutcome, OptimError> {
    check_hyper_params(&opt.hyper_params())?;
    let gs = grads.buffers();

    {
        // The mutable walk: it makes a column-major parameter (`w.t().to_owned()`)
        // row-major, as `Params` promises, where the read-only walk would refuse it.
        let ps = params.buffers_mut();
        check_pair(
            "gradients",
            ps.iter().map(|w| (&w.name, &w.shape)),
            gs.iter().map(|g| (&g.name, &g.shape)),
        )?;
    }
    if opt.state().params.is_none() {
        opt.init(&*params);
    }
    let mut ws = params.buffers_mut();
    let slots = opt.state().params.as_ref().expect("initialised above");
    check_pair(
        "optimizer state",
        slots.iter().map(|s| (&s.name, &s.shape)),
        ws.iter().map(|w| (&w.name, &w.shape)),
    )?;
    for g in gs.iter().filter(|_| policy.is_some()) {
        // PERF: a vectorised (and, for large f32 buffers, threaded) yes/no first; the
        // index search only on a hit.
        if F::any_non_finite(g.values) {
            let index = g
                .values
                .iter()
                .position(|x| !x.is_finite())
                .expect("a non-finite value");
            return match policy.expect("only scanned under a policy") {
                NonFinite::Skip => Ok(StepOutcome::Skipped {
                    name: g.name.clone(),
                    index,
                }),
                NonFinite::Error => Err(OptimError::NonFiniteGradient {
                    name: g.name.clone(),
                    index,
                    value: g.values[index].f64(),
                }),
            };
        }
    }
    let t = opt
        .state()
        .t
        .checked_add(1)
        .ok_or(OptimError::StepOverflow {
            step: opt.state().t,
        })?;
    let mut state = std::mem::take(opt.state_mut());
    state.t = t;
    let (lr, wd) = (opt.lr(), opt.weight_decay());
    for ((w, g), slot) in ws
        .iter_mut()
        .zip(&gs)
        .zip(state.params.as_mut().expect("initialised"))
    {
        let group = slot.group.map(|i| &opt.groups()[i]);
        let lr_scale = group.map_or(1.0, |g| g.lr_scale);
        let ctx = BufferCtx {
            t,
            lr: lr * lr_scale,
            lr_scale,
            weight_decay: group.and_then(|g| g.weight_decay).unwrap_or(wd),
            shape: &w.shape,
        };
        opt.update(&ctx, &mut *w.values, g.values, &mut slot.bufs);
    }
    *opt.state_mut() = state;
    Ok(StepOutcome::Applied { t })
}
