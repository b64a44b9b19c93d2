//! Newton's method on a logistic regression (digits 3 against 8, L2-regularised),
//! each step solved by conjugate gradients on Hessian-vector products from `#[grad]`'s
//! `f_hvp`: the printed gradient norms fall quadratically (the exponent roughly doubles
//! each step). Also forms the 65 × 65 Hessian once with `backprop::hessian` and reports
//! its asymmetry, a check of the products.
//!
//! Run: `cargo run --release --example newton`; figure in `out/newton/grad_norm.png`.

use backprop_tests::plot::{Series, lines};
use backprop_tests::second_order::{logistic_loss_hvp, newton, two_digits};
use std::path::Path;

fn main() {
    let (x, y, d) = two_digits(3, 8);
    let lambda = 1e-3;
    println!(
        "logistic regression, digits 3 vs 8: {} images × {d} pixels, λ = {lambda}",
        y.len()
    );
    let (w, iterates) = newton(&x, &y, d, lambda, 12);
    println!(
        "{:>4}  {:>22}  {:>10}  {:>5}",
        "step", "loss", "‖∇f‖", "HVPs"
    );
    for (k, it) in iterates.iter().enumerate() {
        println!(
            "{k:>4}  {:>22.16}  {:>10.3e}  {:>5}",
            it.loss, it.grad_norm, it.hvps
        );
    }
    let h = backprop::hessian(&w, |w, v| logistic_loss_hvp(w, &x, &y, lambda, v).2.w);
    let asymmetry = (&h - &h.t()).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let largest = h.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!(
        "Hessian at the solution: {}×{} from {} HVPs, max |H − Hᵀ| = {asymmetry:.1e} (max |H| = {largest:.3})",
        h.nrows(),
        h.ncols(),
        h.ncols()
    );
    let dir = Path::new("out/newton");
    let series = [Series {
        label: "log10 ‖∇f‖",
        points: iterates
            .iter()
            .enumerate()
            .filter(|(_, it)| it.grad_norm > 0.0)
            .map(|(k, it)| (k as f64, it.grad_norm.log10()))
            .collect(),
    }];
    let path = dir.join("grad_norm.png");
    match std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            lines(
                &path,
                "Newton-CG on logistic regression (digits 3 vs 8)",
                "Newton step",
                "log10 ‖∇f‖",
                &series,
                false,
            )
        }) {
        Ok(()) => println!("figure: {}", path.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
