//! Reading the IDX files of MNIST and Fashion-MNIST.
//!
//! The format (LeCun et al., "The MNIST database", file format section): big-endian
//! `u32` magic number, then one `u32` per dimension, then the data. Images have magic
//! 2051 (`0x0000_0803`: unsigned bytes, 3 dimensions: count, rows, columns), labels
//! 2049 (`0x0000_0801`: unsigned bytes, 1 dimension). Files may be gzip-compressed
//! (`.gz`, detected by content, not by name).
//!
//! Every error names the file and what is wrong with it: a wrong magic number, a header
//! whose sizes overflow, a file shorter than its header says, bytes after the data the
//! header promises (or after the gzip stream), image and label counts that disagree, a
//! label that is not a class.
//!
//! The header is read first and fixes the size of the file: at most that many bytes
//! plus one are read (or decompressed), so a small gzip file that inflates to gigabytes
//! behind a header for a few pixels costs a few bytes of work and is rejected as
//! [`DataError::TrailingData`].

use ndarray::Array2;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
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
    /// The header's dimensions multiply to more bytes (or pixels per image) than this
    /// platform can address.
    SizeOverflow {
        /// The file.
        path: PathBuf,
        /// The dimensions the header gives.
        dims: Vec<u32>,
    },
    /// More bytes follow the data the header promises.
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises (header included), all present.
        expected: usize,
        /// `false`: the (decompressed) data goes on past `expected`; `true`: the gzip
        /// stream decompressed to exactly `expected` bytes, and the file goes on after it.
        after_gzip: bool,
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
    /// The files hold no items: nothing to train on or to evaluate (a mean over it
    /// would be NaN).
    Empty {
        /// The images file.
        path: PathBuf,
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
            DataError::SizeOverflow { path, dims } => write!(
                f,
                "{}: header dimensions {dims:?} multiply to more than this platform can address",
                path.display()
            ),
            DataError::TrailingData {
                path,
                expected,
                after_gzip: false,
            } => write!(
                f,
                "{}: trailing data: the header promises {expected} bytes, more followed",
                path.display()
            ),
            DataError::TrailingData {
                path,
                expected,
                after_gzip: true,
            } => write!(
                f,
                "{}: trailing data after the gzip stream (which held the {expected} bytes the header promises)",
                path.display()
            ),
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
            DataError::Empty { path } => write!(f, "{}: holds no images", path.display()),
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

/// The file's IDX bytes (gunzipped if it starts with gzip's magic 1f 8b), checked
/// against the header: magic number, sizes (checked arithmetic), no fewer and no more
/// bytes than the header promises. Returns the header's dimensions and the data after
/// the header. Reads at most the promised size plus one byte of (decompressed) data.
fn read_idx(path: &Path, magic: u32, ndims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let gz = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    if gz {
        let mut dec = flate2::bufread::GzDecoder::new(file);
        let out = read_checked(path, &mut dec, magic, ndims)?;
        // The decoder reached the end of the gzip stream (its CRC and length checked):
        // nothing may follow it in the file.
        let mut rest = dec.into_inner();
        if !rest.fill_buf().map_err(io)?.is_empty() {
            return Err(DataError::TrailingData {
                path: path.to_path_buf(),
                expected: 4 + 4 * ndims + out.1.len(),
                after_gzip: true,
            });
        }
        Ok(out)
    } else {
        let out = read_checked(path, &mut file, magic, ndims)?;
        Ok(out)
    }
}

/// Reads the header, then at most the promised data plus one byte, from `r`.
fn read_checked(
    path: &Path,
    r: &mut impl Read,
    magic: u32,
    ndims: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let head = 4 + 4 * ndims;
    let mut header = Vec::with_capacity(head);
    r.by_ref()
        .take(head as u64)
        .read_to_end(&mut header)
        .map_err(io)?;
    if header.len() >= 4 {
        let found = be_u32(&header, 0);
        if found != magic {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                expected: magic,
                found,
            });
        }
    }
    if header.len() < head {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: head,
            found: header.len(),
        });
    }
    let raw: Vec<u32> = (0..ndims).map(|k| be_u32(&header, 4 + 4 * k)).collect();
    let overflow = || DataError::SizeOverflow {
        path: path.to_path_buf(),
        dims: raw.clone(),
    };
    let dims: Vec<usize> = raw
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| overflow()))
        .collect::<Result<_, _>>()?;
    let data_len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(overflow)?;
    let expected = head.checked_add(data_len).ok_or_else(overflow)?;
    let limit = u64::try_from(data_len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or_else(overflow)?;
    // No capacity from the header: a lying header must not allocate what is not there.
    let mut data = Vec::new();
    r.take(limit).read_to_end(&mut data).map_err(io)?;
    if data.len() < data_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: head + data.len(),
        });
    }
    if data.len() > data_len {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected,
            after_gzip: false,
        });
    }
    Ok((dims, data))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads an IDX images file: `n × (rows·cols)` pixels scaled to [0, 1], and `(rows, cols)`.
///
/// # Errors
/// Naming the file: [`DataError::Io`] (unreadable, or a corrupt gzip stream),
/// [`DataError::BadMagic`], [`DataError::SizeOverflow`] (header sizes overflow),
/// [`DataError::Truncated`] (fewer bytes than the header promises),
/// [`DataError::TrailingData`] (more bytes than it promises).
pub fn read_images(path: impl AsRef<Path>) -> Result<(Array2<f32>, (usize, usize)), DataError> {
    let path = path.as_ref();
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    // The row length fits when n > 0 (it divides the checked n·rows·cols); with n = 0 it
    // must still fit the array's element count (isize::MAX, ndarray's limit).
    let row_len = rows
        .checked_mul(cols)
        .filter(|&r| isize::try_from(r).is_ok())
        .ok_or_else(|| DataError::SizeOverflow {
            path: path.to_path_buf(),
            dims: dims.iter().map(|&d| d as u32).collect(),
        })?;
    let images = Array2::from_shape_vec(
        (n, row_len),
        pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
    )
    .expect("read_idx returned exactly n·rows·cols pixels");
    Ok((images, (rows, cols)))
}

/// Reads an IDX labels file.
///
/// # Errors
/// As [`read_images`].
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<usize>, DataError> {
    let (_, bytes) = read_idx(path.as_ref(), LABELS_MAGIC, 1)?;
    Ok(bytes.iter().map(|&l| usize::from(l)).collect())
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
    if images.nrows() == 0 {
        return Err(DataError::Empty { path: images_path });
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
