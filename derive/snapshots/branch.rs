/// A branch as an expression, a branch that reassigns a local, and an early return.
#[grad]
fn branchy(x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return y;
    }
    let mut v = x * y;
    if v > 1.0 {
        v = v.ln();
    }
    let w = if y > 0.0 { v * y } else { v };
    w + x
}
