//! Exercise 1, pen-and-paper backprop: `L = (σ(w·x + b) − y)²` with a vector `x`, every
//! chain-rule step with its number, `#[grad]`'s gradient, central differences, and the
//! difference between them.
//!
//! Run: `cargo run --example ex1_backprop_by_hand`; the figure goes to
//! `out/ex1_backprop_by_hand/gradient.png`.

use backprop_tests::exercises::{Ex1Problem, ex1_backprop_by_hand};
use std::path::Path;

fn main() {
    let report = ex1_backprop_by_hand(&Ex1Problem::default());
    println!("{report}");
    match report.plot(Path::new("out/ex1_backprop_by_hand")) {
        Ok(p) => println!("figure: {}", p.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
