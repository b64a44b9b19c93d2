/// Shadowing, `let mut` with compound assignment, a constant, a generic float.
#[grad]
fn softplus_sq<T: Float>(x: T, mut y: T) -> T {
    let one = T::one();
    let x = (one + x.exp()).ln();
    y *= x;
    y += x.max(y);
    y.powi(2)
}
