//! The main job's code path on a small budget: it learns, and its plots are PNGs.

use backprop_tests::mlp::{Mlp, TrainConfig, digits, train};
use backprop_tests::plot::{Series, is_png, lines};

#[test]
fn the_main_job_learns_the_digits_on_a_small_budget() {
    let (tr, va) = digits(0.2, 0);
    assert_eq!(
        (tr.labels.len() + va.labels.len(), tr.images.ncols()),
        (1797, 64)
    );
    let cfg = TrainConfig {
        epochs: 20,
        max_steps: Some(300),
        progress: false,
        ..TrainConfig::default()
    };
    let report = train(&tr, &va, &cfg).expect("training does not diverge");
    assert_eq!(report.steps, 300);
    let (train_acc, val_acc) = report.final_accuracy();
    assert!(
        val_acc >= 0.93,
        "validation accuracy {val_acc} after 300 steps"
    );
    assert!(train_acc >= val_acc - 0.05);
    // The loss falls from about ln 10 to well below it.
    let first = report.losses[0];
    let last: f64 = report.losses[report.losses.len() - 20..]
        .iter()
        .sum::<f64>()
        / 20.0;
    assert!((first - 10f64.ln()).abs() < 1.0, "first loss {first}");
    assert!(last < 0.3, "late loss {last}");
    // Warmup then cosine: 0 at step 0, the peak at the end of warmup.
    assert_eq!(report.lrs[0], 0.0);
    assert!((report.lrs.iter().cloned().fold(0.0, f64::max) - cfg.lr).abs() < 1e-12);

    let dir = std::env::temp_dir().join(format!("backprop-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let steps: Vec<f64> = (0..report.losses.len()).map(|s| s as f64).collect();
    let loss_png = dir.join("loss.png");
    lines(
        &loss_png,
        "loss",
        "step",
        "loss",
        &[Series {
            label: "loss",
            points: steps
                .iter()
                .copied()
                .zip(report.losses.iter().copied())
                .collect(),
        }],
        true,
    )
    .unwrap();
    let norm_png = dir.join("grad_norm.png");
    lines(
        &norm_png,
        "norm",
        "step",
        "norm",
        &[Series {
            label: "|g|",
            points: steps
                .iter()
                .copied()
                .zip(report.grad_norms.iter().copied())
                .collect(),
        }],
        true,
    )
    .unwrap();
    assert!(is_png(&loss_png) && is_png(&norm_png));
    assert!(
        std::fs::metadata(&loss_png).unwrap().len() > 5_000,
        "a drawn plot, not an empty image"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (tr, va) = digits(0.2, 3);
    let cfg = TrainConfig {
        epochs: 1,
        max_steps: Some(20),
        progress: false,
        seed: 3,
        ..TrainConfig::default()
    };
    let a = train(&tr, &va, &cfg).unwrap();
    let b = train(&tr, &va, &cfg).unwrap();
    assert_eq!(a.losses, b.losses);
}

#[test]
fn the_tape_keeps_the_activations_the_backward_pass_needs() {
    let (tr, _) = digits(0.2, 0);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let m = Mlp::new(64, [128, 64], 10, &mut rng);
    let x = tr.images.slice(ndarray::s![..64, ..]);
    let bytes = m.tape_bytes(x, &tr.labels[..64]);
    // h1 (64×128 f32) and h2 (64×64 f32) for the weight products, one byte of ReLU mask
    // per hidden unit, and the 64×10 softmax-CE gradient; the input x is borrowed, and
    // the closure's own fields take a few hundred bytes.
    let activations = 64 * 128 * 4 + 64 * 64 * 4;
    let masks = 64 * 128 + 64 * 64;
    let ce = 64 * 10 * 4;
    assert!(
        bytes >= activations + masks + ce && bytes < activations + masks + ce + 1024,
        "tape {bytes} B"
    );
    // Twice the batch, twice the activations: training memory grows with the batch.
    let x2 = tr.images.slice(ndarray::s![..128, ..]);
    let bytes2 = m.tape_bytes(x2, &tr.labels[..128]);
    assert!(bytes2 > 2 * bytes - 1024);
}
