//! The IDX reader on MNIST's real test split, and on broken files: truncated at every
//! offset, overflowing headers, trailing bytes, a gzip bomb.

use backprop::data::{DataError, load_idx, read_images, read_labels};
use std::io::{Read, Write};
use std::path::PathBuf;

const MNIST: &str = "../shared/data/mnist";

#[test]
#[ignore = "needs ../shared/data/mnist (not in a user's checkout); .ci/run runs it"]
fn mnist_test_split_loads_with_the_published_counts() {
    let d = load_idx(MNIST, "t10k").expect("MNIST's test split is at ../shared/data/mnist");
    assert_eq!(d.images.dim(), (10_000, 784));
    assert_eq!(d.shape, (28, 28));
    let mut counts = [0usize; 10];
    for &l in &d.labels {
        counts[l] += 1;
    }
    // The published class counts of MNIST's test split.
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert!(d.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let labels = read_labels(PathBuf::from(MNIST).join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.len(), 60_000);
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("backprop-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v
}

#[test]
fn wrong_magic_is_named() {
    let p = scratch("wrong-magic-images", &header(2049, &[1, 2, 2]));
    let err = read_images(&p).unwrap_err();
    assert!(matches!(
        err,
        DataError::BadMagic {
            expected: 2051,
            found: 2049,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("wrong-magic-images") && msg.contains("2049") && msg.contains("2051"),
        "{msg}"
    );
}

#[test]
fn truncated_file_is_named() {
    let mut bytes = header(2051, &[3, 2, 2]);
    bytes.extend([0u8; 5]); // 3 images of 4 pixels need 12
    let p = scratch("short-images", &bytes);
    let err = read_images(&p).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 28,
                found: 21,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("short-images"));
}

/// Files of zero items: a named error, not a NaN mean over nothing later.
#[test]
fn empty_files_are_named() {
    let dir = std::env::temp_dir().join(format!("backprop-idx-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        header(2051, &[0, 28, 28]),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), header(2049, &[0])).unwrap();
    let err = load_idx(&dir, "train").unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("train-images-idx3-ubyte: holds no images"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn counts_that_disagree_are_named() {
    let dir = std::env::temp_dir().join(format!("backprop-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut images = header(2051, &[2, 1, 1]);
    images.extend([0u8, 255]);
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    let mut labels = header(2049, &[3]);
    labels.extend([1u8, 2, 3]);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    let err = load_idx(&dir, "train").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                image_count: 2,
                label_count: 3,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("train-labels-idx1-ubyte"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_file_is_named() {
    let err = load_idx("/nonexistent-dir", "train").unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent-dir/train-images-idx3-ubyte"),
        "{err}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// One 2×2 image, pixels 0, 85, 170, 255.
fn one_image() -> Vec<u8> {
    let mut bytes = header(2051, &[1, 2, 2]);
    bytes.extend([0u8, 85, 170, 255]);
    bytes
}

#[test]
fn small_file_loads_plain_and_gzipped() {
    for (name, bytes) in [("ok-plain", one_image()), ("ok-gz", gzip(&one_image()))] {
        let (images, shape) = read_images(scratch(name, &bytes)).unwrap();
        assert_eq!(shape, (2, 2));
        assert_eq!(
            images.as_slice().unwrap(),
            [0.0, 85.0 / 255.0, 170.0 / 255.0, 1.0]
        );
    }
}

#[test]
fn truncation_at_every_offset_is_named() {
    let full = one_image();
    for cut in 0..full.len() {
        let p = scratch("cut-images", &full[..cut]);
        let err = read_images(&p).unwrap_err();
        let want = if cut < 16 { 16 } else { 20 };
        assert!(
            matches!(err, DataError::Truncated { expected, found, .. } if expected == want && found == cut),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("cut-images"), "{err}");
    }
    let mut labels = header(2049, &[3]);
    labels.extend([1u8, 2, 3]);
    for cut in 0..labels.len() {
        let err = read_labels(scratch("cut-labels", &labels[..cut])).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { found, .. } if found == cut),
            "cut at {cut}: {err}"
        );
    }
    // A gzip file cut anywhere: the stream is incomplete (Io from the decoder, or
    // Truncated when the cut leaves a shorter but well-formed prefix). Never accepted.
    let gz = gzip(&full);
    for cut in 0..gz.len() {
        let err = read_images(scratch("cut-gz", &gz[..cut])).unwrap_err();
        assert!(
            matches!(err, DataError::Io { .. } | DataError::Truncated { .. }),
            "gz cut at {cut}: {err}"
        );
    }
}

#[test]
fn overflowing_header_is_named_not_a_panic() {
    // 2³²−1 cubed overflows u64 and usize.
    let p = scratch(
        "overflow-images",
        &header(2051, &[u32::MAX, u32::MAX, u32::MAX]),
    );
    let err = read_images(&p).unwrap_err();
    assert!(
        matches!(&err, DataError::SizeOverflow { dims, .. } if dims == &[u32::MAX; 3]),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("overflow-images") && msg.contains("4294967295"),
        "{msg}"
    );
    // Zero images of (2³²−1)² pixels each: the product is 0, the row length does not fit.
    let p = scratch("overflow-rows", &header(2051, &[0, u32::MAX, u32::MAX]));
    assert!(
        matches!(read_images(&p), Err(DataError::SizeOverflow { .. })),
        "zero huge images"
    );
}

#[test]
fn trailing_bytes_are_named() {
    let mut bytes = one_image();
    bytes.push(7);
    let err = read_images(scratch("trailing-images", &bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingData {
                expected: 20,
                after_gzip: false,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("trailing-images")
            && msg.contains("20 bytes")
            && msg.contains("more followed"),
        "{msg}"
    );
    // The same inside a gzip stream.
    let err = read_images(scratch("trailing-gz", &gzip(&bytes))).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingData {
                expected: 20,
                after_gzip: false,
                ..
            }
        ),
        "{err}"
    );
    // Bytes after a complete gzip stream (a second member, or garbage).
    let mut gz = gzip(&one_image());
    gz.extend(gzip(b"more"));
    let err = read_images(scratch("trailing-after-gz", &gz)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingData {
                expected: 20,
                after_gzip: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("after the gzip stream"), "{err}");
}

/// `one_image()` followed by `mib` MiB of zeros, as a valid gzip file (CRC and length
/// in the trailer). Built from one compressed MiB repeated: after a sync flush the
/// window holds only zeros, so every further MiB of zeros compresses to the same bytes,
/// and a 1 GiB bomb takes milliseconds to make (compressing it takes 10 s in a debug
/// build).
fn gzip_bomb(mib: usize) -> Vec<u8> {
    assert!(mib >= 3);
    let zeros = vec![0u8; 1 << 20];
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let flushed = |enc: &mut flate2::write::DeflateEncoder<Vec<u8>>, bytes: &[u8]| {
        enc.write_all(bytes).unwrap();
        enc.flush().unwrap(); // a sync flush: byte-aligned, the window kept
        enc.get_ref().len()
    };
    let image = one_image();
    flushed(&mut enc, &image);
    let a = flushed(&mut enc, &zeros);
    let b = flushed(&mut enc, &zeros);
    let c = flushed(&mut enc, &zeros);
    let raw = enc.finish().unwrap();
    let chunk = &raw[a..b];
    assert_eq!(chunk, &raw[b..c], "a MiB of zeros after a MiB of zeros");
    let mut deflate = raw[..a].to_vec(); // the image and the first MiB
    for _ in 1..mib {
        deflate.extend_from_slice(chunk);
    }
    deflate.extend_from_slice(&raw[c..]);
    let mut crc = flate2::Crc::new();
    crc.update(&image);
    let mut mib_crc = flate2::Crc::new();
    mib_crc.update(&zeros);
    for _ in 0..mib {
        crc.combine(&mib_crc);
    }
    // gzip: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend(deflate);
    gz.extend(crc.sum().to_le_bytes());
    gz.extend(crc.amount().to_le_bytes()); // the length mod 2³²
    gz
}

#[test]
fn gzip_bomb_builder_makes_what_it_says() {
    let gz = gzip_bomb(5);
    let mut out = Vec::new();
    // GzDecoder checks the trailer's CRC and length at the end of the stream.
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len(), 20 + (5 << 20));
    assert_eq!(out[..20], one_image()[..]);
    assert!(out[20..].iter().all(|&b| b == 0));
}

#[test]
fn gzip_bomb_is_rejected_without_inflating_it() {
    // A header for one 2×2 image, then 1 GiB of zeros: about 1 MB compressed.
    let bomb = gzip_bomb(1024);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let p = scratch("bomb-images.gz", &bomb);
    let start = std::time::Instant::now();
    let err = read_images(&p).unwrap_err();
    let took = start.elapsed();
    // Only header + 4 pixels + 1 byte are inflated: the trailing-data error, at once
    // (inflating the whole GiB takes seconds even in release builds).
    assert!(
        matches!(
            err,
            DataError::TrailingData {
                expected: 20,
                after_gzip: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_millis(500),
        "took {took:?}"
    );
}
