//! Generated code names nothing from the prelude: it works beside shadowed prelude
//! types and traits (the expansion uses absolute `::core` / `::backprop` paths).
#![allow(dead_code)]

use backprop::grad;

type Result = ();
type Option = ();
struct Some;
struct None;
struct Vec;
struct Box;
trait Fn {}
trait FnOnce {}
trait Copy {}
trait Clone {}

#[grad]
fn f(a: f64, b: f64) -> f64 {
    let d = a * b;
    (d + 1.0).ln()
}

fn main() {
    let (_, g) = f_grad(2.0, 3.0);
    assert_eq!(g.a, 3.0 / 7.0);
}
