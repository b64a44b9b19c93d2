//! A character-level GPT (Radford et al. 2019, GPT-2's pre-norm blocks) written as plain
//! Rust over ndarray and trained with `#[grad]`: issue #17.
//!
//! Every layer is an ordinary function with `#[grad]` on it (layer norm, causal
//! self-attention with its heads split by reshape + permute and run through the fused
//! [`backprop::ops::attention`], the GELU MLP, the residual block), and the loss
//! [`gpt_loss`] loops `for block in &p.blocks`. No backward pass is written by hand: the
//! gradient of [`gpt_loss`] is what the macro generates from those functions.
//!
//! The functions are generic over the float type (`T: backprop::Real`): training runs in
//! `f32`, the tests gradcheck the same code in `f64`.
//!
//! Around the model: the data (a char-level vocabulary, a 90/10 split, random windows
//! from a seeded [`Rng64`]), the nanoGPT recipe (AdamW with no decay on norms, biases and
//! embeddings, linear warmup then cosine decay, clipping at global norm 1.0, GPT-2
//! initialisation), checkpoints (weights, AdamW state, step and RNG state, each part
//! CRC-checked) and sampling (temperature + top-k).

// `#[grad]`'s companions of a generic function repeat its `T: Real` bound in a where
// clause, which clippy reports at the function's own bound.
#![allow(clippy::multiple_bound_locations)]

use backprop::checkpoint;
use backprop::clip::{NonFiniteNorm, clip_grad_norm};
use backprop::init::{Init, init_params};
use backprop::ops::{XentOptions, attention, cross_entropy, embedding, gelu_exact, layer_norm};
use backprop::optim::{AdamW, AdamWConfig, OptimError, Optimizer, ParamGroup, Select, StateDict};
use backprop::schedule::{Schedule, WarmupCosine};
use backprop::{Differentiable, Pullback, Real, grad};
use ndarray::{Array1, Array2, Array3, Axis, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt;
use std::path::{Path, PathBuf};

/// LayerNorm's ε (PyTorch's and GPT-2's default).
pub const LN_EPS: f64 = 1e-5;

// ---------------------------------------------------------------------------- model

/// The model's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptConfig {
    /// Characters in the vocabulary.
    pub vocab: usize,
    /// Context length (positions).
    pub block_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Whether the output head is the token embedding (`logits = h·wteᵀ`, GPT-2 and
    /// nanoGPT) or a separate `lm_head` matrix.
    pub tied: bool,
}

impl GptConfig {
    /// nanoGPT's CPU "baby" configuration (4 layers, 4 heads, 128 wide, context 64),
    /// over a vocabulary of `vocab` characters, head tied to the embedding.
    pub fn baby(vocab: usize) -> Self {
        GptConfig {
            vocab,
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            tied: true,
        }
    }
}

/// One pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Block<T> {
    /// LayerNorm 1 gain `[C]`.
    pub ln1_g: Array1<T>,
    /// LayerNorm 1 bias `[C]`.
    pub ln1_b: Array1<T>,
    /// Query, key and value projections side by side `[C, 3C]` (GPT-2's `c_attn`).
    pub w_qkv: Array2<T>,
    /// `[3C]`.
    pub b_qkv: Array1<T>,
    /// Attention output projection `[C, C]` (into the residual stream).
    pub w_proj: Array2<T>,
    /// `[C]`.
    pub b_proj: Array1<T>,
    /// LayerNorm 2 gain `[C]`.
    pub ln2_g: Array1<T>,
    /// LayerNorm 2 bias `[C]`.
    pub ln2_b: Array1<T>,
    /// MLP up-projection `[C, 4C]` (`c_fc`).
    pub w_fc: Array2<T>,
    /// `[4C]`.
    pub b_fc: Array1<T>,
    /// MLP down-projection `[4C, C]` (`c_proj`, into the residual stream).
    pub w_out: Array2<T>,
    /// `[C]`.
    pub b_out: Array1<T>,
}

/// The whole model.
#[derive(Clone, Debug, PartialEq, Differentiable)]
pub struct Gpt<T> {
    /// Token embedding `[V, C]` (also the output head when tied).
    pub wte: Array2<T>,
    /// Position embedding `[block_size, C]`.
    pub wpe: Array2<T>,
    /// The blocks.
    pub blocks: Vec<Block<T>>,
    /// Final LayerNorm gain `[C]`.
    pub lnf_g: Array1<T>,
    /// Final LayerNorm bias `[C]`.
    pub lnf_b: Array1<T>,
    /// Output head `[C, V]`; `[0, 0]` when tied to `wte`.
    pub lm_head: Array2<T>,
}

/// LayerNorm over the last axis (the fused op; its own tape keeps `x` and two numbers
/// per row).
#[grad]
pub fn ln<T: Real>(x: &Array3<T>, g: &Array1<T>, b: &Array1<T>) -> Array3<T> {
    let eps = T::from_f64(LN_EPS).unwrap();
    layer_norm(x, g, b, eps)
}

/// Causal multi-head self-attention on `x` `[B, T, C]`: one `[C, 3C]` projection, the
/// heads split by reshape to `[B, T, H, hd]` and permute to `[B, H, T, hd]`, the fused
/// causal attention, heads merged back, output projection.
#[grad]
pub fn causal_self_attention<T: Real>(x: &Array3<T>, blk: &Block<T>, n_head: usize) -> Array3<T> {
    let (bs, t, c) = x.dim();
    let hd = c / n_head;
    let x2 = x.to_shape((bs * t, c)).unwrap();
    let qkv = x2.dot(&blk.w_qkv) + &blk.b_qkv;
    let q = qkv
        .slice(s![.., 0..c])
        .to_owned()
        .into_shape_with_order((bs, t, n_head, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let k = qkv
        .slice(s![.., c..2 * c])
        .to_owned()
        .into_shape_with_order((bs, t, n_head, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let v = qkv
        .slice(s![.., 2 * c..3 * c])
        .to_owned()
        .into_shape_with_order((bs, t, n_head, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let y = attention(&q, &k, &v, true);
    let yp = y.permuted_axes([0, 2, 1, 3]);
    let y2 = yp.to_shape((bs * t, c)).unwrap();
    let out = y2.dot(&blk.w_proj) + &blk.b_proj;
    out.into_shape_with_order((bs, t, c)).unwrap()
}

/// The position-wise MLP: `gelu(x·W_fc + b_fc)·W_out + b_out` (exact GELU, as GPT-2's
/// `nn.GELU()` in nanoGPT).
#[grad]
pub fn mlp<T: Real>(x: &Array3<T>, blk: &Block<T>) -> Array3<T> {
    let (bs, t, c) = x.dim();
    let x2 = x.to_shape((bs * t, c)).unwrap();
    let h = gelu_exact(&(x2.dot(&blk.w_fc) + &blk.b_fc));
    let y = h.dot(&blk.w_out) + &blk.b_out;
    y.into_shape_with_order((bs, t, c)).unwrap()
}

/// One block: `x + attn(ln1(x))`, then `+ mlp(ln2(·))`.
#[grad]
pub fn block<T: Real>(x: &Array3<T>, blk: &Block<T>, n_head: usize) -> Array3<T> {
    let h1 = ln(x, &blk.ln1_g, &blk.ln1_b);
    let a = causal_self_attention(&h1, blk, n_head);
    let x1 = x + &a;
    let h2 = ln(&x1, &blk.ln2_g, &blk.ln2_b);
    let m = mlp(&h2, blk);
    &x1 + &m
}

/// Mean cross-entropy of next-character prediction over every position: `ids` and
/// `targets` are `[B, T]` (targets are `ids` shifted by one), `T ≤ block_size`.
#[grad(p)]
pub fn gpt_loss<T: Real>(
    p: &Gpt<T>,
    ids: &Array2<usize>,
    targets: &Array2<usize>,
    n_head: usize,
    tied: bool,
) -> T {
    let t = ids.ncols();
    let tok = embedding(&p.wte, ids);
    let pos = p.wpe.slice(s![0..t, ..]);
    let mut x = tok + pos;
    for blk in &p.blocks {
        x = block(&x, blk, n_head);
    }
    let h = ln(&x, &p.lnf_g, &p.lnf_b);
    let (bs, _, c) = h.dim();
    let h2 = h.to_shape((bs * t, c)).unwrap();
    let logits = if tied {
        h2.dot(&p.wte.t())
    } else {
        h2.dot(&p.lm_head)
    };
    let v = logits.ncols();
    let logits3 = logits.into_shape_with_order((bs, t, v)).unwrap().to_owned();
    cross_entropy(&logits3, targets, XentOptions::default())
}

impl<T: Real> Gpt<T> {
    /// A model of `cfg`'s shape, every value zero (what [`Gpt::init`] fills).
    pub fn zeros(cfg: &GptConfig) -> Self {
        let c = cfg.n_embd;
        let block = || Block {
            ln1_g: Array1::zeros(c),
            ln1_b: Array1::zeros(c),
            w_qkv: Array2::zeros((c, 3 * c)),
            b_qkv: Array1::zeros(3 * c),
            w_proj: Array2::zeros((c, c)),
            b_proj: Array1::zeros(c),
            ln2_g: Array1::zeros(c),
            ln2_b: Array1::zeros(c),
            w_fc: Array2::zeros((c, 4 * c)),
            b_fc: Array1::zeros(4 * c),
            w_out: Array2::zeros((4 * c, c)),
            b_out: Array1::zeros(c),
        };
        Gpt {
            wte: Array2::zeros((cfg.vocab, c)),
            wpe: Array2::zeros((cfg.block_size, c)),
            blocks: (0..cfg.n_layer).map(|_| block()).collect(),
            lnf_g: Array1::zeros(c),
            lnf_b: Array1::zeros(c),
            lm_head: if cfg.tied {
                Array2::zeros((0, 0))
            } else {
                Array2::zeros((c, cfg.vocab))
            },
        }
    }

    /// GPT-2 initialisation (Radford et al. 2019, §2.3; nanoGPT's `_init_weights`):
    /// weights and embeddings `N(0, 0.02²)`, the two projections into the residual
    /// stream (`w_proj`, `w_out`) `N(0, (0.02/√(2L))²)`, biases 0, LayerNorm gains 1.
    pub fn init(cfg: &GptConfig, seed: u64) -> Self {
        let mut m = Self::zeros(cfg);
        let layers = cfg.n_layer;
        init_params(&mut m, &mut StdRng::seed_from_u64(seed), |name, shape| {
            let leaf = name.rsplit('.').next().unwrap_or(name);
            match (leaf, shape.len()) {
                ("w_proj" | "w_out", _) => Init::Gpt2 {
                    residual_layers: Some(layers),
                },
                ("ln1_g" | "ln2_g" | "lnf_g", _) => Init::Constant(1.0),
                (_, 2) => Init::Gpt2 {
                    residual_layers: None,
                },
                _ => Init::Zeros,
            }
        });
        m
    }

    /// Logits `[B, T, V]` for `ids` `[B, T]`: the inference path (no tape), the same
    /// layer functions [`gpt_loss`] differentiates.
    pub fn logits(&self, ids: &Array2<usize>, n_head: usize) -> Array3<T> {
        let t = ids.ncols();
        let mut x = embedding(&self.wte, ids) + self.wpe.slice(s![0..t, ..]);
        for blk in &self.blocks {
            x = block(&x, blk, n_head);
        }
        let h = ln(&x, &self.lnf_g, &self.lnf_b);
        let (bs, _, c) = h.dim();
        let h2 = h.to_shape((bs * t, c)).unwrap();
        // The products on the runtime's matmul, as in the `#[grad]` layers above.
        let logits = if self.lm_head.is_empty() {
            backprop::ops::matmul(&h2, &self.wte.t())
        } else {
            backprop::ops::matmul(&h2, &self.lm_head)
        };
        let v = logits.ncols();
        logits.into_shape_with_order((bs, t, v)).unwrap()
    }
}

// ---------------------------------------------------------------------------- errors

/// What can go wrong reading data or checkpoints; every message names the file.
#[derive(Debug)]
pub enum GptError {
    /// The file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The data file has no bytes.
    EmptyData {
        /// The file.
        path: PathBuf,
    },
    /// The data file is not text: invalid UTF-8 or a NUL byte.
    BinaryData {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first offending byte.
        offset: usize,
        /// What was found there.
        reason: &'static str,
    },
    /// The data has fewer characters than one training window needs.
    TooShort {
        /// The file.
        path: PathBuf,
        /// Characters found.
        chars: usize,
        /// Characters needed (`block_size + 2`).
        needed: usize,
    },
    /// The default corpus could not be located (`cargo metadata` failed).
    Corpus(String),
    /// A checkpoint's bytes are damaged or not a checkpoint (the runtime's state-dict
    /// error says how: magic, length, CRC-32, ...).
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// Which part (`"header"`, `"weights"`, `"optimizer"`).
        part: &'static str,
        /// Why.
        reason: String,
    },
    /// A checkpoint of another model, data or optimizer.
    CheckpointMismatch {
        /// The file.
        path: PathBuf,
        /// What differs (`"n_embd"`, `"data CRC-32"`, a buffer's name, ...).
        field: String,
        /// This run's value.
        expected: String,
        /// The checkpoint's.
        found: String,
    },
    /// Training stopped (a non-finite gradient, an optimizer refusal).
    Training(String),
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            GptError::EmptyData { path } => {
                write!(
                    f,
                    "{}: empty data file (no characters to train on)",
                    path.display()
                )
            }
            GptError::BinaryData {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{}: not a text file: {reason} at byte {offset} (the GPT trains on UTF-8 text)",
                path.display()
            ),
            GptError::TooShort {
                path,
                chars,
                needed,
            } => write!(
                f,
                "{}: data too short: {chars} characters, a training window needs at least {needed} (block_size + 2)",
                path.display()
            ),
            GptError::Corpus(why) => write!(f, "default corpus: {why} (pass --data FILE)"),
            GptError::BadCheckpoint { path, part, reason } => write!(
                f,
                "{}: damaged or not a GPT checkpoint ({part}): {reason}",
                path.display()
            ),
            GptError::CheckpointMismatch {
                path,
                field,
                expected,
                found,
            } => write!(
                f,
                "{}: checkpoint does not match this run: {field} is {found} in the checkpoint, {expected} here",
                path.display()
            ),
            GptError::Training(why) => write!(f, "training stopped: {why}"),
        }
    }
}

impl std::error::Error for GptError {}

// ---------------------------------------------------------------------------- data

/// SplitMix64 (Steele, Lea & Flood 2014): a 64-bit state, so a checkpoint stores the
/// generator exactly and a resumed run draws the same windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng64 {
    /// The state.
    pub state: u64,
}

impl Rng64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng64 { state: seed }
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻⁴⁰ for our `n`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A text as character ids, split 90/10 into training and validation text.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// Where it came from (for the log).
    pub source: String,
    /// The characters, sorted; a character's id is its index.
    pub vocab: Vec<char>,
    /// The first 90% of the text.
    pub train: Vec<u32>,
    /// The last 10% (at least one window: for a tiny text it overlaps the training part).
    pub val: Vec<u32>,
    /// CRC-32 of the text: a checkpoint records it, so resuming on other data is an error.
    pub crc: u32,
}

/// Which part of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The first 90%.
    Train,
    /// The last 10%.
    Val,
}

impl Corpus {
    /// Builds the vocabulary and split of `text`; `path` names it in errors.
    ///
    /// # Errors
    /// [`GptError::EmptyData`], [`GptError::TooShort`] (fewer than `block_size + 2`
    /// characters).
    pub fn from_text(text: &str, source: &str, block_size: usize) -> Result<Self, GptError> {
        let path = PathBuf::from(source);
        if text.is_empty() {
            return Err(GptError::EmptyData { path });
        }
        let chars: Vec<char> = text.chars().collect();
        let needed = block_size + 2;
        if chars.len() < needed {
            return Err(GptError::TooShort {
                path,
                chars: chars.len(),
                needed,
            });
        }
        let mut vocab = chars.clone();
        vocab.sort_unstable();
        vocab.dedup();
        let ids: Vec<u32> = chars
            .iter()
            .map(|c| vocab.binary_search(c).expect("in the vocabulary") as u32)
            .collect();
        let n = ids.len();
        let window = block_size + 1;
        let n_train = n * 9 / 10;
        let (train, val) = if n_train >= window && n - n_train >= window {
            (ids[..n_train].to_vec(), ids[n_train..].to_vec())
        } else {
            // Too small to split: train on everything, validate on the last window.
            (ids.clone(), ids[n - window..].to_vec())
        };
        Ok(Corpus {
            source: source.to_string(),
            vocab,
            train,
            val,
            crc: crc32fast::hash(text.as_bytes()),
        })
    }

    /// Reads a UTF-8 text file.
    ///
    /// # Errors
    /// [`GptError::Io`], [`GptError::EmptyData`], [`GptError::BinaryData`] (invalid
    /// UTF-8 or a NUL byte), [`GptError::TooShort`].
    pub fn from_file(path: &Path, block_size: usize) -> Result<Self, GptError> {
        let bytes = std::fs::read(path).map_err(|error| GptError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        if bytes.is_empty() {
            return Err(GptError::EmptyData {
                path: path.to_path_buf(),
            });
        }
        if let Some(offset) = bytes.iter().position(|&b| b == 0) {
            return Err(GptError::BinaryData {
                path: path.to_path_buf(),
                offset,
                reason: "a NUL byte",
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| GptError::BinaryData {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
            reason: "invalid UTF-8",
        })?;
        Self::from_text(&text, &path.display().to_string(), block_size)
    }

    /// Characters in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Ids of `s`'s characters (characters outside the vocabulary are skipped).
    pub fn encode(&self, s: &str) -> Vec<usize> {
        s.chars()
            .filter_map(|c| self.vocab.binary_search(&c).ok())
            .collect()
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.vocab[i]).collect()
    }

    /// `batch` random windows of `block` characters from `split`: inputs and targets
    /// (the inputs shifted by one), both `[batch, block]`.
    pub fn batch(
        &self,
        split: Split,
        batch: usize,
        block: usize,
        rng: &mut Rng64,
    ) -> (Array2<usize>, Array2<usize>) {
        let data = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let mut x = Array2::zeros((batch, block));
        let mut y = Array2::zeros((batch, block));
        for b in 0..batch {
            let i = rng.below(data.len() - block);
            for t in 0..block {
                x[[b, t]] = data[i + t] as usize;
                y[[b, t]] = data[i + t + 1] as usize;
            }
        }
        (x, y)
    }
}

/// The default corpus: the Rust sources of the `ndarray` crate this build already
/// depends on, found through `cargo metadata` (no download), every `.rs` file under its
/// `src/` in path order, concatenated: a GPT that learns to write Rust.
///
/// # Errors
/// [`GptError::Corpus`] when `cargo metadata` fails or lists no `ndarray`, and the
/// errors of [`Corpus::from_text`].
pub fn ndarray_sources(block_size: usize) -> Result<Corpus, GptError> {
    let src = ndarray_src_dir()?;
    let mut files = Vec::new();
    collect_rs(&src, &mut files)
        .map_err(|e| GptError::Corpus(format!("{}: {e}", src.display())))?;
    files.sort();
    let mut text = String::new();
    for f in &files {
        let s = std::fs::read_to_string(f).map_err(|error| GptError::Io {
            path: f.clone(),
            error,
        })?;
        text.push_str(&s);
        if !s.ends_with('\n') {
            text.push('\n');
        }
    }
    let source = format!(
        "ndarray's Rust sources ({} .rs files under {})",
        files.len(),
        src.display()
    );
    let mut c = Corpus::from_text(&text, &src.display().to_string(), block_size)?;
    c.source = source;
    Ok(c)
}

/// Where the `ndarray` crate this build compiled against keeps its `src/`.
///
/// First `cargo metadata --offline`. That needs every package of the graph downloaded,
/// and a build of one example downloads only what it compiles (not the proc-macro
/// crate's test dependencies, say), so when it fails the version is read with
/// `cargo pkgid --offline ndarray` (the lock file only) and looked up in cargo's
/// registry cache, where the build unpacked it.
fn ndarray_src_dir() -> Result<PathBuf, GptError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    ndarray_src_from_metadata(&cargo, manifest)
        .or_else(|metadata_error| {
            ndarray_src_from_lock(&cargo, manifest).map_err(|e| format!("{metadata_error}; {e}"))
        })
        .map_err(GptError::Corpus)
}

/// `ndarray`'s `src/` from the lock file's version (`cargo pkgid --offline ndarray`) and
/// cargo's registry cache (`$CARGO_HOME/registry/src/*/ndarray-VERSION/src`).
fn ndarray_src_from_lock(cargo: &str, manifest: &str) -> Result<PathBuf, String> {
    let out = std::process::Command::new(cargo)
        .args(["pkgid", "--offline", "ndarray", "--manifest-path", manifest])
        .output()
        .map_err(|e| format!("running `{cargo} pkgid`: {e}"))?;
    let pkgid = String::from_utf8_lossy(&out.stdout);
    let version = pkgid
        .trim()
        .rsplit_once('@')
        .map(|(_, v)| v.to_string())
        .filter(|_| out.status.success())
        .ok_or_else(|| {
            format!(
                "`cargo pkgid ndarray` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or_else(|| String::from("neither CARGO_HOME nor HOME is set"))?;
    let registry = cargo_home.join("registry").join("src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&registry)
        .map_err(|e| format!("{}: {e}", registry.display()))?
        .flatten()
        .map(|index| index.path().join(format!("ndarray-{version}")).join("src"))
        .filter(|dir| dir.is_dir())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "ndarray {version} is not unpacked under {}",
            registry.display()
        )
    })
}

/// `ndarray`'s `src/` as `cargo metadata --offline` lists it.
fn ndarray_src_from_metadata(cargo: &str, manifest: &str) -> Result<PathBuf, String> {
    // Only this platform's packages: the full graph lists target-specific crates (wasm's
    // bumpalo) that were never downloaded, and `--offline` would fail on them.
    let host =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("-vV")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            })
            .ok_or_else(|| String::from("`rustc -vV` gave no host triple"))?;
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&host)
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .map_err(|e| format!("running `{cargo} metadata`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("`cargo metadata` output: {e}"))?;
    let manifest_path = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "ndarray")
        .filter_map(|p| p["manifest_path"].as_str())
        .max()
        .ok_or_else(|| String::from("`cargo metadata` lists no ndarray package"))?;
    Ok(Path::new(manifest_path)
        .parent()
        .expect("a manifest is in a directory")
        .join("src"))
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_rs(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------- training

/// How to train (defaults: nanoGPT's CPU "baby" run, `train_shakespeare_char` with
/// `--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
/// --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Context length.
    pub block_size: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Heads.
    pub n_head: usize,
    /// Width.
    pub n_embd: usize,
    /// Output head tied to the token embedding.
    pub tied: bool,
    /// Windows per step.
    pub batch: usize,
    /// Steps (the schedule reaches `min_lr` here).
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// AdamW's decoupled weight decay on matrices (not on norms, biases, embeddings).
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// Clip the global gradient norm at this value.
    pub clip: f64,
    /// Seeds initialisation, batches and validation windows.
    pub seed: u64,
    /// Validate every this many steps (and at the end).
    pub eval_interval: u64,
    /// Fixed validation batches.
    pub eval_iters: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            tied: true,
            batch: 12,
            steps: 2000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            clip: 1.0,
            seed: 1337,
            eval_interval: 250,
            eval_iters: 20,
        }
    }
}

impl TrainConfig {
    /// The model shape for a vocabulary of `vocab` characters.
    pub fn model(&self, vocab: usize) -> GptConfig {
        GptConfig {
            vocab,
            block_size: self.block_size,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            tied: self.tied,
        }
    }

    /// Warmup then cosine decay to `min_lr` at `steps`.
    pub fn schedule(&self) -> WarmupCosine {
        WarmupCosine {
            peak: self.lr,
            warmup: self.warmup,
            total: self.steps,
            floor: self.min_lr,
        }
    }
}

/// AdamW as nanoGPT configures it, with no weight decay on LayerNorm gains, biases (both
/// 1-D: [`Select::MaxNdim`]) and the embeddings (`wte`, `wpe`; the tied head is `wte`).
pub fn adamw(cfg: &TrainConfig) -> AdamW<f32> {
    AdamW::new(AdamWConfig {
        lr: cfg.lr,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    })
    .with_groups(vec![
        ParamGroup::new(Select::MaxNdim(1)).weight_decay(0.0),
        ParamGroup::new(Select::Names(vec!["wte".into(), "wpe".into()])).weight_decay(0.0),
    ])
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Training loss on the step's batch (before the update).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Everything a run carries from step to step: what a checkpoint holds.
#[derive(Clone, Debug)]
pub struct Trainer {
    /// The run's settings.
    pub cfg: TrainConfig,
    /// The model's shape.
    pub model_cfg: GptConfig,
    /// The weights.
    pub model: Gpt<f32>,
    /// AdamW and its state.
    pub opt: AdamW<f32>,
    /// Steps taken.
    pub step: u64,
    /// Draws the training windows.
    pub rng: Rng64,
    /// CRC-32 of the corpus text (a checkpoint must match it).
    pub data_crc: u32,
    /// The fixed validation batches.
    pub val_batches: Vec<(Array2<usize>, Array2<usize>)>,
}

/// Magic of a checkpoint file (the last byte is the format version).
const CKPT_MAGIC: &[u8; 8] = b"BPGPTCK1";

impl Trainer {
    /// A fresh run on `corpus`: GPT-2 initialisation from `cfg.seed`, the window
    /// generator seeded from it too, and `eval_iters` fixed validation batches.
    pub fn new(cfg: &TrainConfig, corpus: &Corpus) -> Self {
        let model_cfg = cfg.model(corpus.vocab_size());
        let model = Gpt::init(&model_cfg, cfg.seed);
        let mut vrng = Rng64::new(cfg.seed ^ 0x5641_4C49_4441_5445);
        let val_batches = (0..cfg.eval_iters)
            .map(|_| corpus.batch(Split::Val, cfg.batch, cfg.block_size, &mut vrng))
            .collect();
        Trainer {
            cfg: cfg.clone(),
            model_cfg,
            model,
            opt: adamw(cfg),
            step: 0,
            rng: Rng64::new(cfg.seed),
            data_crc: corpus.crc,
            val_batches,
        }
    }

    /// The next training batch (advances the window generator).
    pub fn next_batch(&mut self, corpus: &Corpus) -> (Array2<usize>, Array2<usize>) {
        corpus.batch(
            Split::Train,
            self.cfg.batch,
            self.cfg.block_size,
            &mut self.rng,
        )
    }

    /// One step on `(x, y)`: gradient, clipping, scheduled AdamW update, run on rayon's
    /// pool ([`backprop::run_on_pool`]: the kernels' splits then hand no work across
    /// threads).
    ///
    /// # Errors
    /// [`GptError::Training`] on a non-finite gradient (nothing is changed).
    pub fn step_on(&mut self, x: &Array2<usize>, y: &Array2<usize>) -> Result<StepStats, GptError> {
        backprop::run_on_pool(|| self.step_here(x, y))
    }

    fn step_here(&mut self, x: &Array2<usize>, y: &Array2<usize>) -> Result<StepStats, GptError> {
        let (loss, g) = gpt_loss_grad(
            &self.model,
            x,
            y,
            self.model_cfg.n_head,
            self.model_cfg.tied,
        );
        let mut g = g.p;
        let grad_norm = clip_grad_norm(&mut g, self.cfg.clip, NonFiniteNorm::Return)
            .map_err(|e| GptError::Training(e.to_string()))?;
        let lr = self.cfg.schedule().lr(self.step);
        self.opt.set_lr(lr);
        self.opt
            .step(&mut self.model, &g)
            .map_err(|e| GptError::Training(format!("step {}: {e}", self.step)))?;
        self.step += 1;
        Ok(StepStats {
            loss: f64::from(loss),
            grad_norm,
            lr,
        })
    }

    /// One step on the next training batch.
    ///
    /// # Errors
    /// As [`Trainer::step_on`].
    pub fn train_step(&mut self, corpus: &Corpus) -> Result<StepStats, GptError> {
        let (x, y) = self.next_batch(corpus);
        self.step_on(&x, &y)
    }

    /// Mean loss over the fixed validation batches (forward only, no tape), on rayon's
    /// pool as [`Trainer::step_on`].
    pub fn val_loss(&self) -> f64 {
        let n = self.val_batches.len().max(1) as f64;
        backprop::run_on_pool(|| {
            self.val_batches
                .iter()
                .map(|(x, y)| f64::from(loss_of(&self.model, x, y, &self.model_cfg)))
                .sum::<f64>()
        }) / n
    }

    /// Bytes the tape of one training step keeps (`gpt_loss_forward`'s tape).
    pub fn tape_bytes(&self, x: &Array2<usize>, y: &Array2<usize>) -> usize {
        let (_, tape) = gpt_loss_forward(
            &self.model,
            x,
            y,
            self.model_cfg.n_head,
            self.model_cfg.tied,
        );
        tape.bytes()
    }

    /// The run's identity a checkpoint must match, as (name, value) pairs.
    fn identity(&self) -> Vec<(String, f64)> {
        let m = &self.model_cfg;
        vec![
            ("vocab".into(), m.vocab as f64),
            ("block_size".into(), m.block_size as f64),
            ("n_layer".into(), m.n_layer as f64),
            ("n_head".into(), m.n_head as f64),
            ("n_embd".into(), m.n_embd as f64),
            ("tied".into(), f64::from(u8::from(m.tied))),
            ("batch".into(), self.cfg.batch as f64),
            ("data CRC-32".into(), f64::from(self.data_crc)),
        ]
    }

    /// Writes weights, AdamW state, step and RNG state to `path` (through a temporary
    /// file and a rename, so a crash mid-write leaves the old checkpoint).
    ///
    /// ```text
    /// b"BPGPTCK1"  u64 length of the weights part
    /// weights:   a state dict (runtime format: magic, length, CRC-32) named "gpt-weights",
    ///            step = steps taken, hyper = the run's identity and the RNG state
    /// optimizer: AdamW's state dict
    /// ```
    ///
    /// # Errors
    /// [`GptError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), GptError> {
        let mut hyper = self.identity();
        hyper.push(("rng_hi".into(), f64::from((self.rng.state >> 32) as u32)));
        hyper.push(("rng_lo".into(), f64::from(self.rng.state as u32)));
        let weights = StateDict {
            optimizer: "gpt-weights".into(),
            step: self.step,
            hyper,
            ..checkpoint::weights(&self.model)
        }
        .to_bytes();
        let opt = self.opt.state_dict().to_bytes();
        let bytes = checkpoint::two_parts(CKPT_MAGIC, &weights, &opt);
        checkpoint::write_atomically(path, &bytes).map_err(|error| GptError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Replaces weights, AdamW state, step and RNG state with `path`'s. Everything is
    /// read and checked first (header, both parts' CRC-32s, the run's identity, every
    /// buffer's name and shape, the optimizer state's values); on any error `self` is
    /// unchanged.
    ///
    /// # Errors
    /// [`GptError::Io`], [`GptError::BadCheckpoint`], [`GptError::CheckpointMismatch`].
    pub fn resume(&mut self, path: &Path) -> Result<(), GptError> {
        let bytes = std::fs::read(path).map_err(|error| GptError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let bad = |part: &'static str, reason: String| GptError::BadCheckpoint {
            path: path.to_path_buf(),
            part,
            reason,
        };
        let (weights, state) =
            checkpoint::split_two_parts(&bytes, CKPT_MAGIC).map_err(|e| bad("header", e))?;
        let w = StateDict::<f32>::from_bytes(weights).map_err(|e| bad("weights", e.to_string()))?;
        let o = StateDict::<f32>::from_bytes(state).map_err(|e| bad("optimizer", e.to_string()))?;
        let mismatch =
            |field: &str, expected: String, found: String| GptError::CheckpointMismatch {
                path: path.to_path_buf(),
                field: field.to_string(),
                expected,
                found,
            };
        if w.optimizer != "gpt-weights" {
            return Err(bad(
                "weights",
                format!("named {:?}, not \"gpt-weights\"", w.optimizer),
            ));
        }
        let hyper = |k: &str| w.hyper.iter().find(|(n, _)| n == k).map(|&(_, v)| v);
        for (k, v) in self.identity() {
            match hyper(&k) {
                Some(f) if f == v => {}
                Some(f) => return Err(mismatch(&k, v.to_string(), f.to_string())),
                None => return Err(bad("weights", format!("no {k:?} recorded"))),
            }
        }
        let (Some(hi), Some(lo)) = (hyper("rng_hi"), hyper("rng_lo")) else {
            return Err(bad("weights", "no RNG state recorded".into()));
        };
        let rng = Rng64 {
            state: ((hi as u64) << 32) | lo as u64,
        };
        let mut model = self.model.clone();
        let step = w.step;
        let weights = StateDict {
            optimizer: checkpoint::WEIGHTS.into(),
            ..w
        };
        checkpoint::load_weights(&mut model, &weights).map_err(|e| match e {
            OptimError::BufferCount {
                expected, found, ..
            } => mismatch(
                "number of weight buffers",
                expected.to_string(),
                found.to_string(),
            ),
            OptimError::ShapeMismatch {
                expected_name,
                expected_shape,
                found_name,
                found_shape,
                ..
            } => mismatch(
                &format!("weight buffer {expected_name}"),
                format!("{expected_name} {expected_shape:?}"),
                format!("{found_name} {found_shape:?}"),
            ),
            other => bad("weights", other.to_string()),
        })?;
        if o.step != step {
            return Err(bad(
                "optimizer",
                format!("AdamW is at step {} but the weights at {step}", o.step),
            ));
        }
        let mut opt = self.opt.clone();
        opt.load_state_dict(&model, &o).map_err(|e| match e {
            OptimError::WrongOptimizer { .. }
            | OptimError::BufferCount { .. }
            | OptimError::ShapeMismatch { .. } => mismatch(
                "optimizer state",
                "adamw over this model".into(),
                e.to_string(),
            ),
            other => bad("optimizer", other.to_string()),
        })?;
        self.model = model;
        self.opt = opt;
        self.step = step;
        self.rng = rng;
        Ok(())
    }

    /// `n` characters sampled after `prompt` (see [`sample`]).
    pub fn sample(
        &self,
        corpus: &Corpus,
        prompt: &str,
        n: usize,
        temperature: f64,
        top_k: usize,
        seed: u64,
    ) -> String {
        sample(
            &self.model,
            &self.model_cfg,
            corpus,
            prompt,
            n,
            temperature,
            top_k,
            seed,
        )
    }
}

/// The loss without a tape (validation).
pub fn loss_of<T: Real>(p: &Gpt<T>, x: &Array2<usize>, y: &Array2<usize>, cfg: &GptConfig) -> T {
    gpt_loss(p, x, y, cfg.n_head, cfg.tied)
}

/// Samples `n` characters after `prompt` (an empty prompt starts from a newline, or the
/// first character of the vocabulary): each step runs the model on the last
/// `block_size` characters, divides the last position's logits by `temperature`, keeps
/// the `top_k` largest (0: all) and draws from their softmax with a [`Rng64`] seeded by
/// `seed`, so a seed gives one text.
#[allow(clippy::too_many_arguments)]
pub fn sample<T: Real>(
    p: &Gpt<T>,
    cfg: &GptConfig,
    corpus: &Corpus,
    prompt: &str,
    n: usize,
    temperature: f64,
    top_k: usize,
    seed: u64,
) -> String {
    let mut rng = Rng64::new(seed);
    let mut ids = corpus.encode(prompt);
    if ids.is_empty() {
        ids = corpus.encode("\n");
    }
    if ids.is_empty() {
        ids.push(0);
    }
    let start = ids.len();
    for _ in 0..n {
        let ctx = &ids[ids.len().saturating_sub(cfg.block_size)..];
        let x = Array2::from_shape_vec((1, ctx.len()), ctx.to_vec()).expect("1×T");
        let logits = p.logits(&x, cfg.n_head);
        let last = logits.index_axis(Axis(1), ctx.len() - 1);
        let row: Vec<f64> = last
            .iter()
            .map(|v| v.to_f64().unwrap_or(f64::NEG_INFINITY) / temperature.max(1e-6))
            .collect();
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        if top_k > 0 {
            order.truncate(top_k);
        }
        let m = row[order[0]];
        let w: Vec<f64> = order.iter().map(|&i| (row[i] - m).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut u = rng.unit() * total;
        let mut pick = order[order.len() - 1];
        for (&i, &wi) in order.iter().zip(&w) {
            if u < wi {
                pick = i;
                break;
            }
            u -= wi;
        }
        ids.push(pick);
    }
    corpus.decode(&ids[start..])
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback that reads the lock file finds the same `ndarray` as `cargo metadata`
    /// (which works here: the test build downloaded the whole graph).
    #[test]
    fn ndarray_sources_from_the_lock_file_match_cargo_metadata() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let from_metadata = ndarray_src_from_metadata(&cargo, manifest).unwrap();
        let from_lock = ndarray_src_from_lock(&cargo, manifest).unwrap();
        assert_eq!(from_lock, from_metadata);
        assert!(from_lock.join("lib.rs").is_file());
    }
}
