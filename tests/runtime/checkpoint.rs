//! `backprop::checkpoint`: weights and optimizer state saved together, training resumed
//! bit for bit, and every bad file a named error that changes nothing.

use backprop::checkpoint::{self, CheckpointError};
use backprop::optim::{AdamW, AdamWConfig, OptimError, Optimizer, Sgd, SgdConfig};
use ndarray::{Array1, Array2, array};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Net {
    w: Array2<f64>,
    b: Array1<f64>,
    layers: Vec<Layer>,
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Layer {
    u: Array2<f64>,
}

#[backprop::grad(p)]
fn loss(p: &Net, x: &Array2<f64>) -> f64 {
    let mut h = (x.dot(&p.w) + &p.b).tanh();
    for l in &p.layers {
        h = h.dot(&l.u).tanh();
    }
    (&h * &h).sum()
}

fn net(rows: usize) -> Net {
    let f = |r: usize, c: usize, s: f64| {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * c + j) as f64 + s).sin() * 0.5)
    };
    Net {
        w: f(rows, 3, 0.1),
        b: array![0.1, -0.2, 0.3],
        layers: vec![Layer { u: f(3, 3, 1.0) }, Layer { u: f(3, 3, 2.0) }],
    }
}

fn x() -> Array2<f64> {
    array![[0.5, -1.0], [1.5, 0.25]]
}

fn steps(p: &mut Net, opt: &mut AdamW<f64>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (l, g) = loss_grad(p, &x());
            opt.step(p, &g.p).unwrap();
            l
        })
        .collect()
}

/// Which part a load refused, and why.
fn cause(err: &CheckpointError) -> (&'static str, &OptimError) {
    match err {
        CheckpointError::Weights { error, .. } => ("weights", error),
        CheckpointError::Optimizer { error, .. } => ("optimizer", error),
        other => panic!("not a refused part: {other}"),
    }
}

fn path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("backprop-ckpt-{}-{name}.bin", std::process::id()))
}

fn adamw() -> AdamW<f64> {
    AdamW::new(AdamWConfig {
        lr: 0.05,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    })
}

#[test]
fn resumed_training_continues_bit_for_bit() {
    let (mut p, mut opt) = (net(2), adamw());
    steps(&mut p, &mut opt, 3);
    let file = path("resume");
    checkpoint::save(&file, &p, &opt).unwrap();
    let after = steps(&mut p, &mut opt, 4);
    // A fresh model and optimizer, restored: the same four losses and final weights.
    let (mut q, mut opt2) = (net(2), adamw());
    q.w.fill(9.0);
    checkpoint::load(&file, &mut q, &mut opt2).unwrap();
    assert_eq!(steps(&mut q, &mut opt2, 4), after);
    assert_eq!(q, p);
    assert_eq!(opt2.state_dict(), opt.state_dict());
    std::fs::remove_file(&file).unwrap();
}

/// Loads `bytes` as a checkpoint into a fresh model and optimizer; checks that a
/// failure changed neither, and returns the error.
fn load_fails(name: &str, bytes: &[u8], rows: usize) -> CheckpointError {
    let file = path(name);
    std::fs::write(&file, bytes).unwrap();
    let (mut q, mut opt) = (net(rows), adamw());
    if rows == 2 {
        steps(&mut q, &mut opt, 1);
    }
    let (q0, s0) = (q.clone(), opt.state_dict());
    let err = checkpoint::load(&file, &mut q, &mut opt).unwrap_err();
    assert_eq!(q, q0, "{err}");
    assert_eq!(opt.state_dict(), s0, "{err}");
    std::fs::remove_file(&file).unwrap();
    err
}

#[test]
fn bad_checkpoints_are_named_errors_that_change_nothing() {
    let (mut p, mut opt) = (net(2), adamw());
    steps(&mut p, &mut opt, 2);
    let file = path("good");
    checkpoint::save(&file, &p, &opt).unwrap();
    let good = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let weights_len = u64::from_le_bytes(good[8..16].try_into().unwrap()) as usize;

    // A flipped byte in each part: that part's checksum.
    let mut bytes = good.clone();
    bytes[16 + weights_len / 2] ^= 0x40;
    let err = load_fails("flip-w", &bytes, 2);
    assert!(
        matches!(
            cause(&err),
            ("weights", OptimError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    let mut bytes = good.clone();
    bytes[16 + weights_len + 40] ^= 0x01;
    let err = load_fails("flip-o", &bytes, 2);
    assert!(
        matches!(
            cause(&err),
            ("optimizer", OptimError::ChecksumMismatch { .. })
        ),
        "{err}"
    );

    // Cut short, and not a checkpoint at all.
    let err = load_fails("short", &good[..good.len() - 7], 2);
    assert!(
        matches!(cause(&err), ("optimizer", OptimError::Truncated { .. })),
        "{err}"
    );
    let err = load_fails("other", b"hello, world; not a checkpoint", 2);
    assert!(matches!(err, CheckpointError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("not a checkpoint file"), "{err}");

    // Another model's shape: both names and shapes in the message.
    let err = load_fails("shape", &good, 3);
    assert!(
        matches!(cause(&err), ("weights", OptimError::ShapeMismatch { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("`w` with shape [3, 3]") && err.to_string().contains("[2, 3]"),
        "{err}"
    );

    // Another optimizer: refused by name, the weights untouched too.
    let file = path("sgd");
    std::fs::write(&file, &good).unwrap();
    let mut q = net(2);
    let q0 = q.clone();
    let mut sgd = Sgd::new(SgdConfig::momentum(0.1, 0.9));
    let err = checkpoint::load(&file, &mut q, &mut sgd).unwrap_err();
    assert!(
        matches!(
            cause(&err),
            ("optimizer", OptimError::WrongOptimizer { .. })
        ),
        "{err}"
    );
    assert_eq!(q, q0);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn weights_state_dict_round_trips_and_refuses_non_finite_values() {
    let p = net(2);
    let sd = checkpoint::weights(&p);
    let names: Vec<&str> = sd.buffers.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["w", "b", "layers.0.u", "layers.1.u"]);
    let mut q = net(2);
    q.b.fill(0.0);
    checkpoint::load_weights(&mut q, &sd).unwrap();
    assert_eq!(q, p);
    let mut bad = sd.clone();
    bad.buffers[2].values[4] = f64::NAN;
    let err = checkpoint::load_weights(&mut q, &bad).unwrap_err();
    assert!(
        matches!(err, OptimError::NonFiniteState { ref name, index: 4, .. } if name == "layers.0.u"),
        "{err}"
    );
    assert_eq!(q, p);
}

/// Saving writes through a temporary file of its own: a user's `model.tmp` (the name
/// a `path.with_extension("tmp")` scheme would pick) beside the checkpoint is left as it
/// was, and no temporary file is left behind.
#[test]
fn save_never_touches_other_files_in_the_directory() {
    let dir = std::env::temp_dir().join(format!("backprop-ckpt-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("model.tmp");
    std::fs::write(&users, b"the user's notes").unwrap();
    let (p, opt) = (net(2), adamw());
    let file = dir.join("model.ckpt");
    checkpoint::save(&file, &p, &opt).unwrap();
    checkpoint::save(&file, &p, &opt).unwrap();
    assert_eq!(std::fs::read(&users).unwrap(), b"the user's notes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["model.ckpt", "model.tmp"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A diverged model or optimizer state is refused before anything is written, so the
/// last good checkpoint stays loadable; the error names the buffer and the index.
#[test]
fn save_refuses_non_finite_weights_and_state_and_keeps_the_last_good_file() {
    let (mut p, mut opt) = (net(2), adamw());
    steps(&mut p, &mut opt, 2);
    let file = path("diverged");
    checkpoint::save(&file, &p, &opt).unwrap();
    let good = std::fs::read(&file).unwrap();

    let mut bad = p.clone();
    bad.layers[1].u[[0, 2]] = f64::INFINITY;
    let err = checkpoint::save(&file, &bad, &opt).unwrap_err();
    let (part, why) = cause(&err);
    assert_eq!(part, "weights");
    assert!(
        matches!(why, OptimError::NonFiniteState { name, index: 2, .. } if name == "layers.1.u"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), good);

    // An Adam second moment that overflowed: a finite gradient of 1e200 squares to ∞.
    let mut huge = loss_grad(&p, &x()).1.p;
    huge.b[1] = 1e200;
    opt.step(&mut p.clone(), &huge).unwrap();
    let state = opt.state_dict();
    assert!(
        state
            .buffers
            .iter()
            .any(|b| b.values.iter().any(|v| v.is_infinite()))
    );
    let err = checkpoint::save(&file, &p, &opt).unwrap_err();
    let (part, why) = cause(&err);
    assert_eq!(part, "optimizer", "{err}");
    assert!(
        matches!(why, OptimError::NonFiniteState { name, index: 1, .. } if name.starts_with("b.")),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), good);
    let (mut q, mut opt2) = (net(2), adamw());
    checkpoint::load(&file, &mut q, &mut opt2).unwrap();
    std::fs::remove_file(&file).unwrap();
}
