//! Reading the IDX files of MNIST and Fashion-MNIST.
//!
//! The format (LeCun et al., "The MNIST database", file format section): big-endian
//! `u32` magic number, then one `u32` per dimension, then the data. Images have magic
//! 2051 (`0x0000_0803`: unsigned bytes, 3 dimensions: count, rows, columns), labels
//! 2049 (`0x0000_0801`: unsigned bytes, 1 dimension). Files may be gzip-compressed
//! (`.gz`, detected by content, not by name).
//!
//! Every error names the file and what is wrong with it: a wrong magic number, a file
//! shorter than its header says, image and label counts that disagree, a label that is
//! not a class.

use ndarray::Array2;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Images as rows of pixels scaled to [0, 1], and their class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `n × (rows·cols)`, f32, pixel / 255 (or the source's own maximum).
    pub images: Array2<f32>,
    /// `n` labels in `0..classes`.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Image height and width (8×8 for the UCI digits, 28×28 for MNIST).
    pub shape: (usize, usize),
}

/// What went wrong reading a dataset file.
#[derive(Debug)]
pub enum DataError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The first four bytes are not the IDX magic number of this kind of file.
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number an images (2051) or labels (2049) file starts with.
        expected: u32,
        /// What the file starts with.
        found: u32,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises (header included).
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The images and labels files hold different numbers of items.
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Its count.
        image_count: usize,
        /// The labels file.
        labels: PathBuf,
        /// Its count.
        label_count: usize,
    },
    /// A label is not below the number of classes.
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Index of the item.
        index: usize,
        /// The label found.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::BadMagic {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: not an IDX {} file: magic number {found} (0x{found:08x}), expected {expected} (0x{expected:08x})",
                path.display(),
                if *expected == IMAGES_MAGIC {
                    "images"
                } else {
                    "labels"
                }
            ),
            DataError::Truncated {
                path,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{}: truncated: the header promises {expected} bytes, the file has {found}",
                    path.display()
                )
            }
            DataError::CountMismatch {
                images,
                image_count,
                labels,
                label_count,
            } => write!(
                f,
                "{} holds {image_count} images but {} holds {label_count} labels",
                images.display(),
                labels.display()
            ),
            DataError::BadLabel {
                path,
                index,
                label,
                classes,
            } => {
                write!(
                    f,
                    "{}: item {index} has label {label}, not one of the {classes} classes",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The file's bytes, gunzipped if they start with gzip's magic (1f 8b).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn header(path: &Path, bytes: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>, DataError> {
    let head = 4 + 4 * dims;
    if bytes.len() < head {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: head,
            found: bytes.len(),
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
        });
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|k| be_u32(bytes, 4 + 4 * k) as usize)
        .collect();
    let expected = head + sizes.iter().product::<usize>();
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: bytes.len(),
        });
    }
    Ok(sizes)
}

/// Reads an IDX images file: `n × (rows·cols)` pixels scaled to [0, 1], and `(rows, cols)`.
///
/// # Errors
/// [`DataError::Io`], [`DataError::BadMagic`], [`DataError::Truncated`], naming the file.
pub fn read_images(path: impl AsRef<Path>) -> Result<(Array2<f32>, (usize, usize)), DataError> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let dims = header(path, &bytes, IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let pixels = &bytes[16..16 + n * rows * cols];
    let images = Array2::from_shape_vec(
        (n, rows * cols),
        pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
    )
    .expect("the header's sizes were checked against the file length");
    Ok((images, (rows, cols)))
}

/// Reads an IDX labels file.
///
/// # Errors
/// [`DataError::Io`], [`DataError::BadMagic`], [`DataError::Truncated`], naming the file.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<usize>, DataError> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let dims = header(path, &bytes, LABELS_MAGIC, 1)?;
    Ok(bytes[8..8 + dims[0]]
        .iter()
        .map(|&l| usize::from(l))
        .collect())
}

/// Loads `{split}-images-idx3-ubyte[.gz]` and `{split}-labels-idx1-ubyte[.gz]` from
/// `dir` (`split` is `"train"` or `"t10k"` for MNIST and Fashion-MNIST), with 10 classes.
///
/// # Errors
/// Any [`DataError`], naming the file; [`DataError::CountMismatch`] when the two files
/// disagree on the number of items.
pub fn load_idx(dir: impl AsRef<Path>, split: &str) -> Result<Dataset, DataError> {
    let dir = dir.as_ref();
    let find = |stem: String| {
        let gz = dir.join(format!("{stem}.gz"));
        if gz.exists() { gz } else { dir.join(stem) }
    };
    let images_path = find(format!("{split}-images-idx3-ubyte"));
    let labels_path = find(format!("{split}-labels-idx1-ubyte"));
    let (images, shape) = read_images(&images_path)?;
    let labels = read_labels(&labels_path)?;
    if images.nrows() != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path,
            image_count: images.nrows(),
            labels: labels_path,
            label_count: labels.len(),
        });
    }
    let classes = 10;
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(DataError::BadLabel {
            path: labels_path,
            index,
            label,
            classes,
        });
    }
    Ok(Dataset {
        images,
        labels,
        classes,
        shape,
    })
}
