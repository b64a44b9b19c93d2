//! What `#[grad]` writes for `examples/quickstart.rs`, annotated against the chain rule.
//!
//! This is the real expansion (formatted by prettyplease; it is pinned by
//! `derive/snapshots/worked_example.expanded.rs`), with comments added. It compiles and
//! runs: `cargo run --example quickstart-expanded`.
#![allow(dead_code, non_camel_case_types)]

/// L = (a·b + c)², the function as written: `#[grad]` leaves it unchanged. It is the
/// inference path and saves nothing.
fn f(a: f64, b: f64, c: f64) -> f64 {
    let d = a * b;
    let e = d + c;
    e * e
}

/// The gradient: one field per active argument, named after it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FGrad {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

/// The rule companion. It shares the name `f` but lives in the type namespace, so a
/// call `f(x)` inside another `#[grad]` function can find `f::forward` through the same
/// path or `use`.
struct f {}

impl f {
    /// Forward pass with one cotangent per argument.
    #[allow(clippy::all)]
    fn forward(
        a: f64,
        b: f64,
        c: f64,
    ) -> (f64, impl backprop::Pullback<f64, Grad = (f64, f64, f64)>) {
        let _ = f; // mentions `f`, so calling only `f_grad` leaves no "never used" warning

        // ---- forward pass: the user's statements, one operation per `let` ----
        let d = a * b; //  d = a·b                      = 6
        let e = d + c; //  e = d + c                    = 10
        let t0 = e * e; // L = e²  (the tail, named t0) = 100

        // ---- the tape: a closure. `move` captures exactly what the lines below read:
        //      a, b (for d = a·b) and e (for L = e²). Nothing else is kept. ----
        let pullback = move |d_t0: f64| -> (f64, f64, f64) {
            // Seed: d_t0 = ∂L/∂L = 1 (the caller passes it).
            //
            // L = e·e: the product rule, once per factor (both factors are e).
            //   ∂L/∂e = d_t0·e + d_t0·e = 2e = 20
            let mut d_e = backprop::__private::mul_vjp_lhs(e, d_t0);
            d_e = d_e + backprop::__private::mul_vjp_rhs(e, d_t0);
            // e = d + c: addition copies the cotangent to both inputs.
            //   ∂L/∂d = ∂L/∂e = 20,  ∂L/∂c = ∂L/∂e = 20
            let d_d = d_e;
            let d_c = d_e;
            // d = a·b: each factor gets the cotangent times the other factor.
            //   ∂L/∂a = ∂L/∂d·b = 60,  ∂L/∂b = ∂L/∂d·a = 40
            let d_a = backprop::__private::mul_vjp_lhs(b, d_d);
            let d_b = backprop::__private::mul_vjp_rhs(a, d_d);
            (d_a, d_b, d_c)
        };
        (t0, backprop::__private::Tape::new(pullback))
    }

    /// Value and gradient.
    fn grad(a: f64, b: f64, c: f64) -> (f64, FGrad) {
        let (value, tape) = f_forward(a, b, c);
        // The reverse pass starts from ∂L/∂L = 1.
        (value, backprop::Pullback::backward(tape, 1.0))
    }
}

/// `f_grad`: value and gradient in one call.
fn f_grad(a: f64, b: f64, c: f64) -> (f64, FGrad) {
    f::grad(a, b, c)
}

/// `f_forward`: the value and a tape whose gradient is the named `FGrad`.
fn f_forward(a: f64, b: f64, c: f64) -> (f64, impl backprop::Pullback<f64, Grad = FGrad>) {
    let (value, tape) = f::forward(a, b, c);
    (
        value,
        backprop::__private::map_grad(tape, |(a, b, c)| FGrad { a, b, c }),
    )
}

/// `f_backward`: run a tape's reverse pass with an output cotangent.
fn f_backward(tape: impl backprop::Pullback<f64, Grad = FGrad>, d_out: f64) -> FGrad {
    backprop::Pullback::backward(tape, d_out)
}

fn main() {
    let (l, g) = f_grad(2.0, 3.0, 4.0);
    assert_eq!((l, g.a, g.b, g.c), (100.0, 60.0, 40.0, 20.0));
    assert_eq!(f(2.0, 3.0, 4.0), l);
    let (_, tape) = f_forward(2.0, 3.0, 4.0);
    assert_eq!(backprop::Pullback::bytes(&tape), 24);
    assert_eq!(f_backward(tape, 1.0), g);
    println!("L = {l}, ∂L/∂(a, b, c) = ({}, {}, {})", g.a, g.b, g.c);
}
