/// A causal mask written element by element: each write is a new version of `scores`,
/// in place in both passes.
#[grad(s)]
fn masked_loss(s: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let (t, _) = s.dim();
    let mut scores = s.to_owned();
    for i in 0..t {
        for j in (i + 1)..t {
            scores[[i, j]] = f64::NEG_INFINITY;
        }
    }
    let p = backprop::ops::softmax(&scores);
    (p * w).sum()
}
