//! Exercise 6, gradient clipping rescue: plain SGD on the digits MLP at lr 2.5 from the
//! first step diverges without clipping (its loss blows up past 10× the initial loss
//! within a few steps) and trains with the global gradient norm clipped at 1.0.
//!
//! Run: `cargo run --release --example ex6_clipping_rescue [-- --seeds N]`; `--seeds N`
//! also prints one summary line per seed 0..N (how the lr was chosen). The figure goes
//! to `out/ex6_clipping_rescue/loss.png`.

use backprop_tests::exercises::{Ex6Config, FitConfig, digits_split, ex6_clipping_rescue};
use std::path::Path;

fn main() {
    let mut seeds = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--seeds", Some(n)) => seeds = n,
            _ => {
                eprintln!("usage: ex6_clipping_rescue [--seeds N]");
                std::process::exit(2);
            }
        }
    }
    let (train, val) = digits_split();
    let cfg = Ex6Config::default();
    let report = ex6_clipping_rescue(&train, &val, &cfg);
    println!("{report}");
    match report.plot(Path::new("out/ex6_clipping_rescue")) {
        Ok(p) => println!("figure: {}", p.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
    if seeds > 0 {
        println!(
            "\n| seed | unclipped: largest loss / initial | clipped: largest loss / initial | clipped validation accuracy |"
        );
        println!("|---:|---:|---:|---:|");
    }
    for seed in 0..seeds {
        let c = Ex6Config {
            fit: FitConfig {
                seed,
                ..cfg.fit.clone()
            },
            ..cfg.clone()
        };
        let r = ex6_clipping_rescue(&train, &val, &c);
        let ratio = |f: &backprop_tests::exercises::FitReport| {
            f.losses
                .iter()
                .copied()
                .filter(|l| l.is_finite())
                .fold(0.0, f64::max)
                / f.initial_train_loss
        };
        println!(
            "| {seed} | {:.3e} | {:.2} | {:.2}% |",
            ratio(&r.unclipped_continued),
            ratio(&r.clipped),
            r.clipped.final_val_accuracy * 100.0
        );
    }
}
