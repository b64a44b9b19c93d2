//! Exercise 5, linear warmup + cosine decay: the lesson's `lr_at` (checked against
//! `backprop::schedule::WarmupCosine`), its curve, and the digits MLP trained with it
//! against a constant lr at the same peak.
//!
//! Run: `cargo run --release --example ex5_warmup_cosine`; figures in
//! `out/ex5_warmup_cosine/` (`schedule.png`, `loss.png`).

use backprop::schedule::Schedule;
use backprop_tests::exercises::{Ex5Config, digits_split, ex5_warmup_cosine, lr_at};
use std::path::Path;

fn main() {
    let (train, val) = digits_split();
    let report = ex5_warmup_cosine(&train, &val, &Ex5Config::default());
    let s = report.schedule;
    let worst = (0..=s.total)
        .map(|t| (lr_at(t, s.peak, s.warmup, s.total) - s.lr(t)).abs())
        .fold(0.0, f64::max);
    println!("{report}");
    println!("the lesson's lr_at against WarmupCosine: largest difference {worst:.1e}");
    match report.plot(Path::new("out/ex5_warmup_cosine")) {
        Ok([a, b]) => println!("figures: {} and {}", a.display(), b.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
