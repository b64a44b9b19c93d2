/// A dot product over slices: the reverse pass reads `w[i]` and `x[i]` again from the
/// borrowed slices and recomputes `i` from the range, so iterations save nothing.
#[grad]
fn dot(w: &[f64], x: &[f64]) -> f64 {
    let mut acc = 0.0;
    for i in 0..w.len() {
        acc += w[i] * x[i];
    }
    acc
}
