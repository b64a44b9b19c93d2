//! Exercise 2, Adam from scratch and SGD vs SGD + momentum vs Adam on `f(w) = wᵀAw` with
//! an ill-conditioned `A` (eigenvalues 10 and 0.01), same lr and step count, the loss
//! and its gradient from `#[grad]`. Runs the axis-aligned `A` and the same `A` rotated
//! by 0.5 rad.
//!
//! Run: `cargo run --example ex2_optimizers_on_quadratic`; figures in
//! `out/ex2_optimizers_on_quadratic/` (`loss.png`, `loss_rotated.png`).

use backprop_tests::exercises::{Ex2Config, ex2_optimizers_on_quadratic};
use std::path::Path;

fn main() {
    let dir = Path::new("out/ex2_optimizers_on_quadratic");
    for (cfg, file) in [
        (Ex2Config::default(), "loss.png"),
        (Ex2Config::rotated(0.5), "loss_rotated.png"),
    ] {
        let report = ex2_optimizers_on_quadratic(&cfg);
        println!("{report}");
        match report.plot(dir, file) {
            Ok(p) => println!("figure: {}\n", p.display()),
            Err(e) => eprintln!("plot: {e}"),
        }
    }
}
