//! The IDX reader on MNIST's real test split, and on broken files.

use backprop::data::{DataError, load_idx, read_images, read_labels};
use std::io::Write;
use std::path::PathBuf;

const MNIST: &str = "../shared/data/mnist";

#[test]
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
