//! The lesson's worked example: L = (a·b + c)² at (2, 3, 4).
//!
//! Run: `cargo run --example quickstart`. See its expansion, annotated line by line
//! against the chain rule, in `examples/quickstart-expanded.rs` (or run
//! `cargo expand --example quickstart` if you have cargo-expand).

use backprop::{Pullback, grad};

/// L = (a·b + c)²
#[grad]
fn f(a: f64, b: f64, c: f64) -> f64 {
    let d = a * b;
    let e = d + c;
    e * e
}

fn main() {
    let (l, g) = f_grad(2.0, 3.0, 4.0);
    println!("L = (a·b + c)² at (a, b, c) = (2, 3, 4)");
    println!("L      = {l}");
    println!("∂L/∂a  = {}   (= 2e·b = 2·10·3)", g.a);
    println!("∂L/∂b  = {}   (= 2e·a = 2·10·2)", g.b);
    println!("∂L/∂c  = {}   (= 2e   = 2·10)", g.c);

    // The split form: forward once, keep the tape, run the reverse pass later.
    let (_, tape) = f_forward(2.0, 3.0, 4.0);
    println!(
        "tape   = {} bytes (a, b and e: what the reverse pass reads)",
        tape.bytes()
    );
    let g2 = f_backward(tape, 1.0);
    assert_eq!(g, g2);

    let report = backprop::gradcheck!(f(a = 2.0, b = 3.0, c = 4.0));
    println!("\ngradcheck against central differences:\n{report}");
    report.assert();
}
