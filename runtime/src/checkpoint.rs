//! Saving and restoring training: a model's weights as a [`StateDict`] (PyTorch's
//! `model.state_dict()` / `load_state_dict`), and a checkpoint file holding the weights
//! and an optimizer's state together.
//!
//! Loading is all-or-nothing: every name, shape, count and value is checked before
//! anything is written, so a corrupt, truncated or mismatched checkpoint is a named
//! error and leaves the model and the optimizer as they were. A file is written to a
//! temporary name and renamed over the old one, so a crash mid-write keeps the previous
//! checkpoint.
//!
//! ```
//! use backprop::checkpoint;
//! use backprop::optim::{AdamW, AdamWConfig, Optimizer};
//! use backprop::params::Params;
//! use ndarray::{Array1, Array2};
//!
//! #[derive(Clone, Debug, backprop::Differentiable)]
//! struct Linear {
//!     w: Array2<f64>,
//!     b: Array1<f64>,
//! }
//!
//! let mut model = Linear { w: Array2::from_elem((2, 3), 0.5), b: Array1::zeros(3) };
//! let mut opt = AdamW::new(AdamWConfig::default());
//! let grad = Linear { w: Array2::ones((2, 3)), b: Array1::ones(3) };
//! opt.step(&mut model, &grad).unwrap();
//!
//! let path = std::env::temp_dir().join(format!("ckpt-doc-{}.bin", std::process::id()));
//! checkpoint::save(&path, &model, &opt).unwrap();
//!
//! let mut restored = Linear { w: Array2::zeros((2, 3)), b: Array1::zeros(3) };
//! let mut opt2 = AdamW::new(AdamWConfig::default());
//! checkpoint::load(&path, &mut restored, &mut opt2).unwrap();
//! assert_eq!(restored.w, model.w);
//! assert_eq!(opt2.state_dict(), opt.state_dict());
//!
//! // A model of another shape is refused by name, and nothing changes.
//! let mut other = Linear { w: Array2::zeros((3, 3)), b: Array1::zeros(3) };
//! let mut opt3 = AdamW::new(AdamWConfig::default());
//! let err = checkpoint::load(&path, &mut other, &mut opt3).unwrap_err();
//! assert!(err.to_string().contains("`w`"), "{err}");
//! assert_eq!(other.w, Array2::<f64>::zeros((3, 3)));
//! # std::fs::remove_file(&path).unwrap();
//! ```

use crate::optim::{OptimError, Optimizer, StateBuffer, StateDict};
use crate::params::{Params, Real};
use std::fmt;
use std::path::{Path, PathBuf};

/// The name a weights state dict carries (its `optimizer` field).
pub const WEIGHTS: &str = "weights";

/// The first bytes of a checkpoint file; the last is the format version.
const MAGIC: &[u8; 8] = b"BPCKPT01";

/// A model's weights as a state dict: one buffer per parameter buffer, in the
/// parameters' walk order, with its name and shape (named [`WEIGHTS`], step 0).
/// [`StateDict::to_bytes`] encodes it with a length and a CRC-32.
///
/// # Panics
/// If a parameter array is not in standard (row-major) layout (`w.t().to_owned()`),
/// which the read-only walk of [`Params`] refuses by name; a step of an optimizer, or
/// [`Params::buffers_mut`], makes it row-major.
pub fn weights<F: Real, P: Params<F> + ?Sized>(model: &P) -> StateDict<F> {
    StateDict {
        optimizer: WEIGHTS.into(),
        step: 0,
        hyper: Vec::new(),
        buffers: model
            .buffers()
            .into_iter()
            .map(|b| StateBuffer {
                name: b.name,
                shape: b.shape,
                values: b.values.to_vec(),
            })
            .collect(),
    }
}

/// Checks that `state` holds weights for `model`: the same buffers in the same order,
/// each with its name, shape and as many values, all finite.
///
/// # Errors
/// [`OptimError::WrongOptimizer`] (not a weights state dict),
/// [`OptimError::BufferCount`], [`OptimError::ShapeMismatch`] (both names and shapes),
/// [`OptimError::ValueCount`], [`OptimError::NonFiniteState`] (the buffer and the flat
/// index).
pub fn check_weights<F: Real, P: Params<F> + ?Sized>(
    model: &P,
    state: &StateDict<F>,
) -> Result<(), OptimError> {
    if state.optimizer != WEIGHTS {
        return Err(OptimError::WrongOptimizer {
            expected: WEIGHTS.into(),
            found: state.optimizer.clone(),
        });
    }
    let bufs = model.buffers();
    if bufs.len() != state.buffers.len() {
        return Err(OptimError::BufferCount {
            what: "saved weights",
            expected: bufs.len(),
            found: state.buffers.len(),
        });
    }
    for (b, s) in bufs.iter().zip(&state.buffers) {
        if b.name != s.name || b.shape != s.shape {
            return Err(OptimError::ShapeMismatch {
                what: "saved weights",
                expected_name: b.name.clone(),
                expected_shape: b.shape.clone(),
                found_name: s.name.clone(),
                found_shape: s.shape.clone(),
            });
        }
        if s.values.len() != b.values.len() {
            return Err(OptimError::ValueCount {
                name: s.name.clone(),
                shape: s.shape.clone(),
                found: s.values.len(),
            });
        }
        if let Some(index) = s.values.iter().position(|v| !v.is_finite()) {
            return Err(OptimError::NonFiniteState {
                name: s.name.clone(),
                index,
                value: s.values[index].f64(),
            });
        }
    }
    Ok(())
}

/// Replaces `model`'s weights with `state`'s, after [`check_weights`]; on an error the
/// model is unchanged.
///
/// # Errors
/// Those of [`check_weights`].
pub fn load_weights<F: Real, P: Params<F> + ?Sized>(
    model: &mut P,
    state: &StateDict<F>,
) -> Result<(), OptimError> {
    check_weights(model, state)?;
    for (b, s) in model.buffers_mut().into_iter().zip(&state.buffers) {
        b.values.copy_from_slice(&s.values);
    }
    Ok(())
}

/// Why a checkpoint could not be written or read; the model and the optimizer are
/// unchanged whenever one is returned.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    Io {
        /// The checkpoint's path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file does not start with a checkpoint header, or its parts' lengths do not
    /// add up to the file's.
    BadHeader {
        /// The checkpoint's path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The weights part is corrupt, or holds weights for another model.
    Weights {
        /// The checkpoint's path.
        path: PathBuf,
        /// Why (naming the buffer, both shapes, the checksum).
        error: Box<OptimError>,
    },
    /// The optimizer part is corrupt, or holds another optimizer's state, or state for
    /// another model.
    Optimizer {
        /// The checkpoint's path.
        path: PathBuf,
        /// Why.
        error: Box<OptimError>,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, error } => {
                write!(f, "checkpoint {}: {error}", path.display())
            }
            CheckpointError::BadHeader { path, reason } => {
                write!(
                    f,
                    "checkpoint {}: not a checkpoint file: {reason}",
                    path.display()
                )
            }
            CheckpointError::Weights { path, error } => {
                write!(f, "checkpoint {}: weights: {error}", path.display())
            }
            CheckpointError::Optimizer { path, error } => {
                write!(f, "checkpoint {}: optimizer state: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { error, .. } => Some(error),
            CheckpointError::Weights { error, .. } | CheckpointError::Optimizer { error, .. } => {
                Some(error.as_ref())
            }
            CheckpointError::BadHeader { .. } => None,
        }
    }
}

/// Writes `model`'s weights and `opt`'s state (step counter included) to `path`:
///
/// ```text
/// b"BPCKPT01"  u64 length of the weights part
/// weights:   the state dict of `weights(model)` (magic, length, CRC-32, payload)
/// optimizer: `opt.state_dict()`, the same way
/// ```
///
/// The bytes go to a temporary file beside `path` first and are renamed over `path`
/// ([`write_atomically`]), so an interrupted write leaves the previous checkpoint whole.
/// Missing parent directories are created.
///
/// A weight or optimizer state holding NaN or ±∞ (a diverged run, an Adam second moment
/// that overflowed f32) is refused before anything is written: [`load`] refuses such a
/// file, so writing it would replace the last good checkpoint with one that cannot be
/// loaded.
///
/// # Errors
/// [`CheckpointError::Io`]; [`CheckpointError::Weights`] or
/// [`CheckpointError::Optimizer`] with [`OptimError::NonFiniteState`] naming the buffer
/// and the first non-finite value (nothing written).
///
/// # Panics
/// As [`weights`], on a parameter array not in standard layout.
pub fn save<F: Real, P: Params<F> + ?Sized, O: Optimizer<F>>(
    path: &Path,
    model: &P,
    opt: &O,
) -> Result<(), CheckpointError> {
    let weights = weights(model);
    let state = opt.state_dict();
    let non_finite = |dict: &StateDict<F>| {
        dict.buffers.iter().find_map(|b| {
            b.values.iter().position(|v| !v.is_finite()).map(|index| {
                Box::new(OptimError::NonFiniteState {
                    name: b.name.clone(),
                    index,
                    value: b.values[index].f64(),
                })
            })
        })
    };
    if let Some(error) = non_finite(&weights) {
        return Err(CheckpointError::Weights {
            path: path.to_path_buf(),
            error,
        });
    }
    if let Some(error) = non_finite(&state) {
        return Err(CheckpointError::Optimizer {
            path: path.to_path_buf(),
            error,
        });
    }
    let (weights, state) = (weights.to_bytes(), state.to_bytes());
    write_atomically(path, &two_parts(MAGIC, &weights, &state)).map_err(|error| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        }
    })
}

/// A file of two parts: `magic` (8 bytes, its last the format version), the first
/// part's length (u64, little-endian), the first part, the second part. Each part checks
/// itself (a state dict has its own length and CRC-32).
pub fn two_parts(magic: &[u8; 8], first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + first.len() + second.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&(first.len() as u64).to_le_bytes());
    bytes.extend_from_slice(first);
    bytes.extend_from_slice(second);
    bytes
}

/// The two parts of a file [`two_parts`] made with `magic`.
///
/// # Errors
/// What is wrong with the header, in words: another magic, or a first part longer than
/// the file.
pub fn split_two_parts<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
) -> Result<(&'a [u8], &'a [u8]), String> {
    if bytes.len() < 16 || &bytes[..8] != magic {
        return Err(format!(
            "{} bytes starting {:?}, want the magic {:?} and a length",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(8)]),
            String::from_utf8_lossy(magic)
        ));
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let rest = &bytes[16..];
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= rest.len())
        .ok_or_else(|| format!("a first part of {n} bytes in a file of {}", bytes.len()))?;
    Ok(rest.split_at(n))
}

/// Writes `bytes` to `path` the way a checkpoint must be written: to a new temporary
/// file beside it first (`.NAME.tmp.PID.N`, a name no other file, process or call uses),
/// flushed to disk, then renamed over `path` (a rename within a directory replaces the
/// file whole), so an interrupted write leaves the previous file as it was and no other
/// file is touched. Creates missing parent directories.
///
/// # Errors
/// The I/O error of creating the directory, writing or renaming (the temporary file is
/// removed on a failed write or rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().map_or_else(
        || "checkpoint".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp_name = format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.map_or_else(|| Path::new(&tmp_name).to_path_buf(), |d| d.join(&tmp_name));
    let written = (|| {
        // `create_new`: never over a file that exists.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Restores `model`'s weights and `opt`'s state from a file [`save`] wrote. Both parts
/// are decoded and checked against this model and optimizer (checksums, names,
/// shapes, counts, finite values, the optimizer's name) before either is changed; on
/// any error both are as they were.
///
/// # Errors
/// [`CheckpointError::Io`], [`CheckpointError::BadHeader`],
/// [`CheckpointError::Weights`], [`CheckpointError::Optimizer`].
pub fn load<F: Real, P: Params<F> + ?Sized, O: Optimizer<F>>(
    path: &Path,
    model: &mut P,
    opt: &mut O,
) -> Result<(), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let (weights, state) =
        split_two_parts(&bytes, MAGIC).map_err(|reason| CheckpointError::BadHeader {
            path: path.to_path_buf(),
            reason,
        })?;
    let weights_error = |error| CheckpointError::Weights {
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    let w = StateDict::<F>::from_bytes(weights).map_err(weights_error)?;
    check_weights(model, &w).map_err(weights_error)?;
    let state = StateDict::<F>::from_bytes(state).map_err(|error| CheckpointError::Optimizer {
        path: path.to_path_buf(),
        error: Box::new(error),
    })?;
    // The optimizer checks its state against the model's shapes, which the weights
    // share, and keeps its own state on an error; the weights go in after it.
    opt.load_state_dict(model, &state)
        .map_err(|error| CheckpointError::Optimizer {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
    load_weights(model, &w).expect("checked above");
    Ok(())
}
