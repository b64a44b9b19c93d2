//! Exercise 4, the learning-rate sweep: the digits MLP trained with AdamW at a constant
//! lr of 1e-1, 1e-2, 1e-3, 1e-4 and 1e-5 (same seed, three epochs), final training loss
//! against lr on a log-log plot, and the bottom of the U.
//!
//! Run: `cargo run --release --example ex4_lr_sweep`; the figure goes to
//! `out/ex4_lr_sweep/lr_sweep.png`.

use backprop_tests::exercises::{FitConfig, LESSON_LRS, digits_split, ex4_lr_sweep};
use std::path::Path;

fn main() {
    let (train, val) = digits_split();
    let report = ex4_lr_sweep(&train, &val, &FitConfig::default(), &LESSON_LRS);
    println!("{report}");
    match report.plot(Path::new("out/ex4_lr_sweep")) {
        Ok(p) => println!("figure: {}", p.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
