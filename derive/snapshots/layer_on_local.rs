/// A layer called on an array the caller made: the call runs on a copy of `h` that the
/// caller's tape keeps with the layer's own tape (`keep`); `w` and `b` reach the layer
/// through `keep`, not captured, so the kept tape's type names their lifetime.
#[grad]
fn two_layers(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> f64 {
    let h = dense(x, w, b);
    let y = dense(&h, w, b);
    y.sum()
}
