//! Exercise 3, AdamW vs Adam on the digits MLP: weight decay 0.01 (decoupled in AdamW,
//! coupled L2 in Adam), three epochs each, same seeds and batches; a validation-accuracy
//! table per run and the mean per optimizer.
//!
//! Run: `cargo run --release --example ex3_adamw_vs_adam`; the figure (validation
//! accuracy per epoch) goes to `out/ex3_adamw_vs_adam/validation_accuracy.png`.

use backprop_tests::exercises::{Ex3Config, digits_split, ex3_adamw_vs_adam};
use std::path::Path;

fn main() {
    let (train, val) = digits_split();
    let report = ex3_adamw_vs_adam(&train, &val, &Ex3Config::default());
    println!("{report}");
    match report.plot(Path::new("out/ex3_adamw_vs_adam")) {
        Ok(p) => println!("figure: {}", p.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
