/// Accumulating into a local buffer: `h[j] += ...` is an in-place update, whose reverse
/// hands `d_h[j]` on without zeroing it, and `x[i]`, read by every inner iteration, has
/// its cotangent summed and added once after the inner loop.
#[grad]
fn outer_sum(x: &[f64], w: &[f64]) -> f64 {
    let n = w.len();
    let mut h = vec![0.0; n];
    for i in 0..x.len() {
        for j in 0..n {
            h[j] += w[j] * x[i];
        }
    }
    let mut s = 0.0;
    for j in 0..n {
        s += h[j] * h[j];
    }
    s
}
