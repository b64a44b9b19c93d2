//! The lesson's exercises (`src/exercises.rs`) on a small budget: each test asserts the
//! property its exercise is about, and that its figure is a PNG.

use backprop::params::Dtype;
use backprop::schedule::Schedule;
use backprop_tests::exercises::{
    Ex1Problem, Ex2Config, Ex3Config, Ex5Config, Ex6Config, FitConfig, LESSON_LRS, digits_split,
    ex1_backprop_by_hand, ex2_optimizers_on_quadratic, ex3_adamw_vs_adam, ex4_lr_sweep,
    ex5_warmup_cosine, ex6_clipping_rescue, lr_at, memory_table, neuron_loss_grad, plot_memory,
    seven_billion,
};
use backprop_tests::mlp::Mlp;
use backprop_tests::plot::is_png;
use ndarray::array;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::PathBuf;

/// A fresh directory under the system temp dir, unique per process and test.
fn temp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("backprop-exercises-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn ex1_chain_rule_grad_and_finite_differences_agree() {
    let r = ex1_backprop_by_hand(&Ex1Problem::default());
    assert_eq!(r.analytic.len(), 4);
    assert!(
        r.max_rel_diff_numeric() <= 1e-6,
        "#[grad] vs finite differences: {:.1e}\n{r}",
        r.max_rel_diff_numeric()
    );
    // The closed form 2(p − y)·p(1 − p)·x, written out here independently of the report.
    let pr = &r.problem;
    let p = 1.0 / (1.0 + (-(pr.w.dot(&pr.x) + pr.b)).exp());
    let dz = 2.0 * (p - pr.y) * p * (1.0 - p);
    let (_, g) = neuron_loss_grad(&pr.w, pr.b, &pr.x, pr.y);
    for (gw, xi) in g.w.iter().zip(&pr.x) {
        assert!(
            (gw - dz * xi).abs() <= 1e-15 * dz.abs().max(1.0),
            "{gw} vs {}",
            dz * xi
        );
    }
    assert!((g.b - dz).abs() <= 1e-15, "{} vs {dz}", g.b);
    assert!(r.max_rel_diff_by_hand() <= 1e-12);
    // And at a second point where p is near a sigmoid tail.
    let r2 = ex1_backprop_by_hand(&Ex1Problem {
        w: array![2.0, 1.5, -1.0],
        b: 0.5,
        x: array![1.0, 0.5, -1.0],
        y: 0.0,
        h: 1e-5,
    });
    assert!(r2.max_rel_diff_numeric() <= 1e-6, "{r2}");
    let dir = temp_dir("ex1");
    let png = r.plot(&dir).expect("plot");
    assert!(is_png(&png), "{}", png.display());
    assert!(r.to_string().contains("∂L/∂z"));
}

#[test]
fn ex2_adam_beats_sgd_and_momentum_at_the_same_lr() {
    for cfg in [Ex2Config::default(), Ex2Config::rotated(0.5)] {
        let r = ex2_optimizers_on_quadratic(&cfg);
        let sgd = r.final_loss("SGD").expect("SGD run");
        let mom = r.final_loss("SGD + momentum 0.9").expect("momentum run");
        let adam = r.final_loss("Adam").expect("Adam run");
        assert!(
            sgd.is_finite() && mom.is_finite() && adam.is_finite(),
            "{r}"
        );
        // "Crush": at least ten times lower than either.
        assert!(adam * 10.0 < mom && adam * 10.0 < sgd, "{r}");
        assert!(mom < sgd, "{r}");
        // Every run took the same number of steps.
        assert!(r.runs.iter().all(|(_, l)| l.len() == cfg.steps + 1));
        // Adam written from scratch is the library's Adam.
        assert!(r.scratch_adam_deviation <= 1e-12, "{r}");
    }
    let r = ex2_optimizers_on_quadratic(&Ex2Config::default());
    let png = r.plot(&temp_dir("ex2"), "loss.png").expect("plot");
    assert!(is_png(&png));
}

#[test]
fn ex3_adam_and_adamw_both_learn_the_digits() {
    let (train, val) = digits_split();
    let cfg = Ex3Config {
        seeds: vec![0],
        fit: FitConfig {
            epochs: 3,
            max_steps: Some(45),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = ex3_adamw_vs_adam(&train, &val, &cfg);
    let names: Vec<&str> = r.rows.iter().map(|row| row.optimizer.as_str()).collect();
    assert_eq!(names, ["Adam (L2 0.01)", "AdamW (λ 0.01)"]);
    for row in &r.rows {
        assert!(row.fit.diverged.is_none(), "{r}");
        assert!(row.fit.final_val_accuracy > 0.8, "{r}");
        assert!(row.fit.final_train_loss < row.fit.initial_train_loss, "{r}");
    }
    // Same seed: same initial weights, so the same initial loss; different updates.
    assert_eq!(
        r.rows[0].fit.initial_train_loss,
        r.rows[1].fit.initial_train_loss
    );
    assert_ne!(r.rows[0].fit.losses, r.rows[1].fit.losses);
    let table = r.to_string();
    assert!(
        table.contains("| Adam (L2 0.01) | 0 |") && table.contains("| AdamW (λ 0.01) | 0 |"),
        "{table}"
    );
    let png = r.plot(&temp_dir("ex3")).expect("plot");
    assert!(is_png(&png));
}

#[test]
fn ex4_the_sweep_has_its_minimum_inside_the_range() {
    let (train, val) = digits_split();
    let cfg = FitConfig {
        epochs: 1,
        max_steps: Some(15),
        ..Default::default()
    };
    let r = ex4_lr_sweep(&train, &val, &cfg, &LESSON_LRS);
    assert_eq!(r.runs.len(), 5);
    let best = r.best_lr().expect("a finite run");
    assert!(
        best != LESSON_LRS[0] && best != LESSON_LRS[4],
        "minimum at an end: {best}\n{r}"
    );
    // A U: the loss rises on both sides of the minimum.
    let losses: Vec<f64> = r.runs.iter().map(|(_, f)| f.final_train_loss).collect();
    let k = LESSON_LRS.iter().position(|&lr| lr == best).unwrap();
    assert!(losses[..k].windows(2).all(|w| w[0] > w[1]), "{r}");
    assert!(losses[k..].windows(2).all(|w| w[0] < w[1]), "{r}");
    let png = r.plot(&temp_dir("ex4")).expect("plot");
    assert!(is_png(&png));
}

#[test]
fn ex5_schedule_boundaries_and_a_scheduled_run_that_learns() {
    let (train, val) = digits_split();
    let cfg = Ex5Config {
        fit: FitConfig {
            epochs: 2,
            max_steps: Some(30),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = ex5_warmup_cosine(&train, &val, &cfg);
    let s = r.schedule;
    assert_eq!((s.total, s.warmup, s.peak, s.floor), (30, 3, 3e-2, 0.0));
    assert_eq!(s.lr(0), 0.0);
    assert_eq!(s.lr(s.warmup), s.peak);
    assert_eq!(s.lr(s.total), 0.0);
    let last = s.lr(s.total - 1);
    assert!(last > 0.0 && last < 0.01 * s.peak, "{last}");
    // The lesson's lr_at is the same function.
    for t in 0..=s.total {
        assert!((lr_at(t, s.peak, s.warmup, s.total) - s.lr(t)).abs() <= 1e-18);
    }
    // The run used the schedule, step by step.
    assert_eq!(r.scheduled.lrs.len(), 30);
    assert!(
        r.scheduled
            .lrs
            .iter()
            .enumerate()
            .all(|(t, &lr)| lr == s.lr(t as u64))
    );
    assert!(r.constant.lrs.iter().all(|&lr| lr == s.peak));
    let sched = &r.scheduled;
    assert!(sched.final_train_loss.is_finite(), "{r}");
    assert!(sched.final_train_loss < sched.initial_train_loss, "{r}");
    let [a, b] = r.plot(&temp_dir("ex5")).expect("plot");
    assert!(is_png(&a) && is_png(&b));
}

#[test]
fn ex6_unclipped_diverges_and_clipped_survives() {
    let (train, val) = digits_split();
    let cfg = Ex6Config {
        fit: FitConfig {
            max_steps: Some(25),
            ..Ex6Config::default().fit
        },
        ..Default::default()
    };
    let r = ex6_clipping_rescue(&train, &val, &cfg);
    let (step, why) = r
        .unclipped
        .diverged
        .clone()
        .expect("the unclipped run diverges");
    assert!(step < 25, "{r}");
    let blown = r.unclipped.losses.last().copied().unwrap();
    assert!(
        !blown.is_finite() || blown > cfg.blowup * r.unclipped.initial_train_loss,
        "{why}"
    );
    // Clipped: no divergence, every loss finite and under the guard, and it learned.
    assert!(r.clipped.diverged.is_none(), "{r}");
    assert_eq!(r.clipped.losses.len(), 25);
    assert!(
        r.clipped
            .losses
            .iter()
            .all(|l| l.is_finite() && *l <= cfg.blowup * r.clipped.initial_train_loss),
        "{r}"
    );
    assert!(
        r.clipped.final_train_loss < r.clipped.initial_train_loss,
        "{r}"
    );
    // Left to run, the unclipped network ends worse than the clipped one.
    assert!(
        r.clipped.final_val_accuracy > r.unclipped_continued.final_val_accuracy + 0.2,
        "{r}"
    );
    let png = r.plot(&temp_dir("ex6")).expect("plot");
    assert!(is_png(&png));
}

#[test]
fn memory_training_keeps_more_than_inference() {
    let (train, _) = digits_split();
    let model = Mlp::new(64, [128, 64], 10, &mut StdRng::seed_from_u64(0));
    let rows = memory_table(&model, &train, &[1, 64, 256]);
    let p = (64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10) as u128;
    for r in &rows {
        assert_eq!(
            (r.weights, r.grads, r.optimizer_state),
            (4 * p, 4 * p, 8 * p)
        );
        assert!(r.training() > r.inference());
    }
    // The tape grows with the batch, about linearly.
    assert!(rows[0].tape < rows[1].tape && rows[1].tape < rows[2].tape);
    let per_row = (rows[2].tape - rows[1].tape) as f64 / 192.0;
    let at_64 = rows[1].tape as f64 / 64.0;
    assert!((per_row - at_64).abs() < 0.2 * per_row, "{per_row} {at_64}");
    let (r, bf16) = seven_billion();
    assert_eq!(r.training_bytes(), 112_000_000_000);
    assert_eq!(bf16, 14_000_000_000);
    assert_eq!(r.inference_bytes(Dtype::F32), 28_000_000_000);
    let png = plot_memory(&rows, &temp_dir("memory")).expect("plot");
    assert!(is_png(&png));
}
